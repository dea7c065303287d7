"""The embedded engine as the event loop sees it: prepare a prompt, stream a generation.

Templates and tokenizers run on a small thread pool, decoding on the scheduler's own
thread; the event loop only waits on queues.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from collections.abc import Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelway.engine.llama_model import ContextShape, LlamaModel
from modelway.engine.sampling import Generation, SamplingParams
from modelway.engine.scheduler import Scheduler
from modelway.engine.sequence import END, Sequence
from modelway.protocol.errors import ContextTooLong, Unavailable


class BatchEngine:
    def __init__(
        self, path: Path, shape: ContextShape, *, prefill_chunk: int, queue_size: int
    ) -> None:
        self.path = path
        self.shape = shape
        self._prefill_chunk = prefill_chunk
        self._queue_size = queue_size
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-prep")
        self._model: LlamaModel | None = None
        self._scheduler: Scheduler | None = None

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(self._prep, LlamaModel, self.path, self.shape)
        self._model = model
        self._scheduler = Scheduler(
            model, prefill_chunk=self._prefill_chunk, queue_size=self._queue_size
        )
        self._scheduler.start()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._scheduler is not None:
            await loop.run_in_executor(None, self._scheduler.stop)
            self._scheduler = None
        if self._model is not None:
            self._model.close()
            self._model = None
        self._prep.shutdown(wait=False)

    @property
    def model(self) -> LlamaModel:
        if self._model is None:
            raise Unavailable(f"model {self.path.name} is not loaded")
        return self._model

    @property
    def loaded(self) -> bool:
        return self._scheduler is not None

    async def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        model = self.model

        def build() -> list[int]:
            prompt = model.template.render(messages)
            return model.tokenize(prompt, add_special=False, parse_special=True)

        return await asyncio.get_running_loop().run_in_executor(self._prep, build)

    async def text_tokens(self, text: str) -> list[int]:
        model = self.model
        return await asyncio.get_running_loop().run_in_executor(
            self._prep, lambda: model.tokenize(text, add_special=True, parse_special=False)
        )

    async def generate(
        self, prompt: list[int], params: SamplingParams, gen: Generation
    ) -> AsyncIterator[str]:
        """Yield text as it is generated; ``gen`` holds the counts once it ends.

        Refusals (context too long, queue full) raise before anything is yielded.
        Closing the iterator early cancels the sequence at the next step.
        """
        scheduler = self._scheduler
        if scheduler is None:
            raise Unavailable(f"model {self.path.name} is not loaded")
        params = self._fit(prompt, params)
        gen.prompt_tokens = len(prompt)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                seq.cancelled.set()

        seq = Sequence(prompt, params, gen, emit)
        scheduler.submit(seq)
        try:
            while True:
                item = await queue.get()
                if item is END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, str)
                yield item
        finally:
            if not seq.done:
                seq.cancelled.set()
                scheduler.wake()

    def _fit(self, prompt: Seq[int], params: SamplingParams) -> SamplingParams:
        size = self.shape.context_size
        if not prompt:
            raise ContextTooLong("the prompt is empty after tokenization", param="messages")
        room = size - len(prompt)
        if room <= 0:
            raise ContextTooLong(
                f"the prompt is {len(prompt)} tokens; this model's context holds {size}",
                param="messages",
            )
        if params.max_tokens > room:
            if params.max_tokens_explicit:
                raise ContextTooLong(
                    f"the prompt ({len(prompt)} tokens) plus max_tokens ({params.max_tokens}) "
                    f"exceeds this model's context ({size} tokens)",
                    param="max_tokens",
                )
            return replace(params, max_tokens=room)
        return params

    def stats(self) -> dict[str, Any]:
        scheduler = self._scheduler
        if scheduler is None:
            return {"loaded": False}
        c = scheduler.counters
        return {
            "loaded": True,
            "model": self.path.name,
            "max_parallel": self.shape.max_parallel,
            "context_size": self.shape.context_size,
            "queue_depth": scheduler.queue_depth,
            "running": scheduler.running,
            "kv_cells_used": scheduler.kv_cells_used,
            "kv_cells_total": self.shape.context_size * self.shape.max_parallel,
            "requests": c.requests,
            "prompt_tokens": c.prompt_tokens,
            "cached_prompt_tokens": c.cached_prompt_tokens,
            "generated_tokens": c.generated_tokens,
            "decode_steps": c.steps,
            "ttft_p50_ms": _p50_ms(c.ttft_seconds),
            "tpot_p50_ms": _p50_ms(c.tpot_seconds),
        }


def _p50_ms(samples: Any) -> float | None:
    return round(statistics.median(samples) * 1000, 3) if samples else None
