"""Latency of the shared counters on the request path: memory and Redis.

One admission takes 1 window + 1 slot set + 1 budget (always allowed), then settles it
(a token delta, the budget delta, the lease released), one call after another. Prints
median and p99 per call in microseconds, a plain GET through the same connection as
the floor (and through redis-py's client, for comparison), and admissions per second
with 32 callers at once.

    .venv/bin/python bench/counters.py [--redis redis://127.0.0.1:6379/0] [--calls 20000]
        [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

PARALLEL = 32


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    return parser.parse_args()


async def timed(call: Callable[[int], Awaitable[object]], calls: int) -> list[float]:
    """Microseconds per call."""
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


async def throughput(call: Callable[[int], Awaitable[object]], calls: int) -> float:
    async def caller(first: int) -> None:
        for i in range(first, calls, PARALLEL):
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(PARALLEL)))
    return calls / (time.perf_counter() - start)


def row(name: str, samples: list[float]) -> None:
    p99 = statistics.quantiles(samples, n=100)[98]
    print(f"{name:<34} {statistics.median(samples):>9.1f} {p99:>9.1f}")


async def run(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from modelway.store.counters import Budget, Counters, Slots, Window
    from modelway.store.memory_counters import MemoryCounters
    from modelway.store.redis_counters import RedisCounters

    window = Window("bench:key:rpm", limit=10**12, amount=100)
    slots = Slots("bench:key:parallel", limit=10**6)
    budget = Budget("bench:budget:day", limit=10**15, amount=1000, ttl_seconds=600)
    prefix = f"modelway-bench:{uuid.uuid4().hex}:"
    redis = RedisCounters(args.redis, prefix=prefix)
    backends: list[tuple[str, Counters]] = [("memory", MemoryCounters()), ("redis", redis)]
    print(f"{'microseconds per call':<34} {'median':>9} {'p99':>9}")
    for name, counters in backends:

        async def admit(i: int, counters: Counters = counters) -> object:
            return await counters.admit([window], [slots], [budget], lease=str(i), now=time.time())

        async def settle(i: int, counters: Counters = counters) -> None:
            await counters.settle(
                [(window, -10)], [(budget, -100)], [slots], lease=str(i), taken_at=time.time()
            )

        async def admit_and_settle(i: int) -> tuple[float, float]:
            start = time.perf_counter()
            await admit(i)
            middle = time.perf_counter()
            await settle(i)
            return (middle - start) * 1e6, (time.perf_counter() - middle) * 1e6

        for i in range(args.calls // 10):  # warm-up: connections, script cache
            await admit_and_settle(i)
        pairs = [await admit_and_settle(i) for i in range(args.calls)]
        row(f"{name}: admit 1 window+1 slot+1 budget", [a for a, _ in pairs])
        row(f"{name}: settle", [s for _, s in pairs])
        rate = await throughput(admit, args.calls)
        print(f"{name}: admits/s, {PARALLEL} callers at once {rate:>12.0f}")
    floor = await timed(lambda _: redis.budget_spent("bench:absent"), args.calls)
    row("redis: budget_spent (GET, the floor)", floor)
    await redis.close()
    client = aioredis.Redis.from_url(args.redis)
    # The same GET through redis-py's own asyncio client, for comparison.
    await client.get(prefix + "absent")
    row("redis-py client: GET", await timed(lambda _: client.get(prefix + "absent"), args.calls))
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def main() -> None:
    args = parse_args()
    print(f"loop={args.loop} calls={args.calls}")
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
