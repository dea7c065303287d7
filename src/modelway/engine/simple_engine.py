"""One llama.cpp model generating one sequence at a time, off the event loop.

A single worker thread owns the model (llama.cpp contexts are not thread-safe); requests
queue for it in arrival order. Text flows back to the event loop through an asyncio
queue as it is produced. The model
state is reset per request: reusing a cached prefix re-evaluates the last prompt token in
a batch of a different shape, which changes logits slightly and breaks greedy
reproducibility. Prefix caching belongs to the batching scheduler.
"""

from __future__ import annotations

import asyncio
import codecs
import random
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelway.engine.chat_template import ChatTemplate
from modelway.engine.sampling import Generation, SamplingParams
from modelway.engine.stop_strings import StopMatcher
from modelway.protocol.errors import ContextTooLong, Unavailable

_END = object()
Emit = Callable[[object], None]


class SimpleEngine:
    def __init__(self, path: Path, *, context_size: int, threads: int | None) -> None:
        self.path = path
        self.context_size = context_size
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llm: Any = None
        self._template: ChatTemplate | None = None
        self._vocab: Any = None

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        if not self.path.is_file():
            raise Unavailable(f"model file not found: {self.path}")
        import llama_cpp  # imported here: a gateway without local models never loads it

        try:
            self._llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=self.context_size,
                n_threads=self.threads,
                n_batch=512,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise Unavailable(f"cannot load model {self.path}: {exc}") from None
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._template = ChatTemplate.from_gguf(self._llm)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._unload)
        self._executor.shutdown(wait=False)

    def _unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    # Prompt building runs on the worker thread, inside ``generate``.
    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        assert self._template is not None
        prompt = self._template.render(messages)
        return list(self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def text_tokens(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    async def generate(
        self, build_prompt: Callable[[], list[int]], params: SamplingParams, gen: Generation
    ) -> AsyncIterator[str]:
        """Yield text as it is generated; ``gen`` holds the counts once it ends.

        Closing the iterator early (a client went away) stops the generation at the
        next token.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while generating: shutting down
                cancelled.set()

        loop.run_in_executor(self._executor, self._run, build_prompt, params, gen, emit, cancelled)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, str)
                yield item
        finally:
            cancelled.set()

    def _run(
        self,
        build_prompt: Callable[[], list[int]],
        params: SamplingParams,
        gen: Generation,
        emit: Emit,
        cancelled: threading.Event,
    ) -> None:
        try:
            if not cancelled.is_set():
                self._generate(build_prompt(), params, gen, emit, cancelled)
        except BaseException as exc:  # handed to the awaiting coroutine, which raises it
            emit(exc)
        emit(_END)

    def _generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        gen: Generation,
        emit: Emit,
        cancelled: threading.Event,
    ) -> None:
        llm = self._llm
        if llm is None:
            raise Unavailable(f"model {self.path.name} is not loaded")
        n_ctx = llm.n_ctx()
        gen.prompt_tokens = len(prompt)
        room = n_ctx - len(prompt)
        if room <= 0:
            raise ContextTooLong(
                f"the prompt is {len(prompt)} tokens; this model's context holds {n_ctx}",
                param="messages",
            )
        max_tokens = params.max_tokens
        if max_tokens > room:
            if params.max_tokens_explicit:
                raise ContextTooLong(
                    f"the prompt ({len(prompt)} tokens) plus max_tokens ({max_tokens}) exceeds "
                    f"this model's context ({n_ctx} tokens)",
                    param="max_tokens",
                )
            max_tokens = room
        llm.reset()
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(params.stop)
        tokens = llm.generate(
            prompt,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
        )
        for token in tokens:
            if cancelled.is_set():
                gen.finish_reason = "cancelled"
                return
            if self._is_eog(self._vocab, token):
                gen.finish_reason = "stop"
                break
            gen.completion_tokens += 1
            text = stops.feed(decoder.decode(llm.detokenize([token])))
            if text:
                emit(text)
            if stops.stopped:
                gen.finish_reason = "stop"
                break
            if gen.completion_tokens >= max_tokens:
                gen.finish_reason = "length"
                break
        tail = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            emit(tail)
