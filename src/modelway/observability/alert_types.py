"""The alert record and the state snapshots the alert engine reads from the gateway."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

Severity = Literal["warning", "critical"]
AlertState = Literal["firing", "resolved"]
BreakerStateName = Literal["closed", "half_open", "open"]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(slots=True)
class Alert:
    """One alert. ``key`` (rule + subject, e.g. ``error_rate:gpt-4o``) is its identity:
    at most one alert per key is firing at a time. ``value`` is the latest evaluated,
    ``threshold`` the one it fired at. Times are Unix seconds."""

    key: str
    rule: str
    severity: Severity
    labels: dict[str, str]  # the subject: model, deployment, team, budget
    summary: str
    value: float
    threshold: float
    state: AlertState = "firing"
    started_at: float = 0.0
    resolved_at: float | None = None
    last_notified: float | None = None  # when a notifier last delivered it

    def snapshot(self) -> Alert:
        return replace(self, labels=dict(self.labels))

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "labels": dict(self.labels),
            "summary": self.summary,
            "value": self.value,
            "threshold": self.threshold,
            "started_at": _iso(self.started_at),
            "resolved_at": _iso(self.resolved_at),
            "last_notified": _iso(self.last_notified),
        }


@dataclass(frozen=True, slots=True)
class DeploymentState:
    model: str
    deployment: str
    breaker_state: BreakerStateName
    healthy: bool | None  # None: not probed


@dataclass(frozen=True, slots=True)
class QueueState:
    model: str
    depth: int  # requests waiting
    size: int  # the most that may wait


@dataclass(frozen=True, slots=True)
class EngineState:
    deployment: str
    kv_usage: float  # 0..1
