"""Budget alerts: spend crossing 50/80/100 % (configurable) of a budget, once per period.

Judged when spend is recorded, not by the evaluation loop. When one record crosses
several thresholds at once, only the highest fires (80 % implies 50 %). The alerts of a
period resolve when the period ends, or earlier if the limit is raised above the spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from modelway.accounting.budgets import period_bounds
from modelway.config_alerts import BudgetAlertConfig
from modelway.observability.alert_rules import Verdict
from modelway.observability.alert_types import Severity

RULE = "budget"
_NOTHING: tuple[Sequence[Verdict], Sequence[str]] = ((), ())


class _Period:
    __slots__ = ("active", "end", "passed")

    def __init__(self, end: float | None) -> None:
        self.end = end  # Unix seconds; None for an all-time budget
        self.passed = 0  # how many thresholds (sorted) the spend has reached
        self.active: dict[str, float] = {}  # firing alert key -> its threshold


class BudgetWatch:
    def __init__(self, config: BudgetAlertConfig) -> None:
        self.config = config
        self._thresholds = tuple(config.thresholds)
        self._periods: dict[tuple[str, str, str], _Period] = {}

    def observe(
        self,
        now: float,
        scope: str,
        owner: str,
        period: str,
        spent_usd: float,
        limit_usd: float,
        mode: str,
    ) -> tuple[Sequence[Verdict], Sequence[str]]:
        """The alerts to fire and the alert keys to resolve after this record."""
        if limit_usd <= 0 or (mode == "soft" and not self.config.include_soft):
            return _NOTHING
        ident = (scope, owner, period)
        state = self._periods.get(ident)
        resolve: list[str] = []
        if state is None or (state.end is not None and now >= state.end):
            if state is not None:
                resolve.extend(state.active)
            end = period_bounds(period, datetime.fromtimestamp(now, UTC))[1]
            state = self._periods[ident] = _Period(end.timestamp() if end else None)
        percent = 100.0 * spent_usd / limit_usd
        if state.active:
            lowered = [key for key, threshold in state.active.items() if percent < threshold]
            for key in lowered:
                del state.active[key]
            resolve.extend(lowered)
        crossed = state.passed
        while crossed < len(self._thresholds) and percent >= self._thresholds[crossed]:
            crossed += 1
        if crossed == state.passed:
            return ((), resolve) if resolve else _NOTHING
        state.passed = crossed
        threshold = self._thresholds[crossed - 1]
        key = f"{RULE}:{scope}:{owner}:{period}:{threshold:g}"
        state.active[key] = threshold
        labels = {"budget": f"{scope}:{owner}", "period": period, "mode": mode}
        if scope == "team":
            labels["team"] = owner
        summary = (
            f"{scope} {owner} has spent ${spent_usd:.2f} of its {period} {mode} budget "
            f"of ${limit_usd:.2f} ({percent:.0f} %)"
        )
        severity: Severity = "critical" if threshold >= 100 else "warning"
        verdict = Verdict(key, RULE, severity, labels, summary, percent, threshold, True)
        return [verdict], resolve

    def ended(self, now: float) -> list[str]:
        """Keys of firing alerts whose period is over; forgets finished periods."""
        keys: list[str] = []
        for ident, state in list(self._periods.items()):
            if state.end is not None and now >= state.end:
                keys.extend(state.active)
                del self._periods[ident]
        return keys
