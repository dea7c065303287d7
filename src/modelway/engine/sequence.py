"""One generation in flight: its prompt, progress, sampler and output stream."""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from typing import Any

from modelway.engine.sampling import Generation, SamplingParams
from modelway.engine.stop_strings import StopMatcher

END = object()  # the last item a sequence emits
Emit = Callable[[object], None]


class Sequence:
    def __init__(
        self, prompt: list[int], params: SamplingParams, gen: Generation, emit: Emit
    ) -> None:
        self.prompt = prompt
        self.params = params
        self.gen = gen
        self.emit = emit
        self.cancelled = threading.Event()
        self.sampler: Any = None
        self.slot: int | None = None
        self.n_kv = 0  # tokens of this sequence already in its slot's KV cells
        # The next token to decode: the last prompt token, then each sampled token.
        self.pending: int | None = None
        self.done = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(params.stop)
        self.submitted = time.perf_counter()
        self.first_token: float | None = None
        self.last_token: float | None = None

    @property
    def prefill_end(self) -> int:
        """Prompt tokens fed as prefill; the last one is decoded like a generated token."""
        return len(self.prompt) - 1

    def start_decoding(self) -> None:
        self.pending = self.prompt[-1]

    def accept(self, token: int, piece: bytes | None) -> bool:
        """Take a sampled token (``piece`` None for end-of-generation); True when done."""
        now = time.perf_counter()
        if self.first_token is None:
            self.first_token = now
        self.last_token = now
        if piece is None:
            self.finish("stop")
            return True
        self.gen.completion_tokens += 1
        text = self._stops.feed(self._decoder.decode(piece))
        if text:
            self.emit(text)
        if self._stops.stopped:
            self.finish("stop")
        elif self.gen.completion_tokens >= self.params.max_tokens:
            self.finish("length")
        else:
            self.pending = token
            return False
        return True

    def finish(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self.gen.finish_reason = reason
        if not self._stops.stopped:
            tail = self._stops.feed(self._decoder.decode(b"", final=True)) + self._stops.flush()
            if tail:
                self.emit(tail)
        self.emit(END)

    def fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self.emit(exc)
        self.emit(END)
