"""Concurrent embedding requests coalesced into forward passes on one worker thread.

Each caller's texts join one queue. While a pass runs on the worker thread, new texts
wait; the next pass takes up to ``batch_size`` of them, whichever callers they come
from. A single caller with many texts is spread over several passes. The event loop
only queues and hands out rows; numpy runs on the worker (it releases the GIL).
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from modelway.embeddings.minilm import Floats


class Encoder(Protocol):
    @property
    def dimensions(self) -> int: ...

    def encode(self, texts: list[str], batch_size: int = ...) -> Floats: ...


@dataclass(eq=False)
class _Caller:
    texts: list[str]
    future: asyncio.Future[Floats]
    rows: Floats
    filled: int = 0


class EmbeddingBatcher:
    def __init__(self, encoder: Encoder, batch_size: int = 32) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelway-embed")
        self._waiting: deque[tuple[_Caller, int]] = deque()  # (caller, index of its text)
        self._drain: asyncio.Task[None] | None = None
        self._closed = False

    async def embed(self, texts: list[str]) -> Floats:
        """One normalised row per text, in order, computed in shared forward passes."""
        if self._closed:
            raise RuntimeError("the embedding batcher is closed")
        rows = np.empty((len(texts), self.encoder.dimensions), dtype=np.float32)
        if not texts:
            return rows
        caller = _Caller(texts, asyncio.get_running_loop().create_future(), rows)
        self._waiting.extend((caller, i) for i in range(len(texts)))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run())
        # A cancelled caller cancels its future; its waiting texts are then skipped.
        return await caller.future

    async def close(self) -> None:
        """Refuse new texts, finish the ones waiting, stop the worker thread."""
        self._closed = True
        if self._drain is not None:
            await self._drain
        self._worker.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._take()
            if not batch:
                continue
            try:
                vectors = await loop.run_in_executor(
                    self._worker, self.encoder.encode, [c.texts[i] for c, i in batch], len(batch)
                )
                _hand_out(batch, vectors)
            except Exception as exc:  # the callers in this pass fail, the batcher goes on
                for caller, _ in batch:
                    if not caller.future.done():
                        caller.future.set_exception(exc)

    def _take(self) -> list[tuple[_Caller, int]]:
        batch: list[tuple[_Caller, int]] = []
        while self._waiting and len(batch) < self.batch_size:
            item = self._waiting.popleft()
            if not item[0].future.done():
                batch.append(item)
        return batch


def _hand_out(batch: list[tuple[_Caller, int]], vectors: Floats) -> None:
    for (caller, i), row in zip(batch, vectors, strict=True):
        if caller.future.done():
            continue
        caller.rows[i] = row
        caller.filled += 1
        if caller.filled == len(caller.texts):
            caller.future.set_result(caller.rows)
