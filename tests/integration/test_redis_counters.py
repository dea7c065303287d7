from __future__ import annotations

import asyncio
import multiprocessing
import random
import uuid
from collections.abc import AsyncIterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
import redis.asyncio as aioredis

from modelway.store.counters import Budget, CountersUnavailable, Slots, Window
from modelway.store.memory_counters import MemoryCounters
from modelway.store.redis_counters import RedisCounters
from tests.counters_contract import LEASE_TTL, CountersContract, T
from tests.services import redis_url


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    url = redis_url()
    prefix = f"modelway-test:{uuid.uuid4().hex}:"
    yield prefix
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def redis_counters(prefix: str) -> AsyncIterator[RedisCounters]:
    counters = RedisCounters(redis_url(), prefix=prefix, lease_ttl=LEASE_TTL)
    yield counters
    await counters.close()


class TestRedisCounters(CountersContract):
    @pytest.fixture
    def counters(self, redis_counters: RedisCounters) -> RedisCounters:
        return redis_counters


async def test_redis_answers_as_memory_does(redis_counters: RedisCounters) -> None:
    """A random run of calls gets the same answers from both backends."""
    memory = MemoryCounters(lease_ttl=LEASE_TTL)
    rng = random.Random(7)
    now, held = T, list[tuple[str, float, list[Window], list[Slots], list[Budget]]]()
    counters = redis_counters
    for step in range(400):
        now += rng.choice([0, 0.1, 0.5, 1, 3, 9])
        windows = [
            Window("key:k1:rps", limit=6, amount=rng.randint(0, 3), window_seconds=5),
            Window("key:k1:tpm", limit=250, amount=rng.randint(0, 150), window_seconds=20),
        ][: rng.randint(0, 2)]
        slots = [Slots("key:k1:parallel", limit=2)][: rng.randint(0, 1)]
        budgets = [Budget("budget:k1", limit=4000, amount=rng.randint(0, 60), ttl_seconds=600)]
        if held and rng.random() < 0.4:
            lease, taken_at, windows, slots, budgets = held.pop(rng.randrange(len(held)))
            deltas = [rng.randint(-w.amount, 50) for w in windows]
            spend = [(b, rng.randint(-b.amount, 30)) for b in budgets]
            for backend in (memory, counters):
                used = list(zip(windows, deltas, strict=True))
                await backend.settle(used, spend, slots, lease=lease, taken_at=taken_at)
            continue
        if rng.random() < 0.2:
            got = [await c.extend(budgets, windows, now=now) for c in (memory, counters)]
        else:
            lease = f"lease-{step}"
            got = [
                await c.admit(windows, slots, budgets, lease=lease, now=now)
                for c in (memory, counters)
            ]
            if got[0].allowed:
                held.append((lease, now, windows, slots, budgets))
        expected, answer = got
        assert (answer.allowed, answer.denied_key) == (expected.allowed, expected.denied_key)
        assert answer.budgets_spent == expected.budgets_spent
        for mine, theirs in zip(answer.windows, expected.windows, strict=True):
            assert mine.remaining == theirs.remaining
            assert mine.reset_seconds == pytest.approx(theirs.reset_seconds)
        assert answer.retry_after == pytest.approx(expected.retry_after, abs=0.5)


def _hammer(url: str, prefix: str, start: Barrier, results: Queue[int]) -> None:
    """One replica: 100 concurrent admissions of one unit over 50 s of the same minute."""

    async def run() -> int:
        counters = RedisCounters(url, prefix=prefix)
        window = Window("key:shared:rpm", limit=60, amount=1, window_seconds=60)
        await counters.budget_spent("warm-up")  # connect before the race starts
        start.wait()
        try:
            admissions = await asyncio.gather(
                *(counters.admit([window], [], [], lease="", now=T + i / 2) for i in range(100))
            )
        finally:
            await counters.close()
        return sum(a.allowed for a in admissions)

    results.put(asyncio.run(run()))


