"""The in-process alert engine: recorders for the request path, rules evaluated on a
timer, firing and resolving with de-duplication by key and a cool-down, notifications
delivered off the caller's path.

The engine imports no routing code: the state it reads (breakers, queues, KV caches) is
handed to it as callables. It runs on one event loop and takes no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from modelway.config_alerts import AlertsConfig
from modelway.observability.alert_budgets import BudgetWatch
from modelway.observability.alert_notifiers import Notifier, Outbox, build_notifiers
from modelway.observability.alert_rules import (
    CostAnomalyRule,
    ErrorRateRule,
    LatencyRule,
    Rule,
    Verdict,
)
from modelway.observability.alert_series import Traffic
from modelway.observability.alert_state_rules import (
    DeploymentDownRule,
    KVCacheRule,
    MemoryRule,
    QueueRule,
    read_rss,
)
from modelway.observability.alert_types import Alert, DeploymentState, EngineState, QueueState
from modelway.observability.logging import get_logger

_log = get_logger("modelway.alerts")


def _nothing() -> tuple[()]:
    return ()


class AlertEngine:
    """Built from the ``alerts:`` config. With ``notifiers`` None, notifies the log and the
    configured destinations; otherwise exactly the notifiers given."""

    def __init__(
        self,
        config: AlertsConfig,
        notifiers: Sequence[Notifier] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        deployments: Callable[[], Iterable[DeploymentState]] = _nothing,
        queues: Callable[[], Iterable[QueueState]] = _nothing,
        engines: Callable[[], Iterable[EngineState]] = _nothing,
        rss: Callable[[], int | None] = read_rss,
    ) -> None:
        self.config = config
        self._clock = clock
        keep = max(
            config.error_rate.window_seconds + config.error_rate.baseline_seconds,
            config.latency.window_seconds + config.latency.baseline_seconds,
        )
        cost = config.cost_anomaly
        self._traffic = Traffic(keep, cost.window_seconds + cost.baseline_seconds)
        self._rss = rss
        self._rules = self._build_rules(deployments, queues, engines, rss)
        on = config.enabled and config.budget.enabled
        self._budgets = BudgetWatch(config.budget) if on else None
        chosen = build_notifiers(config.notifiers) if notifiers is None else notifiers
        self._outbox = Outbox(chosen, clock)
        self._active: dict[str, Alert] = {}
        self._recent: deque[Alert] = deque(maxlen=config.history)
        self._resolved_at: dict[str, float] = {}  # key -> when, for the cool-down
        self._task: asyncio.Task[None] | None = None

    def watch(
        self,
        *,
        deployments: Callable[[], Iterable[DeploymentState]],
        queues: Callable[[], Iterable[QueueState]],
        engines: Callable[[], Iterable[EngineState]],
    ) -> None:
        """Give the state rules their readers (for owners built after the engine)."""
        self._rules = self._build_rules(deployments, queues, engines, self._rss)

    def _build_rules(
        self,
        deployments: Callable[[], Iterable[DeploymentState]],
        queues: Callable[[], Iterable[QueueState]],
        engines: Callable[[], Iterable[EngineState]],
        rss: Callable[[], int | None],
    ) -> list[Rule]:
        cfg = self.config
        candidates: list[tuple[bool, Callable[[], Rule]]] = [
            (cfg.error_rate.enabled, lambda: ErrorRateRule(cfg.error_rate, self._traffic)),
            (cfg.latency.enabled, lambda: LatencyRule(cfg.latency, self._traffic)),
            (cfg.cost_anomaly.enabled, lambda: CostAnomalyRule(cfg.cost_anomaly, self._traffic)),
            (cfg.queue.enabled, lambda: QueueRule(cfg.queue, queues)),
            (cfg.kv_cache.enabled, lambda: KVCacheRule(cfg.kv_cache, engines)),
            (
                cfg.memory.enabled and cfg.memory.max_rss_bytes is not None,
                lambda: MemoryRule(cfg.memory, rss),
            ),
            (
                cfg.deployment_down.enabled,
                lambda: DeploymentDownRule(cfg.deployment_down, deployments),
            ),
        ]
        return [make() for enabled, make in candidates if cfg.enabled and enabled]

    # -- the request path: O(1), no I/O, no awaiting

    def record_request(
        self,
        model: str,
        ok: bool,
        latency_s: float,
        ttft_s: float | None,
        team: str | None,
        cost_usd: float,
    ) -> None:
        self._traffic.record(self._clock(), model, ok, latency_s, ttft_s, team, cost_usd)

    def record_budget(
        self,
        scope: str,
        owner: str,
        period: str,
        spent_usd: float,
        limit_usd: float,
        mode: str,
    ) -> None:
        """Fires a budget alert on crossing a threshold (its notification is queued)."""
        if self._budgets is None:
            return
        now = self._clock()
        fire, resolve = self._budgets.observe(now, scope, owner, period, spent_usd, limit_usd, mode)
        for key in resolve:
            self._resolve(key, now, None)
        for verdict in fire:
            self._fire(verdict, now)

    # -- evaluation

    async def evaluate(self) -> list[Alert]:
        """One pass of every rule; returns the alerts that fired or resolved in it."""
        now = self._clock()
        changed: list[Alert] = []
        if self._budgets is not None:
            for key in self._budgets.ended(now):
                changed.extend(self._resolve(key, now, None))
        for rule in self._rules:
            try:
                verdicts = list(rule(now, self._active))
            except Exception:  # one broken state reader must not stop the other rules
                _log.exception("alert rule failed", rule=rule.name)
                continue
            changed.extend(self._apply(rule.name, verdicts, now))
        self._traffic.prune(now)
        cooled = now - self.config.cooldown_seconds
        self._resolved_at = {k: t for k, t in self._resolved_at.items() if t > cooled}
        return [alert.snapshot() for alert in changed]

    def _apply(self, rule: str, verdicts: list[Verdict], now: float) -> list[Alert]:
        changed: list[Alert] = []
        holding: set[str] = set()
        values: dict[str, float] = {}
        for verdict in verdicts:
            if verdict.firing:
                holding.add(verdict.key)
                changed.extend(self._fire(verdict, now))
            else:
                values[verdict.key] = verdict.value
        for key, alert in list(self._active.items()):
            if alert.rule == rule and key not in holding:
                changed.extend(self._resolve(key, now, values.get(key)))
        return changed

    def _fire(self, verdict: Verdict, now: float) -> list[Alert]:
        alert = self._active.get(verdict.key)
        if alert is not None:
            alert.value = verdict.value  # the threshold stays the one it fired at
            return []
        # Budget alerts are de-duplicated by period instead: a new period may alert at once.
        cooling = self._resolved_at.get(verdict.key)
        if (
            verdict.rule != "budget"
            and cooling is not None
            and now - cooling < self.config.cooldown_seconds
        ):
            return []
        alert = Alert(
            verdict.key,
            verdict.rule,
            verdict.severity,
            dict(verdict.labels),
            verdict.summary,
            verdict.value,
            verdict.threshold,
            started_at=now,
        )
        self._active[verdict.key] = alert
        self._outbox.put(alert)
        return [alert]

    def _resolve(self, key: str, now: float, value: float | None) -> list[Alert]:
        alert = self._active.pop(key, None)
        if alert is None:
            return []
        alert.state, alert.resolved_at = "resolved", now
        if value is not None:
            alert.value = value
        self._recent.appendleft(alert)
        self._resolved_at[key] = now
        self._outbox.put(alert)
        return [alert]

    # -- lifecycle

    def start(self) -> None:
        """Evaluates every ``evaluate_seconds`` in a background task (call in the loop)."""
        if self._task is None and self._rules:
            self._task = asyncio.create_task(self._run(), name="alerts-evaluate")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.evaluate_seconds)
            try:
                await self.evaluate()
            except Exception:
                _log.exception("alert evaluation failed")

    async def drain(self) -> None:
        """Waits for the queued notifications to be delivered (or to fail)."""
        await self._outbox.drain()

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Stops evaluating, delivers what is queued (for up to ``grace_seconds``), closes
        the notifiers."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._outbox.close(grace_seconds)

    # -- reading

    def active(self) -> list[Alert]:
        """Firing alerts, critical first, then the newest first."""
        alerts = sorted(
            self._active.values(), key=lambda a: (a.severity != "critical", -a.started_at)
        )
        return [alert.snapshot() for alert in alerts]

    def recent(self) -> list[Alert]:
        """Resolved alerts, the most recently resolved first."""
        return [alert.snapshot() for alert in self._recent]

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        """The body of ``GET /admin/alerts``."""
        return {
            "active": [alert.as_dict() for alert in self.active()],
            "recent": [alert.as_dict() for alert in self.recent()],
        }
