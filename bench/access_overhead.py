"""Added latency of authentication + limits + budgets + accounting, with Redis.

Two measurements in one run:

1. In process: the stages (authenticate, data class, admission) around an innermost
   step that answers at once, against the same chain without them. The difference is
   what the gateway adds per request: key lookup, prompt token count, one Redis
   round trip to take a request, its tokens, a concurrency slot and the budget
   reservation, pricing, and handing the ledger row to the writer. Settling runs after
   the answer: "isolated" requests find it done, "back to back" ones wait behind it in
   Redis; its cost also shows in the throughput line.
2. Over HTTP: four gateway processes in front of the mock upstream, from authentication
   off and no limits to a key that has rpm, tpm, max_parallel and a hard budget on
   Redis; sequential requests, interleaved in blocks. Printed as the client sees it and
   as each gateway logs it (`overhead_ms` of its request log lines: its own time outside
   the upstream call, without the client's and the HTTP round trip's share).

    .venv/bin/python bench/access_overhead.py [--redis redis://127.0.0.1:6379/0]
        [--requests 5000] [--http-requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
import yaml

from modelway.access.admin_models import KeyCreate
from modelway.api.heap import freeze_long_lived
from modelway.app import build_runtime
from modelway.config import Config
from modelway.pipeline.context import RequestContext, Result
from modelway.pipeline.stage import build_chain
from modelway.protocol.openai_chat import ChatRequest, make_response, make_usage

MASTER = "mw-bench-master-key-0123456789"
KEY_POLICY = {
    "limits": {"rpm": 10**9, "tpm": 10**12, "max_parallel": 10_000},
    "budgets": [{"limit_usd": 10**9, "period": "month"}],
}


def config(mock_url: str, state: Path, redis: str | None, auth: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "state_dir": str(state),
        "accounting": {"prices": {"openai/upstream-gpt": {"input": 2.5, "output": 10}}},
        "models": [
            {
                "name": "gpt-4o",
                "deployments": [
                    {"provider": "openai", "model": "upstream-gpt", "base_url": mock_url + "/v1"}
                ],
            }
        ],
    }
    if auth:
        raw["auth"] = {"master_key": MASTER}
    if redis:
        raw["redis_url"] = redis
    return raw


async def in_process(redis: str, requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.model_validate(config("http://127.0.0.1:9", Path(tmp), redis, auth=True))
        runtime = build_runtime(cfg)
        await runtime.services.start()
        made = await runtime.services.admin.create_key(
            "bench", KeyCreate.model_validate(KEY_POLICY)
        )
        answer = make_response(
            id="chatcmpl-bench",
            created=0,
            model="gpt-4o",
            content="Hello! How can I help you today?",
            finish_reason="stop",
            usage=make_usage(12, 9),
        )

        async def upstream(ctx: RequestContext) -> Result:
            ctx.deployment, ctx.provider, ctx.usage = "openai:upstream-gpt", "openai", answer.usage
            return answer

        full = build_chain(runtime.stages[1:], upstream)  # all but the log line
        bare = build_chain([], upstream)
        request = ChatRequest.model_validate(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello politely."}]}
        )
        headers = {"authorization": f"Bearer {made['key']}"}

        async def once(chain: Any, i: int) -> float:
            ctx = RequestContext(
                request_id=f"b{i}", operation="chat", request=request, headers=headers
            )
            start = time.perf_counter()
            await chain(ctx)
            return time.perf_counter() - start

        counters = runtime.services.counters
        for i in range(500):  # warm up: tokenizer, scripts, connections
            await once(full, i)
        freeze_long_lived()  # as `modelway serve` does once loaded
        # Isolated: before each request, the previous one's settlement has been applied
        # (a GET queued behind it has come back; not timed), as when requests do not
        # arrive back to back. Back to back: the next request starts at once, and its
        # admission waits behind the previous settlement in Redis.
        isolated, back_to_back, without = [], [], []
        for i in range(requests):
            await counters.budget_spent("bench:fence")
            isolated.append(await once(full, i))
            without.append(await once(bare, i))
        for i in range(requests):
            back_to_back.append(await once(full, requests + i))
            without.append(await once(bare, i))
        gate = asyncio.Semaphore(32)

        async def gated(i: int) -> float:
            async with gate:
                return await once(full, i)

        started = time.perf_counter()
        await asyncio.gather(*(gated(i) for i in range(requests)))
        await runtime.services.counters.close()  # waits for the settles still in flight
        rate = requests / (time.perf_counter() - started)
        await runtime.services.close()
    bare_p50 = statistics.median(without)
    result = {"bare_p50_us": bare_p50 * 1e6, "throughput_rps": rate}
    for name, timed in (("isolated", isolated), ("back_to_back", back_to_back)):
        added = sorted(t - bare_p50 for t in timed)
        result[f"{name}_p50_us"] = statistics.median(added) * 1e6
        result[f"{name}_p99_us"] = added[int(len(added) * 0.99)] * 1e6
    return result


# name: (authentication on, counters backend or None, the key's policy)
VARIANTS: dict[str, tuple[bool, str | None, dict[str, Any]]] = {
    "plain": (False, None, {}),
    "auth + accounting": (True, None, {}),
    "+ limits, budget (memory)": (True, "memory", KEY_POLICY),
    "+ limits, budget (Redis)": (True, "redis", KEY_POLICY),
}


def http_compare(redis: str, requests: int) -> dict[str, tuple[float, float]]:
    """Per variant, p50 of the client's latency and of the gateway's own `overhead_ms`
    (its request log: time spent in the gateway outside the upstream call), in ms;
    sequential requests, variants interleaved in blocks."""
    from processes import cores, free_port, start, stop

    gw_cpus, other = cores()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mock_port = free_port()
        mock = start(
            ["mock-upstream", "--port", str(mock_port)], mock_port, other, folder / "m.log"
        )
        mock_url = f"http://127.0.0.1:{mock_port}"
        procs, urls, keys = [], {}, {}
        for n, (name, (auth, counters, policy)) in enumerate(VARIANTS.items()):
            state = folder / f"v{n}"
            path = folder / f"v{n}.yaml"
            raw = config(mock_url, state, redis if counters == "redis" else None, auth)
            path.write_text(yaml.safe_dump(raw))
            port = free_port()
            args = ["serve", "--config", str(path), "--port", str(port)]
            procs.append(start(args, port, gw_cpus, folder / f"v{n}.log"))
            urls[name] = f"http://127.0.0.1:{port}"
            keys[name] = "unused"
            if auth:
                keys[name] = httpx.post(
                    urls[name] + "/admin/keys",
                    json=policy,
                    headers={"authorization": f"Bearer {MASTER}"},
                ).json()["key"]
        try:
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}
            latency: dict[str, list[float]] = {name: [] for name in VARIANTS}
            names = list(VARIANTS)
            with httpx.Client() as client:
                for block in range(requests // 50 + 5):
                    shift = block % len(names)
                    for name in names[shift:] + names[:shift]:
                        headers = {"authorization": f"Bearer {keys[name]}"}
                        for _ in range(50):
                            start_t = time.perf_counter()
                            r = client.post(
                                urls[name] + "/v1/chat/completions", json=body, headers=headers
                            )
                            elapsed = time.perf_counter() - start_t
                            assert r.status_code == 200, r.text
                            if block >= 5:  # warm-up blocks are not counted
                                latency[name].append(elapsed)
        finally:
            for proc in (*procs, mock):
                stop(proc)
        result = {}
        for n, name in enumerate(VARIANTS):
            lines = (folder / f"v{n}.log").read_text().splitlines()
            logged = [json.loads(line) for line in lines if '"overhead_ms"' in line]
            overhead = statistics.median(r["overhead_ms"] for r in logged[250:])
            result[name] = (statistics.median(latency[name]) * 1e3, overhead)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--http-requests", type=int, default=3000)
    args = parser.parse_args()
    # The HTTP part first: run after the in-process part in the same process, its
    # gateways logged about 0.1 ms more per request (the cause is not known).
    http = http_compare(args.redis, args.http_requests)
    inproc = uvloop.run(in_process(args.redis, args.requests))
    print("in process (auth + limits + budgets + accounting, Redis), added per request:")
    for name in ("isolated", "back_to_back"):
        p50, p99 = inproc[f"{name}_p50_us"], inproc[f"{name}_p99_us"]
        print(f"  {name.replace('_', ' '):13} p50 {p50:.0f} us, p99 {p99:.0f} us")
    print(f"  (the chain without them: p50 {inproc['bare_p50_us']:.1f} us)")
    print(f"  throughput through the stages, 32 at once: {inproc['throughput_rps']:,.0f} req/s")
    print("over HTTP, sequential requests, one gateway core, p50 and added over plain:")
    print(f"  {'':28} {'client latency':>23} {'gateway overhead_ms':>23}")
    plain, plain_overhead = http["plain"]
    for name, (p50, overhead) in http.items():
        print(
            f"  {name:28} {p50:7.3f} ms ({p50 - plain:+.3f} ms)"
            f" {overhead:7.3f} ms ({overhead - plain_overhead:+.3f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
