"""Routing under faults: success rate and the latency retries add, with three mock upstreams.

Starts three mock upstreams (20 ms each) and a gateway with one model group of the three
(`retries: 3`, `backoff_initial_seconds: 0.01`, default circuit breakers), injects faults
into the mocks at run time, sends --requests non-streamed chat requests at --concurrency
per scenario, and prints for each scenario:

- the share of requests the client got a good answer to (200, and for streams a `[DONE]`
  without an error frame);
- end-to-end latency p50/p99 through the gateway, for all requests, for those that
  reached an upstream once, and for those that needed more than one attempt;
- upstream attempts per request (the mocks' request counts over the requests sent) and
  the faults the mocks injected;
- the p99 the faults add: p99 of the scenario minus p99 of the baseline, same repeat.

Every request carries a unique message and the mocks keep every body they receive, so
the attempts of each request are counted exactly, failed ones included. Each scenario
runs against a freshly started gateway (no breaker or latency state carried over),
warmed up with requests before the faults are switched on. As in `bench/overhead.py`,
the gateway gets core 0 to itself, the mocks and the load generator share the others,
each scenario is repeated (--repeat) and the median is reported. Last, the cost of one
routing decision is measured with `bench/routing_decisions.py` on the gateway's core.

    .venv/bin/python bench/resilience.py [--requests 300] [--concurrency 16] [--repeat 5]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from processes import cores, free_port, start, stop

MOCKS = ("mock-a", "mock-b", "mock-c")
GROUP = "bench"
MOCK_LATENCY_MS = 20
WARMUP_REQUESTS = 48
DECISIONS_TARGET_US = 50.0
_TAG = re.compile(rb"probe-(\d{6})")
_NO_FAULT: dict[str, Any] = {"fail_rate": 0.0, "fail_status": 500, "fail_mode": "status"}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stream: bool = False


ERRORS_AND_RESETS: dict[str, dict[str, Any]] = {
    "mock-a": {"fail_rate": 0.3, "fail_status": 500},
    "mock-b": {"fail_rate": 0.3, "fail_mode": "reset"},
}
SCENARIOS = (
    Scenario("baseline", "no faults"),
    Scenario("500 + reset", "mock-a 30% 500, mock-b 30% connection reset", ERRORS_AND_RESETS),
    Scenario(
        "429 + 503",
        "mock-a 30% 429 (Retry-After: 1), mock-b 30% 503",
        {
            "mock-a": {"fail_rate": 0.3, "fail_status": 429},
            "mock-b": {"fail_rate": 0.3, "fail_status": 503},
        },
    ),
    Scenario("one down", "mock-a 100% 500", {"mock-a": {"fail_rate": 1.0, "fail_status": 500}}),
    Scenario("streamed, 500 + reset", "as 500 + reset, streamed", ERRORS_AND_RESETS, stream=True),
)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, within the samples' range (few samples: no extrapolation)."""
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- one run of one scenario -------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    status: int
    seconds: float
    deployment: str | None


async def _send(session: aiohttp.ClientSession, url: str, index: int, stream: bool) -> Outcome:
    body: dict[str, Any] = {
        "model": GROUP,
        "messages": [{"role": "user", "content": f"hello there probe-{index:06d}"}],
    }
    if stream:
        body["stream"] = True
    data = orjson.dumps(body)
    t0 = time.perf_counter()
    try:
        async with session.post(
            url, data=data, headers={"content-type": "application/json"}
        ) as resp:
            ok = resp.status == 200
            if stream:
                done = False
                async for line in resp.content:
                    if line.startswith(b"data: [DONE]"):
                        done = True
                    elif line.startswith(b"data: ") and b'"error"' in line:
                        ok = False
                ok = ok and done
            else:
                payload = await resp.read()
                ok = ok and b'"choices"' in payload
            deployment = resp.headers.get("x-modelway-deployment")
            status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        return Outcome(False, 0, time.perf_counter() - t0, None)
    return Outcome(ok, status, time.perf_counter() - t0, deployment)


async def _drive(url: str, requests: int, concurrency: int, stream: bool) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * requests
    next_index = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for i in next_index:
                outcomes[i] = await _send(session, url, i, stream)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [o for o in outcomes if o is not None]


