"""How the app builds the response cache: its store and, for semantic policies, where
question vectors come from."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from modelway.cache.runtime import ResponseCache
from modelway.cache.semantic import Embed
from modelway.config import Config
from modelway.pipeline.context import RequestContext
from modelway.pipeline.stage import Handler
from modelway.protocol.openai_embeddings import EmbeddingRequest, EmbeddingResponse
from modelway.providers.local_embedding import LocalEmbeddingProvider
from modelway.routing.router import ModelGroupRuntime, Router


def response_cache(
    config: Config, router: Router, dispatch: Callable[[], Handler]
) -> ResponseCache | None:
    """``dispatch``: the runtime's routing step, once it exists (upstream embeddings go
    through it)."""
    if config.cache is None:
        return None
    redis_url = config.redis_url.get_secret_value() if config.redis_url is not None else None
    name = config.cache.semantic.embedding_model
    embed = _embedder(router.groups[name], dispatch) if name in router.groups else None
    return ResponseCache.build(config.cache, redis_url, embed)


def _embedder(group: ModelGroupRuntime, dispatch: Callable[[], Handler]) -> Embed:
    """Vectors of texts from a model group: straight from an in-process embedding model,
    through routing (retries, fallbacks) for any other deployment."""
    provider = group.deployments[0].provider
    if isinstance(provider, LocalEmbeddingProvider) and len(group.deployments) == 1:
        return provider.vectors

    async def embed(texts: list[str]) -> NDArray[np.float32]:
        req = EmbeddingRequest(model=group.name, input=texts, encoding_format="float")
        ctx = RequestContext(
            request_id=f"cache-{uuid.uuid4().hex}", operation="embedding", request=req
        )
        body = await dispatch()(ctx)
        assert isinstance(body, EmbeddingResponse)
        vectors = np.array([d.embedding for d in body.data], dtype=np.float32)
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        unit: NDArray[np.float32] = (vectors / norms).astype(np.float32)
        return unit

    return embed
