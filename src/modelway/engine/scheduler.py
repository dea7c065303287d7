"""Continuous batching: one decode loop per model, in its own thread.

Each step admits waiting sequences into free slots, then builds one ``llama_batch``
holding one token for every decoding sequence plus prompt chunks of sequences still in
prefill (up to ``prefill_chunk`` tokens each, within ``batch_size``), so a long prompt
never stalls running streams. One ``llama_decode`` call runs the step; each decoding
sequence then samples its next token with its own sampler chain.

A slot keeps the KV cells of the last sequence it ran after that sequence ends. A new
sequence goes to the free slot whose cached tokens share the longest prefix with its
prompt and reuses those cells (a shared system prompt, a conversation growing turn by
turn). The last prompt token is never part of the prefill: it is decoded in a step of
its own like a generated token, so a repeated prompt recomputes exactly the batches it
computed the first time, and greedy output stays reproducible with the cache on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as llama

from modelway.engine.llama_model import LlamaModel
from modelway.engine.sampler_chain import build_sampler
from modelway.engine.sequence import Sequence
from modelway.protocol.errors import GatewayError, RateLimited, Unavailable


@dataclass
class Slot:
    index: int
    tokens: list[int] = field(default_factory=list)  # what its KV cells hold, in order
    seq: Sequence | None = None
    last_used: float = 0.0


@dataclass
class EngineCounters:
    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0
    ttft_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    tpot_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


class Scheduler:
    def __init__(self, model: LlamaModel, *, prefill_chunk: int, queue_size: int) -> None:
        self.model = model
        self.prefill_chunk = prefill_chunk
        self.queue_size = queue_size
        self.slots = [Slot(i) for i in range(model.shape.max_parallel)]
        self.counters = EngineCounters()
        self._waiting: deque[Sequence] = deque()
        self._prefilling: list[Sequence] = []
        self._cv = threading.Condition()
        self._stopping = False
        self._batch = llama.llama_batch_init(model.shape.batch_size, 0, 1)
        self._thread = threading.Thread(
            target=self._run, name=f"engine-{model.path.stem}", daemon=True
        )

    # --- called from the event loop -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join()
        llama.llama_batch_free(self._batch)

    def submit(self, seq: Sequence) -> None:
        with self._cv:
            free = sum(1 for s in self.slots if s.seq is None)
            if len(self._waiting) >= self.queue_size + free:
                raise RateLimited(
                    f"the local model {self.model.path.name} is at capacity "
                    f"({len(self.slots)} running, {len(self._waiting)} waiting); retry shortly",
                    retry_after=1,
                )
            self._waiting.append(seq)
            self._cv.notify()

    def wake(self) -> None:
        with self._cv:
            self._cv.notify()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(1 for s in self.slots if s.seq is not None)

    @property
    def kv_cells_used(self) -> int:
        return sum(len(s.tokens) for s in self.slots)

    # --- the loop thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._stopping and not self._waiting and not self.running:
                        self._cv.wait()
                    if self._stopping:
                        break
                    admitted = self._take_admissible()
                for seq in admitted:
                    self._admit(seq)
                self._release_cancelled()
                if self.running:
                    self._step()
        finally:
            self._fail_everything(Unavailable("the local model is shutting down"))

    def _take_admissible(self) -> list[Sequence]:
        taken: list[Sequence] = []
        free = sum(1 for s in self.slots if s.seq is None)
        while self._waiting and len(taken) < free:
            seq = self._waiting.popleft()
            if not seq.cancelled.is_set():
                taken.append(seq)
        return taken

    def _admit(self, seq: Sequence) -> None:
        slot = self._best_slot(seq.prompt)
        reuse = min(_common_prefix(slot.tokens, seq.prompt), seq.prefill_end)
        if len(slot.tokens) > reuse:
            llama.llama_memory_seq_rm(self.model.memory, slot.index, reuse, -1)
            del slot.tokens[reuse:]
        try:
            seq.sampler = build_sampler(
                seq.params, self.model.vocab, self.model.n_vocab, self.model.eog_tokens
            )
        except GatewayError as exc:
            seq.fail(exc)
            return
        seq.slot, slot.seq = slot.index, seq
        seq.n_kv = reuse
        seq.gen.prompt_tokens = len(seq.prompt)
        seq.gen.cached_prompt_tokens = reuse
        self.counters.requests += 1
        self.counters.prompt_tokens += len(seq.prompt)
        self.counters.cached_prompt_tokens += reuse
        if reuse == seq.prefill_end:
            seq.start_decoding()
        else:
            self._prefilling.append(seq)

    def _best_slot(self, prompt: list[int]) -> Slot:
        free = [s for s in self.slots if s.seq is None]
        return max(free, key=lambda s: (_common_prefix(s.tokens, prompt), -s.last_used))

    def _release_cancelled(self) -> None:
        for slot in self.slots:
            if slot.seq is not None and slot.seq.cancelled.is_set():
                slot.seq.gen.finish_reason = "cancelled"
                slot.seq.done = True
                self._release(slot)

    def _release(self, slot: Slot) -> None:
        seq = slot.seq
        if seq is None:
            return
        if seq in self._prefilling:
            self._prefilling.remove(seq)
        if seq.sampler is not None:
            llama.llama_sampler_free(seq.sampler)
            seq.sampler = None
        if seq.first_token is not None:
            self.counters.ttft_seconds.append(seq.first_token - seq.submitted)
            if seq.last_token is not None and seq.gen.completion_tokens > 1:
                self.counters.tpot_seconds.append(
                    (seq.last_token - seq.first_token) / (seq.gen.completion_tokens - 1)
                )
        slot.seq = None
        slot.last_used = time.monotonic()

    def _step(self) -> None:
        batch = self._batch
        n = 0
        decoding: list[tuple[int, Slot, Sequence]] = []
        for slot in self.slots:
            seq = slot.seq
            if seq is not None and seq.pending is not None:
                _put(batch, n, seq.pending, seq.n_kv, slot.index, True)
                decoding.append((n, slot, seq))
                n += 1
        budget = self.model.shape.batch_size - n
        prefills: list[tuple[Sequence, int]] = []
        for seq in self._prefilling:
            if budget <= 0:
                break
            count = min(self.prefill_chunk, seq.prefill_end - seq.n_kv, budget)
            for i in range(count):
                _put(batch, n + i, seq.prompt[seq.n_kv + i], seq.n_kv + i, seq.slot or 0, False)
            prefills.append((seq, count))
            n += count
            budget -= count
        batch.n_tokens = n
        status = llama.llama_decode(self.model.ctx, batch)
        self.counters.steps += 1
        if status != 0:
            self._decode_failed(status, decoding, prefills)
            return
        for seq, count in prefills:
            slot = self.slots[seq.slot or 0]
            slot.tokens.extend(seq.prompt[seq.n_kv : seq.n_kv + count])
            seq.n_kv += count
            if seq.n_kv == seq.prefill_end:
                self._prefilling.remove(seq)
                seq.start_decoding()
        for index, slot, seq in decoding:
            assert seq.pending is not None
            slot.tokens.append(seq.pending)
            seq.n_kv += 1
            token = llama.llama_sampler_sample(seq.sampler, self.model.ctx, index)
            eog = not seq.params.ignore_eos and self.model.is_eog(token)
            self.counters.generated_tokens += 0 if eog else 1
            if seq.accept(token, None if eog else self.model.piece(token)):
                self._release(slot)

    def _decode_failed(
        self,
        status: int,
        decoding: list[tuple[int, Slot, Sequence]],
        prefills: list[tuple[Sequence, int]],
    ) -> None:
        error = Unavailable(f"the local engine failed a decode step (llama_decode: {status})")
        for seq in [s for _, _, s in decoding] + [s for s, _ in prefills]:
            slot = self.slots[seq.slot or 0]
            llama.llama_memory_seq_rm(self.model.memory, slot.index, -1, -1)
            slot.tokens.clear()
            seq.fail(error)
            self._release(slot)

    def _fail_everything(self, error: GatewayError) -> None:
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for seq in waiting:
            seq.fail(error)
        for slot in self.slots:
            if slot.seq is not None:
                slot.seq.fail(error)
                self._release(slot)


def _put(batch: Any, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq_id
    batch.logits[i] = logits


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
