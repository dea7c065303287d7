"""Is every deployment there? HTTP ones answer a real 1-token chat through the gateway's
own provider; local ones have their model file (loading it would take seconds)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from modelway.app import PROVIDERS
from modelway.config import (
    Config,
    Deployment,
    EmbeddingDeployment,
    LocalDeployment,
    ModelGroup,
    bundled_embedding_path,
    bundled_gguf_path,
)
from modelway.doctor.findings import Finding, Status, bounded, describe_error
from modelway.protocol.errors import GatewayError, RateLimited
from modelway.protocol.openai_chat import ChatMessage, ChatRequest


async def check_deployments(config: Config, seconds: float) -> list[Finding]:
    checks = [
        bounded(f"deployment {dep_id}", _check(group, dep_id, dep), seconds)
        for group, dep_id, dep in config.deployment_ids()
    ]
    found = await asyncio.gather(*checks)
    return [finding for findings in found for finding in findings]


async def _check(group: ModelGroup, dep_id: str, dep: Deployment) -> list[Finding]:
    check = f"deployment {dep_id}"
    if isinstance(dep, LocalDeployment):
        return [_local_file(check, dep)]
    if isinstance(dep, EmbeddingDeployment):
        return [_embedding_folder(check, dep)]
    provider = PROVIDERS[type(dep)](dep, dep_id, group.name)
    try:
        await provider.start()
        listed = await provider.health()
        req = ChatRequest(
            model=dep.model,
            messages=[ChatMessage(role="user", content="Say OK.")],
            max_tokens=1,
        )
        try:
            await provider.chat(req)
        except RateLimited as exc:
            return [Finding(Status.WARN, check, f"{dep.base_url}: {describe_error(exc)}")]
        except GatewayError as exc:
            return [Finding(Status.FAIL, check, f"{dep.base_url}: {describe_error(exc)}")]
    finally:
        await provider.close()
    if not listed:
        return [
            Finding(
                Status.WARN,
                check,
                f"{dep.base_url}: answered a 1-token chat, but its health probe failed",
            )
        ]
    return [Finding(Status.PASS, check, f"{dep.base_url}: answered a 1-token chat")]


def _local_file(check: str, dep: LocalDeployment) -> Finding:
    path = Path(dep.path) if dep.path else bundled_gguf_path()
    if path is None:
        return Finding(Status.FAIL, check, "no path and the bundled model is not installed")
    if not path.is_file():
        return Finding(Status.FAIL, check, f"no such file: {path}")
    return Finding(Status.PASS, check, f"{path.name} found (not loaded: that takes seconds)")


def _embedding_folder(check: str, dep: EmbeddingDeployment) -> Finding:
    path = Path(dep.path) if dep.path else bundled_embedding_path()
    if path is None:
        return Finding(Status.FAIL, check, "no path and the bundled model is not installed")
    if not (path / "model.safetensors").is_file():
        return Finding(Status.FAIL, check, f"no model.safetensors in {path}")
    return Finding(Status.PASS, check, f"model folder {path} found (not loaded)")
