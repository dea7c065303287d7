from __future__ import annotations

import pytest

from modelway.store.counters import Budget, Slots, Window
from modelway.store.memory_counters import MemoryCounters
from tests.counters_contract import LEASE_TTL, CountersContract, T


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryCounters(CountersContract):
    @pytest.fixture
    def counters(self) -> MemoryCounters:
        return MemoryCounters(lease_ttl=LEASE_TTL)


async def test_budget_counter_ends_with_its_ttl() -> None:
    clock = Clock()
    counters = MemoryCounters(clock=clock)
    day = Budget("budget:key:k1:day:2027-01-15", limit=100, amount=100, ttl_seconds=60)
    assert (await counters.admit([], [], [day], lease="a", now=T)).allowed
    refused = await counters.admit([], [], [day], lease="b", now=T)
    assert refused.retry_after == pytest.approx(60)
    clock.now += 20
    refused = await counters.admit([], [], [day], lease="b", now=T)
    assert refused.retry_after == pytest.approx(40)
    clock.now += 40
    assert await counters.budget_spent(day.key) is None
    assert (await counters.admit([], [], [day], lease="b", now=T)).allowed


async def test_idle_keys_are_forgotten() -> None:
    clock = Clock()
    counters = MemoryCounters(lease_ttl=LEASE_TTL, clock=clock)
    for i in range(100):
        window = Window(f"key:k{i}:rpm", limit=10, amount=1)
        slots = Slots(f"key:k{i}:parallel", limit=1)
        budget = Budget(f"budget:key:k{i}:day", limit=10, amount=1, ttl_seconds=60)
        assert (await counters.admit([window], [slots], [budget], lease="a", now=T)).allowed
    clock.now += 61
    await counters.admit([], [], [], lease="b", now=T + 61)
    assert (counters._windows, counters._slots, counters._budgets) == ({}, {}, {})
