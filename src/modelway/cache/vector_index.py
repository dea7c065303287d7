"""Exact nearest-neighbour search over cached questions, in process.

Entries are partitioned by their semantic filter (tenant scope, model group, system
prompt, earlier turns, parameters): a lookup only scores the vectors of its own
partition, one matrix-vector product over unit vectors (cosine similarity). The
oldest entries go first when the index is full; expired ones are skipped, and
dropped as they are met.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    similarity: float
    text: str  # the cached question


CANDIDATES = 5  # at most this many close entries are checked, best first


class _Partition:
    def __init__(self, dims: int) -> None:
        self.vectors: NDArray[np.float32] = np.empty((1, dims), dtype=np.float32)
        self.expires: NDArray[np.float64] = np.empty(1, dtype=np.float64)
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.seqs: list[int] = []
        self.slots: dict[str, int] = {}

    def put(self, key: str, text: str, vector: Vector, expires: float, seq: int) -> None:
        slot = self.slots.get(key)
        if slot is None:
            slot = len(self.keys)
            if slot == len(self.expires):
                self.vectors = np.resize(self.vectors, (slot * 2, self.vectors.shape[1]))
                self.expires = np.resize(self.expires, slot * 2)
            self.keys.append(key)
            self.texts.append(text)
            self.seqs.append(seq)
            self.slots[key] = slot
        else:
            self.seqs[slot] = seq
            self.texts[slot] = text
        self.vectors[slot] = vector
        self.expires[slot] = expires

    def remove(self, key: str) -> None:
        slot = self.slots.pop(key)
        last = len(self.keys) - 1
        if slot != last:
            moved = self.keys[last]
            self.vectors[slot] = self.vectors[last]
            self.expires[slot] = self.expires[last]
            self.keys[slot], self.seqs[slot] = moved, self.seqs[last]
            self.texts[slot] = self.texts[last]
            self.slots[moved] = slot
        self.keys.pop()
        self.texts.pop()
        self.seqs.pop()

    def best(
        self, vector: Vector, now: float, threshold: float, accept: Callable[[str], bool]
    ) -> Match | None:
        n = len(self.keys)
        if n == 0:
            return None
        scores = self.vectors[:n] @ vector
        scores[self.expires[:n] <= now] = -2.0
        k = min(CANDIDATES, n)
        top = np.argpartition(-scores, k - 1)[:k] if n > k else np.arange(n)
        for i in sorted(top.tolist(), key=lambda j: -scores[j]):
            if scores[i] < threshold:
                return None
            if accept(self.texts[i]):
                return Match(self.keys[i], float(scores[i]), self.texts[i])
        return None


class VectorIndex:
    """``dims``: the vectors' size, or None to take the first vector's (the embedding
    model decides); a vector of another size is neither stored nor searched."""

    def __init__(
        self, dims: int | None, max_entries: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.dims = dims
        self._max = max_entries
        self._clock = clock
        self._parts: dict[str, _Partition] = {}
        self._order: deque[tuple[str, str, int]] = deque()  # (filter, key, seq), oldest first
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, filter_key: str, key: str, text: str, vector: Vector, expires: float) -> None:
        if self.dims is None:
            self.dims = int(vector.shape[0])
        if vector.shape != (self.dims,):
            return
        part = self._parts.get(filter_key)
        if part is None:
            part = self._parts[filter_key] = _Partition(self.dims)
        seq = next(self._seq)
        if key not in part.slots:
            self._size += 1
        part.put(key, text, vector, expires, seq)
        self._order.append((filter_key, key, seq))
        while self._size > self._max:
            self._evict_oldest()
        # Replaced entries leave stale records behind; keep the queue in proportion, and
        # drop expired entries now and then so they do not push out live ones.
        if len(self._order) > 2 * self._max + 1024 or seq % 4096 == 4095:
            self._drop_expired()
            self._compact()

    def search(
        self,
        filter_key: str,
        vector: Vector,
        threshold: float = -1.0,
        accept: Callable[[str], bool] = lambda text: True,
    ) -> Match | None:
        """The most similar live entry at or above ``threshold`` whose question
        ``accept`` takes, among the closest few."""
        part = self._parts.get(filter_key)
        if part is None or vector.shape != (self.dims,):
            return None
        return part.best(vector, self._clock(), threshold, accept)

    def remove(self, filter_key: str, key: str) -> None:
        part = self._parts.get(filter_key)
        if part is not None and key in part.slots:
            part.remove(key)
            self._size -= 1
            if not part.keys:
                del self._parts[filter_key]

    def _evict_oldest(self) -> None:
        while self._order:
            filter_key, key, seq = self._order.popleft()
            part = self._parts.get(filter_key)
            slot = part.slots.get(key) if part is not None else None
            if part is not None and slot is not None and part.seqs[slot] == seq:
                self.remove(filter_key, key)
                return

    def _drop_expired(self) -> None:
        now = self._clock()
        for filter_key, part in list(self._parts.items()):
            n = len(part.keys)
            expired = [part.keys[i] for i in np.flatnonzero(part.expires[:n] <= now)]
            for key in expired:
                self.remove(filter_key, key)

    def _compact(self) -> None:
        live = deque(
            (f, k, s)
            for f, k, s in self._order
            if (part := self._parts.get(f)) is not None
            and (slot := part.slots.get(k)) is not None
            and part.seqs[slot] == s
        )
        self._order = live
