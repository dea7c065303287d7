"""The response cache's config: named policies (attached to model groups, teams and
keys), the backend and its bounds, and the semantic cache's embedding model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TTL_SECONDS = 30 * 86400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CachePolicy(_Strict):
    # reproducible: only requests whose answer does not vary (temperature 0 or a seed);
    # always: every request; off: none.
    mode: Literal["reproducible", "always", "off"] = "reproducible"
    ttl_seconds: float = Field(3600.0, gt=0, le=MAX_TTL_SECONDS)
    # Whose entries a request may see: its team's (keys without a team: their own),
    # its key's only, or everyone's.
    scope: Literal["team", "key", "global"] = "team"
    # Look paraphrases up by meaning as well (same system prompt, earlier turns and
    # parameters; the last user message compared in embedding space).
    semantic: bool = False
    # Cosine similarity a cached question needs to answer a new one. Lower answers more
    # paraphrases and more questions that only look alike (see docs/caching.md).
    semantic_threshold: float = Field(0.95, gt=0, le=1)


class SemanticCacheConfig(_Strict):
    # A model group that serves embeddings (the bundled all-MiniLM-L6-v2 by default).
    embedding_model: str = "all-minilm-l6-v2"
    max_entries: int = Field(100_000, ge=1, description="Vectors kept per replica at most.")
    # Only this many characters of the last user message are embedded.
    max_chars: int = Field(2000, ge=16)


class CacheConfig(_Strict):
    # memory: per process; redis: shared by every replica (needs redis_url); auto: redis
    # when redis_url is set.
    backend: Literal["auto", "memory", "redis"] = "auto"
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Memory backend size.")
    max_entry_bytes: int = Field(1024 * 1024, ge=256, description="Larger answers not kept.")
    policies: dict[str, CachePolicy] = Field(default_factory=lambda: {"default": CachePolicy()})
    default: str | None = "default"
    models: dict[str, str] = Field(
        default_factory=dict, description="Model group name -> policy name."
    )
    semantic: SemanticCacheConfig = SemanticCacheConfig()
    # Prefix of the Redis keys, so several gateways can share one Redis.
    namespace: str = Field("modelway", min_length=1, max_length=64)
