"""Shared counters that rate limits, concurrency limits and budgets run on.

Two implementations behind one protocol: `MemoryCounters` (one process) and
`RedisCounters` (all replicas, atomic Lua scripts). Both give the same answers for the
same calls; tests/counters_contract.py holds them to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Slot sets refuse without knowing when a lease will be released: ask again soon.
SLOTS_RETRY_AFTER = 1.0

# The value types below are built several times per request; they are not frozen because
# a frozen dataclass's __init__ costs three times as much (object.__setattr__ per field).
# Nothing changes them after construction.


@dataclass(slots=True)
class Window:
    """A sliding-window quota: at most `limit` units in any `window_seconds` seconds."""

    key: str
    limit: int
    amount: int
    window_seconds: int = 60


@dataclass(slots=True)
class Slots:
    """A concurrency limit: at most `limit` leases held at once."""

    key: str
    limit: int


@dataclass(slots=True)
class Budget:
    """Spend in integer nano-USD within one period (the period is part of `key`)."""

    key: str
    limit: int
    amount: int
    ttl_seconds: int


@dataclass(slots=True)
class WindowState:
    """What a window looks like after an admission (or now, when it was refused)."""

    limit: int
    remaining: int
    reset_seconds: float


@dataclass(slots=True)
class Admission:
    allowed: bool
    denied_key: str | None
    retry_after: float
    windows: tuple[WindowState, ...]
    budgets_spent: tuple[int, ...]


class CountersUnavailable(Exception):
    """The backend could not be reached (Redis down or too slow to answer)."""


class Counters(Protocol):
    async def admit(
        self,
        windows: Sequence[Window],
        slots: Sequence[Slots],
        budgets: Sequence[Budget],
        *,
        lease: str,
        now: float,
    ) -> Admission:
        """Take every window's amount, a lease in every slot set and every budget's
        amount, or, if any of them has no room, take nothing."""
        ...

    async def settle(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        *,
        lease: str,
        taken_at: float,
    ) -> None:
        """Add each delta (actual - reserved) to the window bucket of `taken_at` and to
        each budget, and release `lease` from each slot set."""
        ...

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
        """`settle` without waiting for it (it is applied now or sent in the background);
        `failed` hears of it when it could not be applied."""
        ...

    async def extend(
        self, budgets: Sequence[Budget], windows: Sequence[Window], *, now: float
    ) -> Admission:
        """Reserve more mid-stream, all or nothing, without slots."""
        ...

    async def seed_budget(self, key: str, spent: int, ttl_seconds: int) -> None:
        """Set a budget's spend unless its counter already exists."""
        ...

    async def budget_spent(self, key: str) -> int | None:
        """A budget's spend, or None when it has no counter."""
        ...

    async def close(self) -> None: ...


def window_reset(total: int, newest: int, window_seconds: int, now: float) -> float:
    """Seconds until a window holding `total` units, the newest in bucket `newest`, is empty."""
    if total <= 0:
        return 0.0
    return max(0.0, newest + window_seconds - now)
