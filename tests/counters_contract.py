"""What every `Counters` backend must do; each backend's test module subclasses this.

A subclass provides the `counters` fixture: a fresh, empty backend whose leases live
`LEASE_TTL` seconds. Time is driven through `now`, starting at `T`, a whole second.
"""

from __future__ import annotations

import asyncio

import pytest

from modelway.store.counters import Budget, Counters, Slots, Window

LEASE_TTL = 30.0
T = 1_800_000_000.0


def rpm(limit: int, amount: int = 1) -> Window:
    return Window("key:k1:rpm", limit=limit, amount=amount)


def budget(limit: int, amount: int) -> Budget:
    return Budget("budget:team:t1:day:2027-01-15", limit=limit, amount=amount, ttl_seconds=600)


class CountersContract:
    async def test_window_admits_up_to_its_limit(self, counters: Counters) -> None:
        for i, remaining in enumerate([2, 1, 0]):
            admission = await counters.admit([rpm(3)], [], [], lease=f"l{i}", now=T + i + 0.5)
            assert admission.allowed and admission.denied_key is None
            assert admission.retry_after == 0
            assert admission.windows[0].limit == 3
            assert admission.windows[0].remaining == remaining
            # Empty again once the newest unit (this second's) has left the window.
            assert admission.windows[0].reset_seconds == pytest.approx(59.5)
        refused = await counters.admit([rpm(3)], [], [], lease="l3", now=T + 3.25)
        assert not refused.allowed and refused.denied_key == "key:k1:rpm"
        # The unit taken at T leaves the window at T + 60.
        assert refused.retry_after == pytest.approx(60 - 3.25)
        assert refused.windows[0].remaining == 0
        assert refused.windows[0].reset_seconds == pytest.approx(62 - 3.25)

    async def test_window_is_full_again_after_it_slid_past(self, counters: Counters) -> None:
        assert (await counters.admit([rpm(60, 60)], [], [], lease="a", now=T)).allowed
        assert not (await counters.admit([rpm(60)], [], [], lease="b", now=T + 59.9)).allowed
        later = await counters.admit([rpm(60)], [], [], lease="c", now=T + 61)
        assert later.allowed and later.windows[0].remaining == 59

    async def test_window_filled_every_second_slides_a_second_at_a_time(
        self, counters: Counters
    ) -> None:
        for i in range(60):
            assert (await counters.admit([rpm(60)], [], [], lease="", now=T + i)).allowed
        refused = await counters.admit([rpm(60)], [], [], lease="", now=T + 59.5)
        assert not refused.allowed and refused.retry_after == pytest.approx(0.5)
        admitted = await counters.admit([rpm(60)], [], [], lease="", now=T + 60)
        assert admitted.allowed and admitted.windows[0].remaining == 0
        refused = await counters.admit([rpm(60)], [], [], lease="", now=T + 60.75)
        assert not refused.allowed and refused.retry_after == pytest.approx(0.25)

    async def test_retry_after_waits_only_for_the_units_needed(self, counters: Counters) -> None:
        for offset, amount in [(0, 3), (10, 3), (20, 4)]:
            window = rpm(10, amount)
            assert (await counters.admit([window], [], [], lease="", now=T + offset)).allowed
        # 5 more need 5 units to leave: the 3 from T are not enough, those from T + 10 are.
        refused = await counters.admit([rpm(10, 5)], [], [], lease="", now=T + 30)
        assert refused.retry_after == pytest.approx(40)
        assert refused.windows[0].remaining == 0

    async def test_amount_above_the_limit_is_refused_for_a_whole_window(
        self, counters: Counters
    ) -> None:
        window = Window("key:k1:tpm", limit=1000, amount=1001, window_seconds=60)
        refused = await counters.admit([window], [], [], lease="", now=T)
        assert not refused.allowed and refused.retry_after == 60
        assert refused.windows[0].remaining == 1000 and refused.windows[0].reset_seconds == 0

    async def test_long_window_forgets_buckets_after_a_long_idle(self, counters: Counters) -> None:
        hourly = Window("key:k1:rph", limit=3, amount=1, window_seconds=3600)
        for offset in (0, 1000, 2000):
            assert (await counters.admit([hourly], [], [], lease="", now=T + offset)).allowed
        refused = await counters.admit([hourly], [], [], lease="", now=T + 2500)
        assert refused.retry_after == pytest.approx(1100)
        later = await counters.admit([hourly], [], [], lease="", now=T + 3700)
        assert later.allowed and later.windows[0].remaining == 0

    async def test_refusal_takes_nothing(self, counters: Counters) -> None:
        window, slots = rpm(10), Slots("key:k1:parallel", limit=1)
        refused = await counters.admit([window], [slots], [budget(100, 200)], lease="a", now=T)
        assert not refused.allowed
        assert refused.denied_key == "budget:team:t1:day:2027-01-15"
        assert refused.windows[0].remaining == 10 and refused.budgets_spent == (0,)
        assert await counters.budget_spent("budget:team:t1:day:2027-01-15") is None
        admitted = await counters.admit([window], [slots], [budget(100, 50)], lease="b", now=T)
        assert admitted.allowed
        assert admitted.windows[0].remaining == 9 and admitted.budgets_spent == (50,)

    async def test_first_refusing_limit_is_reported(self, counters: Counters) -> None:
        tight = Window("key:k1:tpm", limit=5, amount=10)
        slots = Slots("key:k1:parallel", limit=0)
        refused = await counters.admit([rpm(10), tight], [slots], [], lease="a", now=T)
        assert refused.denied_key == "key:k1:tpm"
        assert [w.remaining for w in refused.windows] == [10, 5]
        refused = await counters.admit([rpm(10)], [slots], [], lease="a", now=T)
        assert refused.denied_key == "key:k1:parallel" and refused.retry_after == 1.0

    async def test_many_at_once_admit_exactly_the_limit(self, counters: Counters) -> None:
        attempts = [
            counters.admit([rpm(60)], [], [], lease=str(i), now=T + i * 0.25) for i in range(100)
        ]
        admissions = await asyncio.gather(*attempts)
        assert sum(a.allowed for a in admissions) == 60

    async def test_settle_moves_window_usage_by_the_delta(self, counters: Counters) -> None:
        tpm = Window("key:k1:tpm", limit=1000, amount=500)
        assert (await counters.admit([tpm], [], [], lease="a", now=T + 0.5)).allowed
        await counters.settle([(tpm, -300)], [], [], lease="a", taken_at=T + 0.5)
        probe = Window("key:k1:tpm", limit=1000, amount=0)
        assert (await counters.admit([probe], [], [], lease="", now=T + 1)).windows[
            0
        ].remaining == 800
        await counters.settle([(tpm, 150)], [], [], lease="a", taken_at=T + 0.5)
        state = (await counters.admit([probe], [], [], lease="", now=T + 1)).windows[0]
        assert state.remaining == 650 and state.reset_seconds == pytest.approx(59)
        await counters.settle([(tpm, -10_000)], [], [], lease="a", taken_at=T + 0.5)
        state = (await counters.admit([probe], [], [], lease="", now=T + 1)).windows[0]
        assert state.remaining == 1000 and state.reset_seconds == 0

    async def test_settle_counts_usage_nothing_was_reserved_for(self, counters: Counters) -> None:
        tpm = Window("key:k1:tpm", limit=1000, amount=0)
        assert (await counters.admit([tpm], [], [], lease="a", now=T)).windows[0].remaining == 1000
        await counters.settle([(tpm, 40)], [], [], lease="a", taken_at=T)
        state = (await counters.admit([tpm], [], [], lease="", now=T + 10)).windows[0]
        assert state.remaining == 960 and state.reset_seconds == pytest.approx(50)

    async def test_settle_after_the_bucket_left_the_window_changes_nothing(
        self, counters: Counters
    ) -> None:
        tpm = Window("key:k1:tpm", limit=1000, amount=500)
        assert (await counters.admit([tpm], [], [], lease="a", now=T)).allowed
        probe = Window("key:k1:tpm", limit=1000, amount=0)
        assert (await counters.admit([probe], [], [], lease="", now=T + 61)).windows[
            0
        ].remaining == 1000
        await counters.settle([(tpm, 400)], [], [], lease="a", taken_at=T)
        assert (await counters.admit([probe], [], [], lease="", now=T + 62)).windows[
            0
        ].remaining == 1000

    async def test_settle_soon_is_applied_before_the_next_call(self, counters: Counters) -> None:
        """A settle handed over without waiting frees the lease for the very next
        admission: a client at its concurrency limit is never refused by its own
        finished request."""
        slots = Slots("key:k1:parallel", limit=1)
        tpm = Window("key:k1:tpm", limit=1000, amount=500)
        failures: list[BaseException] = []
        for n in range(3):
            taken = await counters.admit([tpm], [slots], [], lease=f"r{n}", now=T + n)
            assert taken.allowed, n
            counters.settle_soon(
                [(tpm, -400)], [], [slots], lease=f"r{n}", taken_at=T + n, failed=failures.append
            )
        probe = Window("key:k1:tpm", limit=1000, amount=0)
        state = (await counters.admit([probe], [], [], lease="", now=T + 3)).windows[0]
        assert state.remaining == 700 and failures == []

    async def test_settle_releases_the_lease(self, counters: Counters) -> None:
        slots = Slots("key:k1:parallel", limit=2)
        assert (await counters.admit([], [slots], [], lease="a", now=T)).allowed
        assert (await counters.admit([], [slots], [], lease="b", now=T)).allowed
        refused = await counters.admit([], [slots], [], lease="c", now=T)
        assert refused.denied_key == "key:k1:parallel" and refused.retry_after == 1.0
        await counters.settle([], [], [slots], lease="a", taken_at=T)
        assert (await counters.admit([], [slots], [], lease="c", now=T + 1)).allowed
        assert not (await counters.admit([], [slots], [], lease="d", now=T + 1)).allowed

    async def test_lease_held_already_is_not_counted_twice(self, counters: Counters) -> None:
        slots = Slots("key:k1:parallel", limit=1)
        assert (await counters.admit([], [slots], [], lease="a", now=T)).allowed
        assert (await counters.admit([], [slots], [], lease="a", now=T + 1)).allowed
        assert not (await counters.admit([], [slots], [], lease="b", now=T + 1)).allowed

    async def test_lease_of_a_crashed_holder_expires(self, counters: Counters) -> None:
        slots = Slots("key:k1:parallel", limit=1)
        assert (await counters.admit([], [slots], [], lease="crashed", now=T)).allowed
        assert not (await counters.admit([], [slots], [], lease="b", now=T + LEASE_TTL - 1)).allowed
        assert (await counters.admit([], [slots], [], lease="b", now=T + LEASE_TTL + 0.5)).allowed

    async def test_budget_admits_while_spend_stays_within_limit(self, counters: Counters) -> None:
        key = "budget:team:t1:day:2027-01-15"
        assert (
            await counters.admit([], [], [budget(1000, 600)], lease="a", now=T)
        ).budgets_spent == (600,)
        refused = await counters.admit([], [], [budget(1000, 600)], lease="b", now=T)
        assert not refused.allowed and refused.denied_key == key
        assert refused.budgets_spent == (600,)
        # The counter's remaining life: when its period (and so the refusal) ends.
        assert 590 < refused.retry_after <= 600
        await counters.settle([], [(budget(1000, 600), -200)], [], lease="a", taken_at=T)
        assert await counters.budget_spent(key) == 400
        exact = await counters.admit([], [], [budget(1000, 600)], lease="c", now=T)
        assert exact.allowed and exact.budgets_spent == (1000,)

    async def test_budget_spend_never_goes_below_zero(self, counters: Counters) -> None:
        key = "budget:team:t1:day:2027-01-15"
        assert (await counters.admit([], [], [budget(1000, 100)], lease="a", now=T)).allowed
        await counters.settle([], [(budget(1000, 100), -500)], [], lease="a", taken_at=T)
        assert await counters.budget_spent(key) == 0

    async def test_settle_creates_a_missing_budget_counter(self, counters: Counters) -> None:
        key = "budget:team:t1:day:2027-01-15"
        await counters.settle([], [(budget(1000, 0), -5)], [], lease="a", taken_at=T)
        assert await counters.budget_spent(key) is None
        await counters.settle([], [(budget(1000, 0), 70)], [], lease="a", taken_at=T)
        assert await counters.budget_spent(key) == 70

    async def test_seed_budget_only_sets_a_missing_counter(self, counters: Counters) -> None:
        key = "budget:team:t1:day:2027-01-15"
        assert await counters.budget_spent(key) is None
        await counters.seed_budget(key, 700, 600)
        await counters.seed_budget(key, 50, 600)
        assert await counters.budget_spent(key) == 700
        refused = await counters.admit([], [], [budget(1000, 301)], lease="a", now=T)
        assert not refused.allowed and refused.budgets_spent == (700,)
        admitted = await counters.admit([], [], [budget(1000, 300)], lease="a", now=T)
        assert admitted.allowed and admitted.budgets_spent == (1000,)

    async def test_extend_reserves_more_all_or_nothing(self, counters: Counters) -> None:
        tpm = Window("key:k1:tpm", limit=2000, amount=400)
        assert (await counters.admit([tpm], [], [budget(100, 40)], lease="a", now=T)).allowed
        more = await counters.extend([budget(100, 40)], [tpm], now=T + 1)
        assert more.allowed and more.windows[0].remaining == 1200 and more.budgets_spent == (80,)
        refused = await counters.extend([budget(100, 40)], [tpm], now=T + 2)
        assert not refused.allowed and refused.denied_key == "budget:team:t1:day:2027-01-15"
        assert refused.windows[0].remaining == 1200 and refused.budgets_spent == (80,)
        over = await counters.extend([], [Window("key:k1:tpm", limit=2000, amount=1201)], now=T + 2)
        assert not over.allowed and over.denied_key == "key:k1:tpm"
        assert over.retry_after == pytest.approx(58)

    async def test_nothing_to_count_is_allowed(self, counters: Counters) -> None:
        admission = await counters.admit([], [], [], lease="a", now=T)
        assert admission.allowed and admission.windows == () and admission.budgets_spent == ()
        await counters.settle([], [], [], lease="a", taken_at=T)
