"""Running every check and printing the table; exit 1 when any check failed."""

from __future__ import annotations

import asyncio

from modelway.config import Config, ConfigError, default_config, load_config
from modelway.doctor.deployments import check_deployments
from modelway.doctor.findings import Finding, Status, bounded, table
from modelway.doctor.gateway import check_gateway
from modelway.doctor.stores import check_database, check_redis
from modelway.hosts import is_loopback


def run_doctor(config_path: str | None, url: str | None, seconds: float) -> int:
    findings = asyncio.run(_run(config_path, url, seconds))
    print(table(findings))
    return 1 if any(f.status is Status.FAIL for f in findings) else 0


async def _run(config_path: str | None, url: str | None, seconds: float) -> list[Finding]:
    config, findings = _load(config_path)
    checks = []
    if config is not None:
        findings.append(_auth(config))
        checks += [
            # Deployments bound themselves one by one; this only stops a pile-up.
            bounded("deployments", check_deployments(config, seconds), seconds * 2),
            bounded("database", check_database(config, seconds), seconds),
            bounded("redis", check_redis(config, seconds), seconds),
        ]
    if url is not None:
        checks.append(bounded("gateway", check_gateway(url, seconds), seconds * 2))
    for found in await asyncio.gather(*checks):
        findings += found
    return findings


def _load(path: str | None) -> tuple[Config | None, list[Finding]]:
    if path is None:
        return default_config(), [
            Finding(Status.PASS, "config", "no --config: the embedded model alone")
        ]
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, [Finding(Status.FAIL, "config", p) for p in exc.problems]
    return config, [Finding(Status.PASS, "config", f"{path}: {config.summary()}")]


def _auth(config: Config) -> Finding:
    if config.auth.master_key is not None:
        return Finding(Status.PASS, "auth", "master_key is set: API keys are checked")
    host = config.server.host
    if is_loopback(host):
        return Finding(
            Status.WARN, "auth", f"no master_key: anyone who can reach {host} uses every model"
        )
    return Finding(
        Status.FAIL,
        "auth",
        f"no master_key and server.host is {host}: serve refuses to listen there "
        "without --insecure-no-auth",
    )