async def _mock_call(
    session: aiohttp.ClientSession, base: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    if body is None:
        async with session.get(base + path) as resp:
            resp.raise_for_status()
            result: dict[str, Any] = orjson.loads(await resp.read())
            return result
    async with session.post(base + path, data=orjson.dumps(body)) as resp:
        resp.raise_for_status()
        result = orjson.loads(await resp.read())
        return result


async def _run_scenario(
    scenario: Scenario,
    mocks: dict[str, str],
    gateway_url: str,
    requests: int,
    concurrency: int,
    seed: int,
) -> dict[str, Any]:
    url = f"{gateway_url}/v1/chat/completions"
    async with aiohttp.ClientSession() as control:
        for base in mocks.values():
            await _mock_call(control, base, "/_mock/config", _NO_FAULT)
        await _drive(url, WARMUP_REQUESTS, concurrency, scenario.stream)
        history = requests * 8 + 100  # every attempt's body, failed ones included
        for number, (name, base) in enumerate(mocks.items()):
            options = {
                **_NO_FAULT,
                **scenario.faults.get(name, {}),
                "history": history,
                "seed": seed * 10 + number,
            }
            await _mock_call(control, base, "/_mock/config", options)
            await _mock_call(control, base, "/_mock/reset", {})
        started = time.perf_counter()
        outcomes = await _drive(url, requests, concurrency, scenario.stream)
        elapsed = time.perf_counter() - started
        stats = {
            name: await _mock_call(control, base, "/_mock/stats") for name, base in mocks.items()
        }
        for base in mocks.values():
            await _mock_call(control, base, "/_mock/config", {**_NO_FAULT, "history": 50})
    return summarise_run(outcomes, stats, requests, elapsed)


def summarise_run(
    outcomes: list[Outcome], stats: dict[str, dict[str, Any]], requests: int, elapsed: float
) -> dict[str, Any]:
    attempts: Counter[int] = Counter()
    for snapshot in stats.values():
        for entry in snapshot["last_requests"]:
            match = _TAG.search(orjson.dumps(entry["body"]))
            if match is not None:
                attempts[int(match.group(1))] += 1
    upstream_total = sum(s["requests_total"] for s in stats.values())
    if sum(attempts.values()) != upstream_total:
        raise RuntimeError(
            f"the mocks saw {upstream_total} requests but kept {sum(attempts.values())} bodies"
        )
    ok = [o.seconds * 1000 for o in outcomes if o.ok]
    first_try = [o.seconds * 1000 for i, o in enumerate(outcomes) if o.ok and attempts[i] == 1]
    retried = [o.seconds * 1000 for i, o in enumerate(outcomes) if o.ok and attempts[i] > 1]
    return {
        "requests": len(outcomes),
        "succeeded": len(ok),
        "failed_statuses": dict(Counter(str(o.status) for o in outcomes if not o.ok)),
        "rps": len(outcomes) / elapsed,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "first_try": len(first_try),
        "first_try_p50_ms": percentile(first_try, 50),
        "first_try_p99_ms": percentile(first_try, 99),
        "retried": len(retried),
        "retried_p50_ms": percentile(retried, 50),
        "retried_p99_ms": percentile(retried, 99),
        "attempts_per_request": upstream_total / requests,
        "max_attempts": max(attempts.values(), default=0),
        "failures_injected": sum(s["failures_injected"] for s in stats.values()),
        "upstream_requests": {name: s["requests_total"] for name, s in stats.items()},
        "served_by": dict(Counter(o.deployment or "-" for o in outcomes if o.ok)),
    }


def breaker_events(log: Path) -> list[str]:
    events = []
    for line in log.read_bytes().splitlines():
        if b"circuit_breaker" not in line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.get("event") == "circuit_breaker":
            events.append(f"{event['deployment']}: {event['old']} -> {event['new']}")
    return events


def run_once(
    scenario: Scenario,
    mocks: dict[str, str],
    folder: Path,
    gw_cpus: set[int],
    args: argparse.Namespace,
    repeat: int,
) -> dict[str, Any]:
    port = free_port()
    config = folder / "gateway.yaml"
    lines = [
        "logging: {level: info}",
        "models:",
        f"  - name: {GROUP}",
        "    routing: {retries: 3, backoff_initial_seconds: 0.01}",
        "    deployments:",
    ]
    for name, base in mocks.items():
        lines.append(f"      - {{id: {name}, provider: openai, model: m, base_url: '{base}/v1'}}")
    config.write_text("\n".join(lines) + "\n")
    log = folder / f"gateway-{len(list(folder.glob('gateway-*.log')))}.log"
    gateway = start(["serve", "--config", str(config), "--port", str(port)], port, gw_cpus, log)
    try:
        result = asyncio.run(
            _run_scenario(
                scenario,
                mocks,
                f"http://127.0.0.1:{port}",
                args.requests,
                args.concurrency,
                seed=1000 * repeat + SCENARIOS.index(scenario),
            )
        )
    finally:
        stop(gateway)
    result["breaker_events"] = breaker_events(log)
    return result


# --- routing decisions -------------------------------------------------------------------


def routing_decisions(n: int, cpus: set[int]) -> dict[str, float]:
    """µs per decision by strategy, from `bench/routing_decisions.py`, on the gateway's core."""
    path = Path(__file__).with_name("routing_decisions.py")
    spec = importlib.util.spec_from_file_location("routing_decisions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        figures: dict[str, float] = module.bench_decisions(n)
    finally:
        os.sched_setaffinity(0, previous)
    return figures


# --- the run ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per scenario")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--decisions", type=int, default=100_000, help="routing decisions per strategy (0: skip)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    gw_cpus, other_cpus = cores()
    os.sched_setaffinity(0, other_cpus)
    folder = Path(tempfile.mkdtemp(prefix="modelway-resilience-"))
    mocks: dict[str, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in SCENARIOS}
    try:
        for number, name in enumerate(MOCKS):
            port = free_port()
            cmd = ["mock-upstream", "--port", str(port), "--seed", str(number + 1)]
            cmd += ["--latency-ms", str(MOCK_LATENCY_MS)]
            procs.append(start(cmd, port, other_cpus, folder / f"{name}.log"))
            mocks[name] = f"http://127.0.0.1:{port}"
        for repeat in range(args.repeat):
            for scenario in SCENARIOS:
                runs[scenario.name].append(run_once(scenario, mocks, folder, gw_cpus, args, repeat))
    finally:
        for proc in procs:
            stop(proc)
    decisions = routing_decisions(args.decisions, gw_cpus) if args.decisions > 0 else {}
    result = summarise(runs, decisions)
    report(result, args, gw_cpus, other_cpus)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


def summarise(runs: dict[str, list[dict[str, Any]]], decisions: dict[str, float]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        values = [v for v in values if not math.isnan(v)]
        return statistics.median(values) if values else math.nan

    baseline = runs[SCENARIOS[0].name]
    scenarios: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        rs = runs[scenario.name]
        figures: dict[str, Any] = {"description": scenario.description, "stream": scenario.stream}
        for key in (
            "p50_ms",
            "p99_ms",
            "first_try_p50_ms",
            "first_try_p99_ms",
            "retried_p50_ms",
            "retried_p99_ms",
            "attempts_per_request",
            "failures_injected",
            "first_try",
            "retried",
            "rps",
        ):
            figures[key] = med([float(r[key]) for r in rs])
        figures["requests"] = sum(r["requests"] for r in rs)
        figures["succeeded"] = sum(r["succeeded"] for r in rs)
        figures["success_rate"] = figures["succeeded"] / figures["requests"]
        figures["max_attempts"] = max(r["max_attempts"] for r in rs)
        failed: Counter[str] = Counter()
        for r in rs:
            failed.update(r["failed_statuses"])
        figures["failed_statuses"] = dict(failed)
        figures["added_p50_ms"] = med(
            [r["p50_ms"] - b["p50_ms"] for r, b in zip(rs, baseline, strict=True)]
        )
        figures["added_p99_ms"] = med(
            [r["p99_ms"] - b["p99_ms"] for r, b in zip(rs, baseline, strict=True)]
        )
        scenarios[scenario.name] = figures
    return {
        "scenarios": scenarios,
        "routing_decision_us": decisions,
        "routing_decision_target_us": DECISIONS_TARGET_US,
        "runs": runs,
    }


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def report(r: dict[str, Any], args: argparse.Namespace, gw: set[int], other: set[int]) -> None:
    print(
        f"# modelway resilience  ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"gateway on cpu {sorted(gw)}, mocks + load on cpu {sorted(other)}, "
        f"{args.requests} requests at concurrency {args.concurrency} per scenario, "
        f"median of {args.repeat} runs, mock latency {MOCK_LATENCY_MS} ms)"
    )
    print()
    print(
        "| scenario | success (all runs) | p50 / p99 ms | first try: n, p50 / p99 ms "
        "| retried: n, p50 / p99 ms | attempts / request | faults injected | added p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, s in r["scenarios"].items():
        success = f"{s['success_rate']:.2%} ({s['succeeded']}/{s['requests']})"
        if s["failed_statuses"]:
            success += " failed: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(s["failed_statuses"].items())
            )
        print(
            f"| {name} ({s['description']}) | {success} "
            f"| {_ms(s['p50_ms'])} / {_ms(s['p99_ms'])} "
            f"| {s['first_try']:.0f}, {_ms(s['first_try_p50_ms'])} / {_ms(s['first_try_p99_ms'])} "
            f"| {s['retried']:.0f}, {_ms(s['retried_p50_ms'])} / {_ms(s['retried_p99_ms'])} "
            f"| {s['attempts_per_request']:.3f} (max {s['max_attempts']}) "
            f"| {s['failures_injected']:.0f} | {s['added_p99_ms']:+.1f} |"
        )
    print()
    print("Upstream requests per mock and circuit breaker changes, by run:")
    for name, rs in r["runs"].items():
        for i, run in enumerate(rs):
            events = "; ".join(run["breaker_events"]) or "none"
            print(f"- {name} #{i + 1}: {run['upstream_requests']}, breaker: {events}")
    decisions = r["routing_decision_us"]
    if decisions:
        worst = max(decisions, key=decisions.__getitem__)
        print()
        print(
            f"Routing decision, 5 candidates (bench/routing_decisions.py): "
            f"{min(decisions.values()):.2f}-{decisions[worst]:.2f} µs ({worst} slowest), "
            f"target < {DECISIONS_TARGET_US:g} µs"
        )
        print("| strategy | µs / decision |")
        print("|---|---|")
        for name, micros in decisions.items():
            print(f"| {name} | {micros:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