def test_two_processes_share_one_window(prefix: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(target=_hammer, args=(redis_url(), prefix, start, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    allowed = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    assert sum(allowed) == 60


async def test_keys_live_under_the_prefix_and_expire(prefix: str) -> None:
    counters = RedisCounters(redis_url(), prefix=prefix)
    window = Window("key:k1:rpm", limit=10, amount=1)
    slots = Slots("key:k1:parallel", limit=1)
    budget = Budget("budget:key:k1:day", limit=10, amount=1, ttl_seconds=600)
    assert (await counters.admit([window], [slots], [budget], lease="a", now=T)).allowed
    await counters.close()
    client = aioredis.Redis.from_url(redis_url())
    keys = sorted([key async for key in client.scan_iter(match=prefix + "*")])
    expected = ["budget:key:k1:day", "key:k1:parallel", "key:k1:rpm"]
    assert keys == [(prefix + key).encode() for key in expected]
    assert all([await client.ttl(key) > 0 for key in keys])
    await client.aclose()


async def test_cancelled_calls_leave_no_reply_behind(prefix: str) -> None:
    counters = RedisCounters(redis_url(), prefix=prefix)
    window = Window("key:k1:rpm", limit=1000, amount=1)
    # Open the connections first, so that the calls below are cancelled mid-reply.
    await asyncio.gather(*(counters.budget_spent("warm-up") for _ in range(40)))
    calls = [
        asyncio.create_task(counters.admit([window], [], [], lease="", now=T)) for _ in range(40)
    ]
    await asyncio.sleep(0)  # every call has sent its command and waits for the reply
    for call in calls[::2]:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await counters.seed_budget("budget:key:k1:day", 7, 600)
    for _ in range(40):
        assert await counters.budget_spent("budget:key:k1:day") == 7
    await counters.close()


async def test_connection_closed_by_redis_is_replaced(prefix: str) -> None:
    name = prefix.replace(":", "-").rstrip("-")
    counters = RedisCounters(f"{redis_url()}?client_name={name}", prefix=prefix)
    window = Window("key:k1:rpm", limit=10, amount=1)
    assert (await counters.admit([window], [], [], lease="", now=T)).allowed
    admin = aioredis.Redis.from_url(redis_url())
    ours = [c["id"] for c in await admin.client_list() if c["name"] == name]
    assert len(ours) == 1
    await admin.client_kill_filter(_id=ours[0])
    await admin.aclose()
    again = await counters.admit([window], [], [], lease="", now=T)
    assert again.allowed and again.windows[0].remaining == 8
    await counters.close()


@pytest.mark.parametrize("flushed", ["before the first call", "after admitting"])
async def test_settling_after_redis_lost_its_scripts_frees_the_slot(
    prefix: str, flushed: str
) -> None:
    """A new Redis server (or SCRIPT FLUSH) has no scripts: a settlement sent without
    waiting loads its script and still frees the slot."""
    admin = aioredis.Redis.from_url(redis_url())
    counters = RedisCounters(redis_url(), prefix=prefix)
    slots = [Slots("key:k1:parallel", limit=1)]
    budget = Budget("budget:key:k1:day", limit=1000, amount=10, ttl_seconds=600)
    failures: list[BaseException] = []
    if flushed == "before the first call":
        await admin.script_flush()
    assert (await counters.admit([], slots, [budget], lease="a", now=T)).allowed
    if flushed == "after admitting":
        await admin.script_flush()
    counters.settle_soon([], [(budget, -7)], slots, lease="a", taken_at=T, failed=failures.append)
    await counters.budget_spent("fence")  # goes after the settlement
    for _ in range(50):  # a lost script costs the settlement one more round trip
        if await counters.budget_spent("budget:key:k1:day") == 3:
            break
        await asyncio.sleep(0.01)
    assert failures == []
    assert await counters.budget_spent("budget:key:k1:day") == 3
    assert (await counters.admit([], slots, [], lease="b", now=T + 1)).allowed
    await counters.close()
    await admin.aclose()


async def test_closed_port_raises_unavailable() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0")
    with pytest.raises(CountersUnavailable):
        await asyncio.wait_for(counters.admit([Window("w", 1, 1)], [], [], lease="a", now=T), 5)
    with pytest.raises(CountersUnavailable):
        await asyncio.wait_for(counters.budget_spent("b"), 5)
    await counters.close()


async def test_silent_server_raises_unavailable_after_the_socket_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    counters = RedisCounters(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    try:
        with pytest.raises(CountersUnavailable):
            await asyncio.wait_for(
                counters.settle([], [], [Slots("s", 1)], lease="a", taken_at=T), 5
            )
    finally:
        await counters.close()
        server.close()
        await server.wait_closed()
