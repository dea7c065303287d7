import asyncio

import pytest

from modelway.protocol.errors import RateLimited
from modelway.routing.admission import AdmissionQueue
from modelway.routing.limits import DeploymentLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unlimited_admits_everything() -> None:
    limits = DeploymentLimits()
    assert not limits.limited and limits.admits(10_000, 10**9)


def test_max_parallel() -> None:
    limits = DeploymentLimits(max_parallel=2)
    assert limits.admits(1, 10) and not limits.admits(2, 10)


def test_requests_per_minute_slide() -> None:
    clock = Clock()
    limits = DeploymentLimits(rpm=2, clock=clock)
    limits.take(1)
    clock.now += 30
    limits.take(1)
    assert not limits.admits(0, 1)
    assert limits.seconds_until_room() == pytest.approx(30)
    clock.now += 30.01
    assert limits.admits(0, 1)


def test_tokens_per_minute() -> None:
    clock = Clock()
    limits = DeploymentLimits(tpm=1000, clock=clock)
    assert limits.admits(0, 5000)  # alone, a request above the quota still goes
    limits.take(600)
    assert limits.admits(0, 400) and not limits.admits(0, 401)
    clock.now += 61
    assert limits.admits(0, 1000)


async def test_queue_serves_by_priority_then_arrival() -> None:
    queue = AdmissionQueue("g", size=10, timeout_seconds=5)
    room = {"free": 0}
    served: list[str] = []

    async def waiter(name: str, priority: int) -> None:
        await queue.wait_for_room(
            lambda: room["free"] > 0,
            priority=priority,
            recheck_after=lambda: None,
            deadline_seconds=None,
        )
        room["free"] -= 1
        served.append(name)

    tasks = []
    for name, priority in (("low", 0), ("high", 5), ("low2", 0), ("mid", 2)):
        tasks.append(asyncio.create_task(waiter(name, priority)))
        await asyncio.sleep(0)
    for _ in range(4):
        room["free"] += 1
        queue.notify()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert served == ["high", "mid", "low", "low2"]


async def test_full_queue_and_timeout_are_rate_limited() -> None:
    queue = AdmissionQueue("g", size=1, timeout_seconds=0.05)
    first = asyncio.create_task(
        queue.wait_for_room(
            lambda: False, priority=0, recheck_after=lambda: 42.0, deadline_seconds=None
        )
    )
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as full:
        await queue.wait_for_room(
            lambda: True, priority=0, recheck_after=lambda: None, deadline_seconds=None
        )
    assert full.value.retry_after == 1
    with pytest.raises(RateLimited) as late:
        await first
    assert late.value.retry_after == 42.0
    assert queue.depth == 0
