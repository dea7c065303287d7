"""Counters for a single process: plain dictionaries.

Every method checks and takes without awaiting in between, so on one event loop each
call is atomic without a lock. The data layout and the arithmetic mirror the Lua scripts
of `redis_counters` step by step, so both backends give the same answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from modelway.store.counters import (
    SLOTS_RETRY_AFTER,
    Admission,
    Budget,
    Slots,
    Window,
    WindowState,
    window_reset,
)

_SWEEP_EVERY_SECONDS = 60.0


class _Window:
    """One-second buckets; `oldest` is the lowest bucket that may still hold units."""

    __slots__ = ("buckets", "newest", "oldest", "total", "window_seconds")

    def __init__(self, oldest: int, window_seconds: int) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.oldest = oldest
        self.newest = -1
        self.window_seconds = window_seconds

    def drop_stale(self, cutoff: int) -> None:
        """Forget the buckets at or before `cutoff`, in time proportional to what is there."""
        if self.oldest > cutoff:
            return
        if cutoff - self.oldest + 1 <= len(self.buckets):
            stale = [b for b in range(self.oldest, cutoff + 1) if b in self.buckets]
        else:
            stale = [b for b in self.buckets if b <= cutoff]
        for bucket in stale:
            self.total -= self.buckets.pop(bucket)
        self.oldest = cutoff + 1

    def add(self, bucket: int, units: int) -> None:
        """Add (or with negative units remove, never below zero) units in one bucket."""
        old = self.buckets.get(bucket, 0)
        new = max(0, old + units)
        if new:
            self.buckets[bucket] = new
            self.newest = max(self.newest, bucket)
        else:
            self.buckets.pop(bucket, None)
        self.total += new - old

    def retry_after(self, window: Window, now: float) -> float:
        """Seconds until enough old buckets have left for `window.amount` to fit."""
        if window.amount > window.limit:
            return float(window.window_seconds)
        need = self.total + window.amount - window.limit
        freed = 0
        for bucket in sorted(self.buckets):
            freed += self.buckets[bucket]
            if freed >= need:
                return bucket + window.window_seconds - now
        return float(window.window_seconds)

    def state(self, window: Window, now: float) -> WindowState:
        remaining = max(0, window.limit - self.total)
        reset = window_reset(self.total, self.newest, window.window_seconds, now)
        return WindowState(window.limit, remaining, reset)


class _Budget:
    __slots__ = ("expires_at", "spent")

    def __init__(self, spent: int, expires_at: float) -> None:
        self.spent = spent
        self.expires_at = expires_at


class MemoryCounters:
    """`Counters` held in this process; `clock` times budget expiry (as Redis TTLs do)."""

    def __init__(
        self, *, lease_ttl: float = 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.lease_ttl = lease_ttl
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._budgets: dict[str, _Budget] = {}
        self._next_sweep = -math.inf

    async def admit(
        self,
        windows: Sequence[Window],
        slots: Sequence[Slots],
        budgets: Sequence[Budget],
        *,
        lease: str,
        now: float,
    ) -> Admission:
        return self._admit(windows, slots, budgets, lease, now)

    async def extend(
        self, budgets: Sequence[Budget], windows: Sequence[Window], *, now: float
    ) -> Admission:
        return self._admit(windows, (), budgets, "", now)

    async def settle(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        *,
        lease: str,
        taken_at: float,
    ) -> None:
        self._settle(windows, budgets, slots, lease, taken_at)

    def settle_soon(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        *,
        lease: str,
        taken_at: float,
        failed: Callable[[BaseException], None],
    ) -> None:
        self._settle(windows, budgets, slots, lease, taken_at)

    def _settle(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        lease: str,
        taken_at: float,
    ) -> None:
        bucket = math.floor(taken_at)
        for window, delta in windows:
            win = self._windows.get(window.key)
            if delta == 0 or (win is not None and bucket < win.oldest):
                continue  # nothing to add, or its bucket already left the window
            if win is None:
                if delta < 0:
                    continue
                win = self._windows[window.key] = _Window(bucket, window.window_seconds)
            win.add(bucket, delta)
        for budget, delta in budgets:
            counter = self._live_budget(budget.key)
            if counter is not None:
                counter.spent = max(0, counter.spent + delta)
            elif delta > 0:
                self._budgets[budget.key] = _Budget(delta, self._clock() + budget.ttl_seconds)
        for slot in slots:
            leases = self._slots.get(slot.key)
            if leases is not None:
                leases.pop(lease, None)

    async def seed_budget(self, key: str, spent: int, ttl_seconds: int) -> None:
        if self._live_budget(key) is None:
            self._budgets[key] = _Budget(spent, self._clock() + ttl_seconds)

    async def budget_spent(self, key: str) -> int | None:
        counter = self._live_budget(key)
        return None if counter is None else counter.spent

    async def close(self) -> None:
        self._windows.clear()
        self._slots.clear()
        self._budgets.clear()

    def _admit(
        self,
        windows: Sequence[Window],
        slots: Sequence[Slots],
        budgets: Sequence[Budget],
        lease: str,
        now: float,
    ) -> Admission:
        if now >= self._next_sweep:
            self._sweep(now)
        second = math.floor(now)
        denied: str | None = None
        retry = 0.0
        wins: list[_Window] = []
        for window in windows:
            cutoff = second - window.window_seconds
            win = self._windows.get(window.key)
            if win is None:
                win = _Window(cutoff + 1, window.window_seconds)
            win.drop_stale(cutoff)
            wins.append(win)
            if denied is None and win.total + window.amount > window.limit:
                denied, retry = window.key, win.retry_after(window, now)
        for slot in slots:
            if denied is None and not self._has_free_slot(slot, lease, now):
                denied, retry = slot.key, SLOTS_RETRY_AFTER
        counters = [self._live_budget(budget.key) for budget in budgets]
        spent = [0 if c is None else c.spent for c in counters]
        for budget, already in zip(budgets, spent, strict=True):
            if denied is None and already + budget.amount > budget.limit:
                denied, retry = budget.key, self._budget_retry_after(budget)
        if denied is None:
            self._take(windows, wins, slots, lease, now)
            self._spend(budgets, counters)
            spent = [s + b.amount for s, b in zip(spent, budgets, strict=True)]
        states = tuple(win.state(w, now) for w, win in zip(windows, wins, strict=True))
        return Admission(denied is None, denied, retry, states, tuple(spent))

    def _take(
        self,
        windows: Sequence[Window],
        wins: list[_Window],
        slots: Sequence[Slots],
        lease: str,
        now: float,
    ) -> None:
        second = math.floor(now)
        for window, win in zip(windows, wins, strict=True):
            if window.amount > 0:
                win.window_seconds = window.window_seconds
                win.add(max(second, win.oldest), window.amount)
                self._windows[window.key] = win
        for slot in slots:
            self._slots.setdefault(slot.key, {})[lease] = now + self.lease_ttl

    def _spend(self, budgets: Sequence[Budget], counters: list[_Budget | None]) -> None:
        for budget, counter in zip(budgets, counters, strict=True):
            if counter is None:
                expires_at = self._clock() + budget.ttl_seconds
                self._budgets[budget.key] = _Budget(budget.amount, expires_at)
            else:
                counter.spent += budget.amount

    def _has_free_slot(self, slot: Slots, lease: str, now: float) -> bool:
        leases = self._slots.get(slot.key)
        if leases is None:
            return slot.limit > 0
        if len(leases) < slot.limit or leases.get(lease, -math.inf) > now:
            return True
        # Expired leases (of a crashed holder) only matter when the set looks full.
        for held in [h for h, expiry in leases.items() if expiry <= now]:
            del leases[held]
        return len(leases) < slot.limit

    def _live_budget(self, key: str) -> _Budget | None:
        counter = self._budgets.get(key)
        if counter is not None and counter.expires_at <= self._clock():
            del self._budgets[key]
            return None
        return counter

    def _budget_retry_after(self, budget: Budget) -> float:
        counter = self._budgets.get(budget.key)
        if counter is None:
            return float(budget.ttl_seconds)
        return max(0.0, counter.expires_at - self._clock())

    def _sweep(self, now: float) -> None:
        """Forget windows, leases and budgets that have run out, so idle keys do not pile up."""
        self._next_sweep = now + _SWEEP_EVERY_SECONDS
        for key, win in list(self._windows.items()):
            if win.newest + win.window_seconds <= now:
                del self._windows[key]
        for key, leases in list(self._slots.items()):
            for held in [h for h, expiry in leases.items() if expiry <= now]:
                del leases[held]
            if not leases:
                del self._slots[key]
        wall = self._clock()
        for key, counter in list(self._budgets.items()):
            if counter.expires_at <= wall:
                del self._budgets[key]
