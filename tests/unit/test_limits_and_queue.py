import asyncio

import pytest

from modelway.access.principal import Principal
from modelway.pipeline.context import RequestContext
from modelway.protocol.errors import RateLimited
from modelway.protocol.openai_chat import ChatRequest
from modelway.routing.admission import AdmissionQueue
from modelway.routing.limits import DeploymentLimits
from modelway.routing.request_terms import priority_of as _priority


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


async def _serve_in_order(
    queue: AdmissionQueue, arrivals: list[tuple[str, str, float, int]]
) -> list[str]:
    """Queue (name, tenant, weight, priority) waiters in order, free one slot at a time."""
    room = {"free": 0}
    served: list[str] = []

    async def waiter(name: str, tenant: str, weight: float, priority: int) -> None:
        await queue.wait_for_room(
            lambda: room["free"] > 0,
            priority=priority,
            recheck_after=lambda: None,
            deadline_seconds=None,
            tenant=tenant,
            weight=weight,
        )
        room["free"] -= 1
        served.append(name)

    tasks = []
    for arrival in arrivals:
        tasks.append(asyncio.create_task(waiter(*arrival)))
        await asyncio.sleep(0)
    for _ in arrivals:
        room["free"] += 1
        queue.notify()
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    return served


async def test_a_noisy_tenant_does_not_starve_a_quiet_one() -> None:
    queue = AdmissionQueue("g", size=100, timeout_seconds=5)
    noisy = [(f"a{i}", "team-a", 1.0, 0) for i in range(6)]
    quiet = [(f"b{i}", "team-b", 1.0, 0) for i in range(2)]
    served = await _serve_in_order(queue, noisy + quiet)
    # team-b arrived after all six of team-a, yet is served in turn with it.
    assert served == ["a0", "b0", "a1", "b1", "a2", "a3", "a4", "a5"]


async def test_tenants_share_by_weight_and_priority_still_comes_first() -> None:
    queue = AdmissionQueue("g", size=100, timeout_seconds=5)
    heavy = [(f"h{i}", "heavy", 2.0, 0) for i in range(4)]
    light = [(f"l{i}", "light", 1.0, 0) for i in range(4)]
    urgent = [("u0", "light", 1.0, 9)]
    served = await _serve_in_order(queue, heavy + light + urgent)
    assert served[0] == "u0"
    # Twice the weight, twice the turns while both wait.
    assert served[1:7] == ["h0", "h1", "l0", "h2", "h3", "l1"]


def _ctx(headers: dict[str, str], principal: Principal | None) -> RequestContext:
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    return RequestContext(
        request_id="r", operation="chat", request=request, headers=headers, principal=principal
    )


def test_a_keys_priority_caps_what_its_requests_ask_for() -> None:
    ranked = Principal(key_id="k", team_id="t", role="user", priority=3)
    assert _priority(_ctx({}, ranked)) == 3
    assert _priority(_ctx({"x-modelway-priority": "10"}, ranked)) == 3
    assert _priority(_ctx({"x-modelway-priority": "-1"}, ranked)) == -1
    unranked = Principal(key_id="k", team_id="t", role="user")
    assert _priority(_ctx({"x-modelway-priority": "7"}, unranked)) == 7
    assert _priority(_ctx({"x-modelway-priority": "7"}, None)) == 7
    assert _priority(_ctx({}, None)) == 0
