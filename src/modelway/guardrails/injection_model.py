"""Inference of the prompt-injection classifier: hashed n-grams into a logistic regression.

Features (the training script `tools/train_injection.py` calls `features` from here, so
training and serving cannot drift):

- the text is lower-cased, every whitespace run becomes one space, a space pads each end;
- words are runs of ASCII letters, digits, `_` or any non-ASCII character outside the
  punctuation blocks; word 1- and 2-grams and character 3- to 5-grams are hashed with
  stable hashes (position-weighted sums of code points, mixed by the splitmix64
  finaliser with a salt per n-gram kind; never Python's salted `hash()`) into 2**bits
  buckets;
- a window's vector is binary (1 for every bucket an n-gram inside it falls into) and
  L2-normalised. Buckets are de-duplicated through a scratch table, not by sorting, so
  scoring is a few array passes and a gather.

Long texts are scored in windows of `window` characters `stride` apart and the score is
the highest window's probability; the model is trained on the same windows, so a long
benign document is not penalised for its length and an instruction buried in the middle
of one is still seen. Up to `window + (max_windows - 1) * stride` characters one pass
hashes the whole text; beyond that `max_windows` windows spread evenly over the text are
hashed one by one, which bounds the cost of the model whatever the length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

WEIGHTS_FILE = "injection_weights.json"

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_PRIME = np.uint64(0x100000001B3)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_GOLDEN = 0x9E3779B97F4A7C15


def _salt(kind: int) -> np.uint64:
    """Per n-gram kind (1-9 words, 10+n characters), so a word and a 3-gram differ."""
    return np.uint64(_GOLDEN * kind & 0xFFFFFFFFFFFFFFFF)


_WORD_ASCII = np.zeros(129, dtype=bool)
_WORD_ASCII[[ord(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789_"]] = True
_WORD_ASCII[128] = True  # any non-ASCII character, unless punctuation (below)
_PUNCT_BLOCKS = ((0x2000, 0x206F), (0x3000, 0x303F), (0xFE30, 0xFE4F), (0xFF00, 0xFF0F))


def _mix(z: U64) -> U64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _positions_weights() -> U64:
    # Fixed odd multipliers per position in a word: splitmix64 of 1..64.
    return _mix(np.arange(1, 65, dtype=np.uint64)) | np.uint64(1)


_POS = _positions_weights()


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    bits: int = 18
    char_ngrams: tuple[int, int] = (3, 5)
    word_ngrams: tuple[int, int] = (1, 2)
    window: int = 2048
    stride: int = 1024
    max_windows: int = 24

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        return cls(
            bits=int(data["bits"]),
            char_ngrams=(int(data["char_ngrams"][0]), int(data["char_ngrams"][1])),
            word_ngrams=(int(data["word_ngrams"][0]), int(data["word_ngrams"][1])),
            window=int(data["window"]),
            stride=int(data["stride"]),
            max_windows=int(data["max_windows"]),
        )

    @property
    def one_pass_chars(self) -> int:
        return self.window + (self.max_windows - 1) * self.stride


@dataclass(frozen=True, slots=True)
class _Grams:
    """Every n-gram of a string: its bucket and, per kind, where each one starts and ends."""

    buckets: I64  # all kinds one after another
    kinds: list[tuple[int, I64, I64]]  # (offset into buckets, starts, ends); empty if unasked


def normalise(text: str) -> str:
    """Lower-case, one space per whitespace run, a space at each end."""
    return " " + " ".join(text.lower().split()) + " "


def _word_hashes(codes: I64) -> tuple[U64, I64, I64]:
    is_word = _WORD_ASCII[np.minimum(codes, 128)]
    for lo, hi in _PUNCT_BLOCKS:
        is_word &= (codes < lo) | (codes > hi)
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64), starts, ends
    inside = np.flatnonzero(is_word)
    word_of = np.cumsum(edges[:-1] == 1)[inside] - 1
    pos = np.minimum(inside - starts[word_of], 63)
    parts = (codes[inside].astype(np.uint64) + np.uint64(1)) * _POS[pos]
    offsets = np.concatenate(([0], np.cumsum(ends - starts)[:-1]))
    return np.add.reduceat(parts, offsets), starts, ends


def _grams(norm: str, config: FeatureConfig, spans: bool) -> _Grams:
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    hashes: list[U64] = []
    kinds: list[tuple[int, I64, I64]] = []
    offset = 0

    def add(h: U64, kind: int, starts: I64 | None, ends: I64 | None) -> None:
        nonlocal offset
        hashes.append(h ^ _salt(kind))
        if spans and starts is not None and ends is not None:
            kinds.append((offset, starts, ends))
        offset += len(h)

    words, starts, ends = _word_hashes(codes)
    lo, hi = config.word_ngrams
    if lo <= 1 <= hi and len(words):
        add(words, 1, starts, ends)
    if lo <= 2 <= hi and len(words) > 1:
        add(words[:-1] * _PRIME + words[1:], 2, starts[:-1], ends[1:])
    lo, hi = config.char_ngrams
    c64 = codes.astype(np.uint64)
    h = c64
    for n in range(2, hi + 1):
        if len(codes) < n:
            break
        h = h[:-1] * _PRIME + c64[n - 1 :]
        if n >= lo:
            first = np.arange(len(h), dtype=np.int64) if spans else None
            add(h, 10 + n, first, None if first is None else first + n)
    if not hashes:
        return _Grams(np.zeros(0, dtype=np.int64), kinds)
    buckets = (_mix(np.concatenate(hashes)) >> np.uint64(64 - config.bits)).astype(np.int64)
    return _Grams(buckets, kinds)


def _window_starts(length: int, config: FeatureConfig) -> list[int]:
    if length <= config.window:
        return [0]
    count = min(config.max_windows, math.ceil((length - config.window) / config.stride) + 1)
    last = length - config.window
    return [round(i * last / (count - 1)) for i in range(count)]


def _segments(text: str, config: FeatureConfig) -> list[tuple[_Grams, I64, I64]]:
    """(n-grams, window starts, window ends) per hashed stretch of the text; a stretch
    with one window carries no spans (all its n-grams are in it)."""
    norm = normalise(text)
    starts = _window_starts(len(norm), config)
    if len(starts) == 1:
        return [(_grams(norm, config, False), np.zeros(1, np.int64), np.ones(1, np.int64))]
    if len(norm) <= config.one_pass_chars:
        a = np.array(starts, dtype=np.int64)
        b = np.minimum(a + config.window, len(norm))
        return [(_grams(norm, config, True), a, b)]
    one = (np.zeros(1, np.int64), np.ones(1, np.int64))
    return [(_grams(norm[s : s + config.window], config, False), *one) for s in starts]


def _window_ranges(grams: _Grams, a: I64, b: I64) -> list[tuple[I64, I64]]:
    """Per kind, the [first, last) indices into `grams.buckets` of each window's n-grams."""
    if not grams.kinds:
        return [(np.zeros(1, np.int64), np.full(1, len(grams.buckets), np.int64))]
    out = []
    for offset, starts, ends in grams.kinds:
        first = np.searchsorted(starts, a, side="left")
        last = np.maximum(np.searchsorted(ends, b, side="right"), first)
        out.append((first + offset, last + offset))
    return out


