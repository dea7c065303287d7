"""Built-in alerts, evaluated in the gateway process: the public names.

``AlertEngine`` (``alert_engine.py``) records traffic and budgets, evaluates the rules
(``alert_rules.py``, ``alert_state_rules.py``, ``alert_budgets.py``) over time-bucketed aggregates
(``alert_series.py``) and delivers through notifiers (``alert_notifiers.py``).
"""

from __future__ import annotations

from modelway.observability.alert_engine import AlertEngine
from modelway.observability.alert_notifiers import (
    LogNotifier,
    Notifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifiers,
)
from modelway.observability.alert_state_rules import read_rss
from modelway.observability.alert_types import (
    Alert,
    DeploymentState,
    EngineState,
    QueueState,
)

__all__ = [
    "Alert",
    "AlertEngine",
    "DeploymentState",
    "EngineState",
    "LogNotifier",
    "Notifier",
    "QueueState",
    "SlackNotifier",
    "WebhookNotifier",
    "build_notifiers",
    "read_rss",
]
