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

The hashing is a few dozen whole-array numpy operations, each costing a few µs whatever
its size, so the code keeps their number down; `tests/unit/test_injection_features.py`
checks every bucket against a plain-Python reference of the definition above (the
shipped weights are valid only as long as no bucket moves).

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
import re
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


def _u64(value: int) -> U64:
    # A 0-d array rather than a np.uint64 scalar: numpy resolves it faster in an operation
    # (which, for arrays of a few thousand elements, is much of the cost of one).
    return np.array(value & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)


_M1 = _u64(0xBF58476D1CE4E5B9)
_M2 = _u64(0x94D049BB133111EB)
_PRIME = _u64(0x100000001B3)
_ONE = _u64(1)
_S30, _S27, _S31 = _u64(30), _u64(27), _u64(31)
_GOLDEN = 0x9E3779B97F4A7C15


def _salt(kind: int) -> U64:
    """Per n-gram kind (1-9 words, 10+n characters), so a word and a 3-gram differ."""
    return _u64(_GOLDEN * kind)


_NO_SPANS = np.zeros(0, dtype=np.int64)


_PUNCT_BLOCKS = ((0x2000, 0x206F), (0x3000, 0x303F), (0xFE30, 0xFE4F), (0xFF00, 0xFF0F))


def _word_table() -> npt.NDArray[np.bool_]:
    # Indexed by code point up to U+FFFF; every block of punctuation lies below it, so a
    # code point beyond it is looked up at U+FFFF, which is a word character.
    table = np.ones(0x10000, dtype=bool)
    table[:128] = False
    table[[ord(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789_"]] = True
    for lo, hi in _PUNCT_BLOCKS:
        table[lo : hi + 1] = False
    return table


_WORD_CHAR = _word_table()


def _mix(z: U64) -> U64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _positions_weights() -> U64:
    # Fixed odd multipliers per position in a word: splitmix64 of 1..64.
    return _mix(np.arange(1, 65, dtype=np.uint64)) | _ONE


_POS = _positions_weights()
_LAST_POS = np.array(len(_POS) - 1, dtype=np.int64)


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


# ASCII text is normalised as bytes (one translation lower-cases it and turns every other
# whitespace into a space) and hashed from them, with no string per word or character.
_ASCII_FOLD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f",
    b"abcdefghijklmnopqrstuvwxyz         ",
)
_SPACE_RUN = re.compile(b"  +")


def _normalised(text: str) -> str | bytes:
    """`normalise(text)`, as ASCII bytes when the text is ASCII."""
    if text.isascii():
        folded = text.encode("ascii").translate(_ASCII_FOLD)
        if b"  " in folded:
            folded = _SPACE_RUN.sub(b" ", folded)
        folded = folded.strip(b" ")
        return b" " + folded + b" " if folded else b"  "
    return " " + " ".join(text.lower().split()) + " "


def normalise(text: str) -> str:
    """Lower-case, one space per whitespace run, a space at each end."""
    norm = _normalised(text)
    return norm.decode("ascii") if isinstance(norm, bytes) else norm


def _codes(norm: str | bytes) -> tuple[U64, npt.NDArray[np.bool_]]:
    """Code points of `norm` (bytes: ASCII), and which of them are word characters."""
    if isinstance(norm, bytes) or norm.isascii():
        raw = norm if isinstance(norm, bytes) else norm.encode("ascii")
        small: npt.NDArray[np.uint8] = np.frombuffer(raw, dtype=np.uint8)
        return small.astype(np.uint64), _WORD_CHAR.take(small)
    wide = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32)
    return wide.astype(np.uint64), _WORD_CHAR.take(np.minimum(wide, 0xFFFF))


def _word_hashes(codes: U64, is_word: npt.NDArray[np.bool_]) -> tuple[U64, I64, I64]:
    """Per word: the sum of (code point + 1) * _POS[position in word, at most 63], and
    where the word starts and ends."""
    # (ufunc and ndarray methods rather than np.flatnonzero, np.cumsum or np.repeat: for a
    # few hundred words, the overhead of a call is most of its cost)
    padded = np.zeros(len(codes) + 2, dtype=bool)
    padded[1:-1] = is_word
    edges = (padded[1:] != padded[:-1]).nonzero()[0]  # start, end, start, end, ...
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64), starts, ends
    lengths = ends - starts
    first = np.add.accumulate(lengths)
    pos = np.arange(int(first[-1]))  # one per word character
    first -= lengths  # where each word's characters begin among all word characters
    pos -= first.repeat(lengths)  # the character's position in its word
    np.minimum(pos, _LAST_POS, out=pos)
    parts = codes[is_word]
    parts += _ONE
    parts *= _POS[pos]
    return np.add.reduceat(parts, first), starts, ends