def _distinct(buckets: I64, scratch: npt.NDArray[np.int32]) -> I64:
    # Each bucket once, without sorting: every occurrence writes its position into the
    # scratch table; the occurrence whose write survived stands for its bucket.
    pos = np.arange(len(buckets), dtype=np.int32)
    scratch[buckets] = pos
    kept: I64 = buckets[scratch[buckets] == pos]
    return kept


def features(text: str, config: FeatureConfig) -> list[I64]:
    """Per scoring window, the distinct buckets of its n-grams (unordered). Each present
    bucket has value 1 / sqrt(number of distinct buckets): a binary, L2-normalised vector."""
    scratch = np.empty(1 << config.bits, dtype=np.int32)
    out = []
    for grams, a, b in _segments(text, config):
        ranges = _window_ranges(grams, a, b)
        for j in range(len(a)):
            parts = [grams.buckets[first[j] : last[j]] for first, last in ranges]
            out.append(_distinct(np.concatenate(parts), scratch))
    return out


class InjectionModel:
    """Logistic regression over hashed n-grams; `score` is a probability of injection."""

    def __init__(
        self,
        weights: F64,
        bias: float,
        config: FeatureConfig,
        threshold: float,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.weights = weights
        self.bias = bias
        self.config = config
        self.threshold = threshold
        self.thresholds: dict[str, float] = {}  # other operating points, by name
        self.metadata = metadata or {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InjectionModel:
        """From the weights file's JSON: indices are deltas of the sorted bucket indices."""
        config = FeatureConfig.from_dict(data["features"])
        weights = np.zeros(1 << config.bits, dtype=np.float64)
        idx = np.cumsum(np.asarray(data["weights"]["indices"], dtype=np.int64))
        weights[idx] = np.asarray(data["weights"]["values"], dtype=np.float64)
        model = cls(
            weights, float(data["bias"]), config, float(data["threshold"]), data.get("metadata", {})
        )
        model.thresholds = {k: float(v) for k, v in data.get("thresholds", {}).items()}
        return model

    @classmethod
    def load(cls) -> InjectionModel:
        """The model shipped with the package (read once, then shared)."""
        return _load_shipped()

    def logits(self, text: str) -> F64:
        """One logit per scoring window."""
        return np.array(
            [
                self.bias + float(self.weights[idx].sum()) / math.sqrt(max(1, len(idx)))
                for idx in features(text, self.config)
            ]
        )

    def score(self, text: str) -> float:
        """Probability that `text` is an injection: the highest over its windows."""
        best = float(self.logits(text).max())
        return 1.0 / (1.0 + math.exp(-best)) if best > -700.0 else 0.0


@cache
def _load_shipped() -> InjectionModel:
    raw = resources.files("modelway.guardrails").joinpath(WEIGHTS_FILE).read_text("utf-8")
    return InjectionModel.from_dict(json.loads(raw))
