"""What one request takes from the shared counters before its call: requests and tokens
per minute, concurrency slots, and its maximum possible cost from each hard budget."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from modelway.access.principal import BudgetRule, Limits, Principal
from modelway.accounting.budgets import BudgetWindow, budget_window
from modelway.accounting.pricing import format_usd, usd_to_nano
from modelway.protocol.errors import GatewayError, QuotaExceeded, RateLimited
from modelway.store.counters import Admission, Budget, Slots, Window, WindowState

# Soft budgets count spend but never refuse.
UNBOUNDED = 2**62


@dataclass(slots=True)  # built per request: not frozen, see store/counters.py
class WindowRole:
    scope: str  # "key" or "team"
    owner: str
    unit: str  # "requests" or "tokens"


@dataclass(slots=True)
class Reservation:
    windows: list[Window] = field(default_factory=list)
    roles: list[WindowRole] = field(default_factory=list)
    slots: list[Slots] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    rules: list[BudgetRule] = field(default_factory=list)
    periods: list[BudgetWindow] = field(default_factory=list)
    tokens: int = 0
    cost_nano_usd: int = 0

    @property
    def empty(self) -> bool:
        return not (self.windows or self.slots or self.budgets)

    def drop(self) -> None:
        """Nothing was taken (refused, or the counters were unreachable): settle nothing."""
        self.windows.clear()
        self.slots.clear()
        self.budgets.clear()
        self.rules.clear()
        self.periods.clear()

    @property
    def has_hard_budget(self) -> bool:
        return any(r.mode == "hard" for r in self.rules)


def plan(
    principal: Principal | None,
    global_budgets: list[BudgetRule],
    tokens: int,
    max_cost_nano_usd: int,
    now: float,
) -> Reservation:
    """`now` is a Unix time."""
    res = Reservation(tokens=tokens, cost_nano_usd=max_cost_nano_usd)
    if principal is not None and not principal.is_master:
        _limits(res, "key", principal.key_id, principal.key_limits, tokens)
        if principal.team_id is not None:
            _limits(res, "team", principal.team_id, principal.team_limits, tokens)
    rules = [*(principal.budgets if principal is not None else ()), *global_budgets]
    for rule in rules:
        period = budget_window(rule, now)
        hard = rule.mode == "hard"
        res.budgets.append(
            Budget(
                period.key,
                usd_to_nano(rule.limit_usd) if hard else UNBOUNDED,
                max_cost_nano_usd if hard else 0,
                period.ttl_seconds,
            )
        )
        res.rules.append(rule)
        res.periods.append(period)
    return res


def _limits(res: Reservation, scope: str, owner: str, limits: Limits | None, tokens: int) -> None:
    if limits is None:
        return
    if limits.rpm is not None:
        res.windows.append(Window(f"{scope}:{owner}:rpm", limits.rpm, 1))
        res.roles.append(WindowRole(scope, owner, "requests"))
    if limits.tpm is not None:
        res.windows.append(Window(f"{scope}:{owner}:tpm", limits.tpm, tokens))
        res.roles.append(WindowRole(scope, owner, "tokens"))
    if limits.max_parallel is not None:
        res.slots.append(Slots(f"{scope}:{owner}:parallel", limits.max_parallel))


def refusal(res: Reservation, admission: Admission, now: datetime) -> GatewayError:
    """The error naming the limit that refused the request."""
    key = admission.denied_key
    for window, role in zip(res.windows, res.roles, strict=True):
        if window.key == key:
            per = (
                "requests"
                if role.unit == "requests"
                else f"tokens (this request needs {window.amount})"
            )
            return RateLimited(
                f"rate limit reached for {role.scope} {role.owner}: {window.limit} {per} per "
                f"minute; retry after {math.ceil(admission.retry_after)} s",
                retry_after=max(admission.retry_after, 0.001),
            )
    for slots in res.slots:
        if slots.key == key:
            scope, owner, _ = slots.key.split(":", 2)
            return RateLimited(
                f"concurrency limit reached for {scope} {owner}: {slots.limit} requests at once",
                retry_after=max(admission.retry_after, 1.0),
            )
    for budget, rule, period in zip(res.budgets, res.rules, res.periods, strict=True):
        if budget.key == key:
            left = period.seconds_left(now)
            per = "in total" if rule.period == "total" else f"per {rule.period}"
            owner = "global" if rule.scope == "global" else f"{rule.scope} {rule.owner}"
            return QuotaExceeded(
                f"budget of ${format_usd(usd_to_nano(rule.limit_usd))} {per} for {owner} is "
                f"spent (this request may cost up to ${format_usd(budget.amount)})",
                retry_after=left,
            )
    return RateLimited("a limit refused this request", retry_after=admission.retry_after)


def rate_headers(res: Reservation, states: tuple[WindowState, ...]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, from the tightest window of each unit."""
    headers: dict[str, str] = {}
    for unit in ("requests", "tokens"):
        tightest: WindowState | None = None
        for role, state in zip(res.roles, states, strict=False):
            if role.unit == unit and (tightest is None or state.remaining < tightest.remaining):
                tightest = state
        if tightest is not None:
            headers[f"x-ratelimit-limit-{unit}"] = str(tightest.limit)
            headers[f"x-ratelimit-remaining-{unit}"] = str(tightest.remaining)
            headers[f"x-ratelimit-reset-{unit}"] = duration(tightest.reset_seconds)
    return headers


def duration(seconds: float) -> str:
    """As OpenAI writes them: ``120ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"
