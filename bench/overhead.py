"""The gateway's own cost: added latency and throughput against calling the upstream directly.

Starts the mock upstream and a gateway in front of it, drives load from a separate
process (wrk when installed, else a built-in aiohttp load generator), and prints:

- non-streamed, concurrency 1: added latency p50/p99 (gateway minus direct);
- non-streamed, concurrency 32: requests/s and p99, direct and through the gateway;
- streamed, concurrency 1: time to first token p50/p99, direct and through the gateway;
- resident memory of the gateway after start (no embedded model loaded).

On a machine with two or more cores the gateway gets core 0 to itself and the mock and
the load generator share core 1, so the figures measure the gateway, not its neighbours.
Each measurement is repeated (--repeat) with direct and gateway runs interleaved, and the
median is reported: the machines this runs on are shared and noisy.

    .venv/bin/python bench/overhead.py [--repeat 5] [--duration 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from processes import cores, free_port, rss_mb, start

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hello there general"}]}
STREAM_BODY = {**BODY, "stream": True}


def wrk_run(url: str, connections: int, duration: float, cpus: set[int]) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{orjson.dumps(BODY).decode()}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    ).stdout
    script.unlink()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed requests against {url}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _wrk_ms(out, "50%"),
        "p99_ms": _wrk_ms(out, "99%"),
    }


def _wrk_ms(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert match is not None, out
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def _python_load(url: str, connections: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    body = orjson.dumps(BODY)
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status} from {url}")
                latencies.append(time.perf_counter() - t0)

        start_t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start_t
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def load(url: str, connections: int, duration: float, cpus: set[int]) -> dict[str, float]:
    if shutil.which("wrk"):
        return wrk_run(url, connections, duration, cpus)
    os.sched_setaffinity(0, cpus)
    return asyncio.run(_python_load(url, connections, duration))


async def _ttft(url: str, requests: int) -> dict[str, float]:
    """Time from sending a streamed request to receiving its first content chunk."""
    body = orjson.dumps(STREAM_BODY)
    samples: list[float] = []
    async with aiohttp.ClientSession() as session:
        for i in range(requests + 20):
            t0 = time.perf_counter()
            first: float | None = None
            async with session.post(
                url, data=body, headers={"content-type": "application/json"}
            ) as resp:
                async for line in resp.content:
                    content = line.startswith(b"data: {") and b'"content":"' in line
                    if first is None and content and b'"content":""' not in line:
                        first = time.perf_counter() - t0
            if i >= 20 and first is not None:  # the first 20 warm the connections up
                samples.append(first)
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def ttft(url: str, requests: int, cpus: set[int]) -> dict[str, float]:
    os.sched_setaffinity(0, cpus)
    return asyncio.run(_ttft(url, requests))


# --- the run ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--stream-requests", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    gw_cpus, other_cpus = cores()
    folder = Path(tempfile.mkdtemp(prefix="modelway-bench-"))
    mock_port, gw_port = free_port(), free_port()
    config = folder / "gateway.yaml"
    config.write_text(
        "logging: {level: info}\n"
        "models:\n"
        "  - name: bench\n"
        "    deployments:\n"
        f"      - {{provider: openai, model: bench, base_url: 'http://127.0.0.1:{mock_port}/v1'}}\n"
    )
    mock = start(
        ["mock-upstream", "--port", str(mock_port)], mock_port, other_cpus, folder / "mock.log"
    )
    gateway = start(
        ["serve", "--config", str(config), "--port", str(gw_port)],
        gw_port,
        gw_cpus,
        folder / "gateway.log",
    )
    try:
        time.sleep(1.0)
        memory = rss_mb(gateway.pid)
        direct = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
        through = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for name, url, conns in (
                ("direct_c1", direct, 1),
                ("gateway_c1", through, 1),
                ("direct_c32", direct, 32),
                ("gateway_c32", through, 32),
            ):
                runs.setdefault(name, []).append(load(url, conns, args.duration, other_cpus))
            runs.setdefault("direct_stream", []).append(
                ttft(direct, args.stream_requests, other_cpus)
            )
            runs.setdefault("gateway_stream", []).append(
                ttft(through, args.stream_requests, other_cpus)
            )
        result = summarise(runs, memory)
    finally:
        for proc in (gateway, mock):
            proc.terminate()
            proc.wait(timeout=15)
    report(result, args, gw_cpus, other_cpus)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


def summarise(runs: dict[str, list[dict[str, float]]], memory: float) -> dict[str, Any]:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    added_c1 = [
        g["p50_ms"] - d["p50_ms"]
        for d, g in zip(runs["direct_c1"], runs["gateway_c1"], strict=True)
    ]
    added_c1_p99 = [
        g["p99_ms"] - d["p99_ms"]
        for d, g in zip(runs["direct_c1"], runs["gateway_c1"], strict=True)
    ]
    added_ttft = [
        g["p50_ms"] - d["p50_ms"]
        for d, g in zip(runs["direct_stream"], runs["gateway_stream"], strict=True)
    ]
    return {
        "added_p50_ms_c1": statistics.median(added_c1),
        "added_p99_ms_c1": statistics.median(added_c1_p99),
        "direct_p50_ms_c1": med("direct_c1", "p50_ms"),
        "gateway_p50_ms_c1": med("gateway_c1", "p50_ms"),
        "direct_rps_c32": med("direct_c32", "rps"),
        "gateway_rps_c32": med("gateway_c32", "rps"),
        "direct_p99_ms_c32": med("direct_c32", "p99_ms"),
        "gateway_p99_ms_c32": med("gateway_c32", "p99_ms"),
        "direct_ttft_p50_ms": med("direct_stream", "p50_ms"),
        "gateway_ttft_p50_ms": med("gateway_stream", "p50_ms"),
        "gateway_ttft_p99_ms": med("gateway_stream", "p99_ms"),
        "added_ttft_p50_ms": statistics.median(added_ttft),
        "gateway_rss_mb_after_start": memory,
        "runs": runs,
    }


def report(r: dict[str, Any], args: argparse.Namespace, gw: set[int], other: set[int]) -> None:
    tool = "wrk" if shutil.which("wrk") else "aiohttp load generator"
    print(
        f"# modelway overhead  ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"gateway on cpu {sorted(gw)}, mock + load on cpu {sorted(other)}, load: {tool}, "
        f"median of {args.repeat} runs of {args.duration:g}s)"
    )
    rows = [
        ("added latency p50, non-streamed, c=1", f"{r['added_p50_ms_c1']:.3f} ms", "<= 0.5 ms"),
        ("added latency p99, non-streamed, c=1", f"{r['added_p99_ms_c1']:.3f} ms", ""),
        (
            "throughput, non-streamed, c=32",
            f"{r['gateway_rps_c32']:,.0f} req/s (direct {r['direct_rps_c32']:,.0f})",
            ">= 3,000 req/s",
        ),
        (
            "p99 latency, non-streamed, c=32",
            f"{r['gateway_p99_ms_c32']:.2f} ms (direct {r['direct_p99_ms_c32']:.2f})",
            "<= 20 ms",
        ),
        ("added time to first token p50, c=1", f"{r['added_ttft_p50_ms']:.3f} ms", "<= 1 ms"),
        ("resident memory after start", f"{r['gateway_rss_mb_after_start']:.0f} MB", "<= 120 MB"),
    ]
    print(f"| {'measure':40s} | {'result':32s} | {'target':15s} |")
    print(f"|{'-' * 42}|{'-' * 34}|{'-' * 17}|")
    for name, value, target in rows:
        print(f"| {name:40s} | {value:32s} | {target:15s} |")


if __name__ == "__main__":
    raise SystemExit(main())
