"""The response cache: what a hit costs, what a semantic lookup costs, how far exact
vector search scales, and how well the semantic threshold separates paraphrases from
near-misses.

1. Exact hit, in process: the cache stage answering from its store (key hash, lookup,
   decode, a fresh response), against the same chain without the stage answering at
   once; memory and, with --redis, Redis.
2. Exact hit over HTTP: a gateway with the cache in front of the mock upstream; the
   latency of hits, against the same gateway's latency for requests that skip the
   cache (no-cache, no-store) minus the upstream's own time.
3. Semantic lookup: embedding the question (the bundled all-MiniLM-L6-v2, in process)
   plus the search, with 10,000 cached questions in the partition.
4. Exact search alone over one partition of 10k to 1M vectors.
5. Quality on bench/data/semantic_pairs.jsonl: at each threshold, the share of
   paraphrase pairs answered (hit rate) and of near-miss pairs wrongly answered.

    .venv/bin/python bench/cache.py [--redis redis://127.0.0.1:6379/0] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop
import yaml

from modelway.cache.answers import CachedAnswer
from modelway.cache.keys import exact_key
from modelway.cache.runtime import ResponseCache
from modelway.cache.semantic_guard import same_specifics
from modelway.cache.vector_index import VectorIndex
from modelway.config import EmbeddingDeployment
from modelway.config_cache import CacheConfig, CachePolicy
from modelway.pipeline.cache_stage import CacheStage
from modelway.pipeline.context import RequestContext, Result
from modelway.pipeline.stage import build_chain
from modelway.protocol.openai_chat import ChatRequest, make_response, make_usage
from modelway.providers.local_embedding import LocalEmbeddingProvider

EMBEDDING_DIMS = 384  # all-MiniLM-L6-v2
PAIRS = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
ANSWER = make_response(
    id="chatcmpl-bench",
    created=1,
    model="upstream-gpt",
    content="Paris is the capital of France. " * 8,
    finish_reason="stop",
    usage=make_usage(20, 60),
)


def request() -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": "gpt-4o",
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        }
    )


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def answer_at_once(ctx: RequestContext) -> Result:
    return ANSWER


async def exact_in_process(redis: str | None, n: int) -> list[tuple[str, float, float]]:
    rows = []
    backends: list[tuple[str, CacheConfig, str | None]] = [
        ("memory", CacheConfig(backend="memory"), None)
    ]
    if redis:
        ns = f"bench-{uuid.uuid4().hex[:8]}"
        backends.append(("redis", CacheConfig(backend="redis", namespace=ns), redis))
    bare = build_chain([], answer_at_once)
    for name, config, url in backends:
        cache = ResponseCache.build(config, url, None)
        chain = build_chain([CacheStage(cache)], answer_at_once)
        req = request()
        key = exact_key("gpt-4o", "global", req)
        await cache.answers.set(key, CachedAnswer.of(ANSWER, "dep").encode(), 3600)
        with_cache: list[float] = []
        without: list[float] = []
        for i in range(n):
            for chain_, out in ((chain, with_cache), (bare, without)):
                ctx = RequestContext(request_id=str(i), operation="chat", request=req)
                t0 = time.perf_counter()
                await chain_(ctx)
                out.append(time.perf_counter() - t0)
            assert ctx.cache is None  # the bare chain; the cached one answered "hit"
        p50, p99 = quantiles([(a - b) * 1000 for a, b in zip(with_cache, without, strict=True)])
        rows.append((f"exact hit, {name} store (in process, added)", p50, p99))
        await cache.close()
    return rows


def exact_over_http(n: int) -> list[tuple[str, float, float]]:
    from processes import cores, free_port, start, stop

    gw_cpus, other = cores()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mport = free_port()
        mock = start(["mock-upstream", "--port", str(mport)], mport, other, folder / "m.log")
        mock_url = f"http://127.0.0.1:{mport}"
        raw = {
            "state_dir": str(folder / "state"),
            "cache": {},
            "models": [
                {
                    "name": "gpt-4o",
                    "deployments": [
                        {
                            "provider": "openai",
                            "model": "upstream-gpt",
                            "base_url": mock_url + "/v1",
                        }
                    ],
                }
            ],
        }
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        gport = free_port()
        args = ["serve", "--config", str(path), "--port", str(gport)]
        gateway = start(args, gport, gw_cpus, folder / "gw.log")
        gw_url = f"http://127.0.0.1:{gport}/v1/chat/completions"
        try:
            body = request().model_dump(exclude_none=True)
            skip = {"cache-control": "no-cache, no-store"}
            variants: list[tuple[str, dict[str, str]]] = [
                (gw_url, {}),
                (gw_url, skip),
                (mock_url + "/v1/chat/completions", {}),
            ]
            times: list[list[float]] = [[], [], []]
            with httpx.Client(timeout=30) as client:
                first = client.post(gw_url, json=body)  # stores the answer
                assert first.headers.get("x-modelway-cache") == "miss", first.text
                for _ in range(n):
                    for (url, headers), out in zip(variants, times, strict=True):
                        t0 = time.perf_counter()
                        r = client.post(url, json=body, headers=headers)
                        out.append(time.perf_counter() - t0)
                        assert r.status_code == 200
            names = [
                "HTTP: cache hit, end to end",
                "HTTP: same request, cache skipped (to the mock)",
                "HTTP: the mock upstream directly",
            ]
            return [
                (name, *quantiles([t * 1000 for t in out]))
                for name, out in zip(names, times, strict=True)
            ]
        finally:
            stop(gateway)
            stop(mock)


async def semantic(n: int, entries: int) -> tuple[list[tuple[str, float, float]], Any]:
    provider = LocalEmbeddingProvider(
        EmbeddingDeployment(provider="local_embedding"), "bench", "all-minilm-l6-v2"
    )
    await provider.start()
    config = CacheConfig(backend="memory", policies={"default": CachePolicy(semantic=True)})
    cache = ResponseCache.build(config, None, provider.vectors, EMBEDDING_DIMS)
    assert cache.semantic is not None
    req = request()
    probe = await cache.semantic.probe("gpt-4o", "global", req, 0.95)
    assert probe is not None
    rng = np.random.default_rng(1)
    for i in range(entries):
        v = rng.standard_normal(EMBEDDING_DIMS).astype(np.float32)
        cache.semantic.index.add(probe.filter_key, f"k{i}", "q", v / np.linalg.norm(v), 2e9)
    questions = [
        "What is the capital of France?",
        "How do I reset my password?",
        "Explain the difference between a list and a tuple in Python.",
        "What's a good recipe for banana bread?",
    ]
    samples = []
    embed_only = []
    for i in range(n):
        text = questions[i % len(questions)]
        r = ChatRequest.model_validate(
            {**req.model_dump(exclude_none=True), "messages": [{"role": "user", "content": text}]}
        )
        t0 = time.perf_counter()
        await cache.semantic.probe("gpt-4o", "global", r, 0.95)
        samples.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await provider.vectors([text])
        embed_only.append(time.perf_counter() - t0)
    p50, p99 = quantiles([s * 1000 for s in samples])
    e50, e99 = quantiles([s * 1000 for s in embed_only])
    rows = [
        (f"semantic lookup: embed + search ({entries:,} in partition)", p50, p99),
        ("  of which embedding one question", e50, e99),
    ]
    return rows, provider


def search_scaling(sizes: list[int], repeat: int) -> list[tuple[str, float, float]]:
    rows = []
    rng = np.random.default_rng(2)
    for size in sizes:
        index = VectorIndex(EMBEDDING_DIMS, size)
        block = rng.standard_normal((size, EMBEDDING_DIMS)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        for i in range(size):
            index.add("p", f"k{i}", "q", block[i], 2e9)
        query = block[size // 2]
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            index.search("p", query)
            times.append(time.perf_counter() - t0)
        p50, p99 = quantiles([t * 1000 for t in times])
        mb = size * EMBEDDING_DIMS * 4 / 1e6
        rows.append((f"exact search, {size:,} vectors ({mb:,.0f} MB)", p50, p99))
        del index, block
    return rows


async def quality(provider: LocalEmbeddingProvider) -> list[tuple[float, ...]]:
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    a = await provider.vectors([p["a"] for p in pairs])
    b = await provider.vectors([p["b"] for p in pairs])
    sims = np.sum(a * b, axis=1)
    same = np.array([p["label"] == "same" for p in pairs])
    checked = np.array([same_specifics(p["a"], p["b"]) for p in pairs])
    rows = []
    for threshold in (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.98):
        close = sims >= threshold
        rows.append(
            (
                threshold,
                float(np.mean(close[same])),
                float(np.mean(close[~same])),
                float(np.mean((close & checked)[same])),
                float(np.mean((close & checked)[~same])),
            )
        )
    worst = max(zip(sims[~same], pairs_of(pairs, ~same), strict=True), key=lambda x: x[0])
    print(f"closest near-miss: {worst[0]:.4f} {worst[1]['a']!r} / {worst[1]['b']!r}")
    print(f"paraphrase cosine: median {float(np.median(sims[same])):.4f}")
    print(f"near-miss cosine:  median {float(np.median(sims[~same])):.4f}")
    return rows


def pairs_of(pairs: list[dict[str, Any]], mask: Any) -> list[dict[str, Any]]:
    return [p for p, m in zip(pairs, mask, strict=True) if m]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default=None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--http-requests", type=int, default=1000)
    parser.add_argument("--semantic-requests", type=int, default=400)
    parser.add_argument("--sizes", default="10000,100000,300000,1000000")
    args = parser.parse_args()
    rows = await exact_in_process(args.redis, args.requests)
    rows += await asyncio.to_thread(exact_over_http, args.http_requests)
    sem_rows, provider = await semantic(args.semantic_requests, 10_000)
    rows += sem_rows
    rows += search_scaling([int(s) for s in args.sizes.split(",")], 50)
    print(f"\n{'measurement':62} {'p50 ms':>9} {'p99 ms':>9}")
    for name, p50, p99 in rows:
        print(f"{name:62} {p50:9.3f} {p99:9.3f}")
    print()
    table = await quality(provider)
    print(f"pairs: {sum(1 for _ in PAIRS.open())} from {PAIRS.name}")
    print("share answered from the cache (paraphrases: hit rate; near-misses: false hits)")
    print(f"{'':9} {'cosine alone':>25} {'cosine + lexical check':>25}")
    print(f"{'threshold':>9} {'paraphr.':>12} {'near-miss':>12} {'paraphr.':>12} {'near-miss':>12}")
    for threshold, hit, false_hit, hit_checked, false_checked in table:
        print(
            f"{threshold:9.2f} {hit:12.1%} {false_hit:12.1%} "
            f"{hit_checked:12.1%} {false_checked:12.1%}"
        )
    await provider.close()


if __name__ == "__main__":
    uvloop.run(main())
