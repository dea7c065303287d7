"""The ``alerts:`` config section: rule thresholds, timing and notifiers.

Imports nothing of modelway, like ``config.py``. Every rule has an ``enabled`` switch and
defaults that suit a small production gateway; a disabled rule is never evaluated.

The log notifier is always on: every alert that fires or resolves is logged (event
``alert``) whether or not ``type: log`` is listed, so the log is a complete record even
when a webhook is down. Listing it is allowed and does not log twice.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

Severity = Literal["warning", "critical"]


class _Strict(BaseModel):
    # Hidden inputs: an error must not echo a webhook URL or header (they carry tokens).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _check_url(value: SecretStr) -> SecretStr:
    # The URL often embeds a token (Slack's always does): never echo it in the error.
    if not re.match(r"^https?://[^/\s]+", value.get_secret_value()):
        raise ValueError("must be an http:// or https:// URL")
    return value


class WebhookNotifierConfig(_Strict):
    """POST ``{"status": "firing"|"resolved", "alert": {...}}`` as JSON."""

    type: Literal["webhook"]
    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout_seconds: float = Field(5.0, gt=0)

    _url = field_validator("url")(_check_url)


class SlackNotifierConfig(_Strict):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat...)."""

    type: Literal["slack"]
    url: SecretStr
    timeout_seconds: float = Field(5.0, gt=0)

    _url = field_validator("url")(_check_url)


class LogNotifierConfig(_Strict):
    """The structured log (always on; listing it changes nothing)."""

    type: Literal["log"]


NotifierConfig = Annotated[
    WebhookNotifierConfig | SlackNotifierConfig | LogNotifierConfig,
    Field(discriminator="type"),
]


class ErrorRateAlertConfig(_Strict):
    """Per model group: the recent error rate against the group's own baseline."""

    enabled: bool = True
    severity: Severity = "critical"
    window_seconds: float = Field(300, gt=0)
    # The baseline is the `baseline_seconds` before the recent window.
    baseline_seconds: float = Field(3600, gt=0)
    min_requests: int = Field(20, ge=1, description="In the window (and in the baseline).")
    ratio: float = Field(3.0, gt=0, description="Fire at this multiple of the baseline rate.")
    min_error_rate: float = Field(0.05, gt=0, le=1, description="Never fire below this rate.")


class LatencyAlertConfig(_Strict):
    """Per model group and metric: a recent percentile against the group's baseline."""

    enabled: bool = True
    severity: Severity = "warning"
    metrics: tuple[Literal["end_to_end", "ttft"], ...] = ("end_to_end", "ttft")
    window_seconds: float = Field(300, gt=0)
    baseline_seconds: float = Field(3600, gt=0)
    min_requests: int = Field(20, ge=1, description="Successful requests, in each window.")
    ratio: float = Field(2.0, gt=0)
    percentile: float = Field(0.95, gt=0, lt=1)
    # Doubling from 20 ms to 40 ms is noise, not an incident.
    min_latency_seconds: float = Field(0.25, ge=0, description="Never fire below this.")


class QueueAlertConfig(_Strict):
    """Per model group: requests waiting, as a share of the queue's size."""

    enabled: bool = True
    severity: Severity = "warning"
    depth_ratio: float = Field(0.8, gt=0, le=1)


class KVCacheAlertConfig(_Strict):
    """Per embedded-engine deployment: the share of KV cache cells in use."""

    enabled: bool = True
    severity: Severity = "warning"
    usage: float = Field(0.95, gt=0, le=1)


class MemoryAlertConfig(_Strict):
    """The process's resident memory; off unless ``max_rss_bytes`` is set."""

    enabled: bool = True
    severity: Severity = "critical"
    max_rss_bytes: int | None = Field(None, gt=0)


class BudgetAlertConfig(_Strict):
    """Spend as a percentage of a budget: each threshold fires once per budget period
    (severity critical from 100 % on, warning below) and resolves when the period ends."""

    enabled: bool = True
    thresholds: tuple[float, ...] = Field((50.0, 80.0, 100.0), min_length=1)
    include_soft: bool = Field(True, description="Also alert on soft (non-blocking) budgets.")

    @field_validator("thresholds")
    @classmethod
    def _positive_sorted(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(t <= 0 for t in value):
            raise ValueError("thresholds are percentages above 0")
        return tuple(sorted(set(value)))


class CostAnomalyAlertConfig(_Strict):
    """Per team: spend in the recent window against the team's baseline spend rate."""

    enabled: bool = True
    severity: Severity = "warning"
    window_seconds: float = Field(3600, gt=0)
    baseline_seconds: float = Field(86400, gt=0)
    ratio: float = Field(3.0, gt=0)
    min_usd: float = Field(1.0, ge=0, description="Never fire below this spend in the window.")


class DeploymentDownAlertConfig(_Strict):
    """Per deployment: its circuit breaker is open, or its health probes fail."""

    enabled: bool = True
    severity: Severity = "critical"
    on_breaker_open: bool = True
    on_failed_health: bool = True


class AlertsConfig(_Strict):
    enabled: bool = True
    evaluate_seconds: float = Field(5.0, gt=0)
    # After an alert resolves, the same alert (same key) does not fire again before this.
    cooldown_seconds: float = Field(300.0, ge=0)
    history: int = Field(200, ge=0, description="Resolved alerts kept for listing.")
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    error_rate: ErrorRateAlertConfig = ErrorRateAlertConfig()
    latency: LatencyAlertConfig = LatencyAlertConfig()
    queue: QueueAlertConfig = QueueAlertConfig()
    kv_cache: KVCacheAlertConfig = KVCacheAlertConfig()
    memory: MemoryAlertConfig = MemoryAlertConfig()
    budget: BudgetAlertConfig = BudgetAlertConfig()
    cost_anomaly: CostAnomalyAlertConfig = CostAnomalyAlertConfig()
    deployment_down: DeploymentDownAlertConfig = DeploymentDownAlertConfig()
