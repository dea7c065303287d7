"""Budget periods (UTC calendar: day, ISO week, month, or all time) and counter keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelway.access.principal import BudgetRule

_TOTAL_TTL = 10 * 365 * 86400


@dataclass(slots=True)  # built per request: not frozen, see store/counters.py
class BudgetWindow:
    key: str  # the counter of this rule in this period
    start: datetime | None  # None for an all-time budget
    end: datetime | None
    ttl_seconds: int

    def seconds_left(self, now: datetime) -> float | None:
        return (self.end - now).total_seconds() if self.end is not None else None


def period_bounds(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight, midnight + timedelta(days=1)
    if period == "week":
        start = midnight - timedelta(days=midnight.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = midnight.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    return None, None


@dataclass(frozen=True, slots=True)
class _Period:
    start: datetime | None
    end: datetime | None
    start_ts: float
    end_ts: float
    stamp: str


# The current period of each kind: every request with a budget needs it, and it changes
# once a day at most.
_current: dict[str, _Period] = {}


def _period(period: str, now: float) -> _Period:
    known = _current.get(period)
    if known is not None and known.start_ts <= now < known.end_ts:
        return known
    start, end = period_bounds(period, datetime.fromtimestamp(now, UTC))
    if start is None or end is None:
        found = _Period(None, None, -math.inf, math.inf, "all")
    else:
        stamp = f"{start.year:04d}-{start.month:02d}-{start.day:02d}"
        found = _Period(start, end, start.timestamp(), end.timestamp(), stamp)
    _current[period] = found
    return found


def budget_window(rule: BudgetRule, now: float) -> BudgetWindow:
    """The counter of `rule` at `now` (a Unix time)."""
    period = _period(rule.period, now)
    key = f"budget:{rule.scope}:{rule.owner}:{rule.period}:{period.stamp}"
    # The counter outlives its period by a day, for late settlements.
    ttl = int(period.end_ts - now) + 86400 if period.end is not None else _TOTAL_TTL
    return BudgetWindow(key, period.start, period.end, ttl)