def _mix_to_buckets(z: U64, bits: int) -> I64:
    """`_mix(z) >> (64 - bits)` as int64, in place. Its last step, z ^ (z >> 31), leaves
    the top 31 bits as they are, so for bits <= 31 it is skipped."""
    tmp = np.empty_like(z)
    for shift, factor in ((_S30, _M1), (_S27, _M2)):
        np.right_shift(z, shift, out=tmp)
        z ^= tmp
        z *= factor
    if bits > 31:
        np.right_shift(z, _S31, out=tmp)
        z ^= tmp
    z >>= _u64(64 - bits)
    return z.view(np.int64)


def _grams(norm: str | bytes, config: FeatureConfig, spans: bool) -> _Grams:
    codes, is_word = _codes(norm)
    words, starts, ends = _word_hashes(codes, is_word)
    n_words, n_chars = len(words), len(codes)
    kinds: list[tuple[int, int, I64, I64]] = []  # (kind, count, starts, ends), in order
    lo, hi = config.word_ngrams
    if lo <= 1 <= hi and n_words:
        kinds.append((1, n_words, starts, ends))
    if lo <= 2 <= hi and n_words > 1:
        kinds.append((2, n_words - 1, starts[:-1], ends[1:]))
    lo, hi = config.char_ngrams
    for n in range(max(lo, 2), min(hi, n_chars) + 1):
        first = np.arange(n_chars - n + 1, dtype=np.int64) if spans else _NO_SPANS
        kinds.append((10 + n, n_chars - n + 1, first, first + n))
    if not kinds:
        return _Grams(np.zeros(0, dtype=np.int64), [])
    # One buffer holds every kind's hashes, so that salting and mixing are a few passes.
    hashes = np.empty(sum(k[1] for k in kinds), dtype=np.uint64)
    offsets = np.cumsum([0] + [k[1] for k in kinds]).tolist()
    part = {k[0]: hashes[at : at + k[1]] for at, k in zip(offsets, kinds, strict=False)}
    if 1 in part:
        part[1][:] = words
    if 2 in part:
        np.multiply(words[:-1], _PRIME, out=part[2])
        part[2] += words[1:]
    h = codes  # character n-grams: h(n) = h(n - 1)[:-1] * _PRIME + codes[n - 1:]
    for n in range(2, min(hi, n_chars) + 1):
        h = np.multiply(h[:-1], _PRIME, out=part.get(10 + n))
        h += codes[n - 1 :]
    for kind, hashed in part.items():
        hashed ^= _salt(kind)
    buckets = _mix_to_buckets(hashes, config.bits)
    if not spans:
        return _Grams(buckets, [])
    return _Grams(buckets, [(at, k[2], k[3]) for at, k in zip(offsets, kinds, strict=False)])


def _window_starts(length: int, config: FeatureConfig) -> list[int]:
    if length <= config.window:
        return [0]
    count = min(config.max_windows, math.ceil((length - config.window) / config.stride) + 1)
    last = length - config.window
    return [round(i * last / (count - 1)) for i in range(count)]


Bounds = tuple[I64, I64]  # the windows of one hashed stretch: starts, ends


def _segments(text: str, config: FeatureConfig) -> list[tuple[_Grams, Bounds | None]]:
    """(n-grams, window bounds) per hashed stretch of the text; a stretch that is one
    window has no bounds and no spans (all its n-grams are in it)."""
    norm = _normalised(text)
    starts = _window_starts(len(norm), config)
    if len(starts) == 1:
        return [(_grams(norm, config, False), None)]
    if len(norm) <= config.one_pass_chars:
        a = np.array(starts, dtype=np.int64)
        return [(_grams(norm, config, True), (a, np.minimum(a + config.window, len(norm))))]
    return [(_grams(norm[s : s + config.window], config, False), None) for s in starts]


def _window_ranges(grams: _Grams, a: I64, b: I64) -> list[tuple[list[int], list[int]]]:
    """Per kind, the [first, last) indices into `grams.buckets` of each window's n-grams."""
    out = []
    for offset, starts, ends in grams.kinds:
        first = np.searchsorted(starts, a, side="left")
        last = np.maximum(np.searchsorted(ends, b, side="right"), first)
        out.append(((first + offset).tolist(), (last + offset).tolist()))
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
    for grams, bounds in _segments(text, config):
        if bounds is None:
            out.append(_distinct(grams.buckets, scratch))
            continue
        ranges = _window_ranges(grams, *bounds)
        for j in range(len(bounds[0])):
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
