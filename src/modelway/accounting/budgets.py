"""Budget periods (UTC calendar: day, ISO week, month, or all time) and counter keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelway.access.principal import BudgetRule

_TOTAL_TTL = 10 * 365 * 86400


@dataclass(frozen=True, slots=True)
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


def budget_window(rule: BudgetRule, now: datetime) -> BudgetWindow:
    start, end = period_bounds(rule.period, now)
    stamp = f"{start.year:04d}-{start.month:02d}-{start.day:02d}" if start is not None else "all"
    key = f"budget:{rule.scope}:{rule.owner}:{rule.period}:{stamp}"
    # The counter outlives its period by a day, for late settlements.
    ttl = int((end - now).total_seconds()) + 86400 if end is not None else _TOTAL_TTL
    return BudgetWindow(key, start, end, ttl)
