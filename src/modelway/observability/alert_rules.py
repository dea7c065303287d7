"""The alert rules over recorded traffic: error rate, latency, cost. Each rule is a
callable class that, given the time and the alerts now firing, yields one ``Verdict``
per subject it could judge.

A subject with no data yields nothing, and the engine resolves a firing alert whose
subject is no longer judged (its traffic stopped, its deployment left the config).
A firing alert keeps firing until its value falls below ``HOLD_FRACTION`` of the
threshold it fired at. That threshold is frozen: as an incident's own data moves into the
baseline it must not raise the bar, or an outage would resolve itself after a baseline's
length. (So a group that fails from its first request, with no baseline, stays alerted
until its error rate falls under the floor.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from modelway.config_alerts import (
    CostAnomalyAlertConfig,
    ErrorRateAlertConfig,
    LatencyAlertConfig,
)
from modelway.observability.alert_series import (
    COST_BUCKET_SECONDS,
    Traffic,
    percentile,
    slot_of,
    slots_in,
)
from modelway.observability.alert_types import Alert, Severity

HOLD_FRACTION = 0.9


@dataclass(frozen=True, slots=True)
class Verdict:
    key: str
    rule: str
    severity: Severity
    labels: dict[str, str]
    summary: str
    value: float
    threshold: float
    firing: bool


class Rule(Protocol):
    name: str

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterable[Verdict]: ...


def firing(key: str, value: float, threshold: float, active: Mapping[str, Alert]) -> bool:
    alert = active.get(key)
    if alert is None:
        return value >= threshold
    return value >= alert.threshold * HOLD_FRACTION


def span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class ErrorRateRule:
    name = "error_rate"

    def __init__(self, config: ErrorRateAlertConfig, traffic: Traffic) -> None:
        self.config = config
        self._traffic = traffic

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        cfg = self.config
        first = slot_of(now) - slots_in(cfg.window_seconds) + 1
        start = first - slots_in(cfg.baseline_seconds)
        for model, series in self._traffic.models.items():
            key = f"{self.name}:{model}"
            recent, base = series.split(first, start, histograms=False)
            if recent.count == 0 or (recent.count < cfg.min_requests and key not in active):
                continue
            threshold = cfg.min_error_rate
            baseline = ""
            if base.count >= cfg.min_requests:
                threshold = max(cfg.ratio * base.errors / base.count, threshold)
                baseline = f", baseline {base.errors / base.count:.1%}"
            rate = recent.errors / recent.count
            summary = (
                f"{model}: {rate:.1%} of {recent.count} requests failed in the last "
                f"{span(cfg.window_seconds)}{baseline}"
            )
            yield Verdict(
                key,
                self.name,
                cfg.severity,
                {"model": model},
                summary,
                rate,
                threshold,
                firing(key, rate, threshold, active),
            )


class LatencyRule:
    name = "latency"

    def __init__(self, config: LatencyAlertConfig, traffic: Traffic) -> None:
        self.config = config
        self._traffic = traffic

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        cfg = self.config
        first = slot_of(now) - slots_in(cfg.window_seconds) + 1
        label = f"p{cfg.percentile * 100:g}"
        start = first - slots_in(cfg.baseline_seconds)
        for model, series in self._traffic.models.items():
            recent, base = series.split(first, start, histograms=True)
            for metric in cfg.metrics:
                key = f"{self.name}:{metric}:{model}"
                now_hist = recent.latency if metric == "end_to_end" else recent.ttft
                count = sum(now_hist)
                if count == 0 or (count < cfg.min_requests and key not in active):
                    continue
                base_hist = base.latency if metric == "end_to_end" else base.ttft
                if sum(base_hist) < cfg.min_requests:
                    continue  # no baseline yet: nothing to compare with
                value = percentile(now_hist, cfg.percentile) or 0.0
                before = percentile(base_hist, cfg.percentile) or 0.0
                threshold = max(cfg.ratio * before, cfg.min_latency_seconds)
                summary = (
                    f"{model}: {metric} latency {label} is {value:.3g} s over the last "
                    f"{span(cfg.window_seconds)}, baseline {before:.3g} s"
                )
                yield Verdict(
                    key,
                    self.name,
                    cfg.severity,
                    {"model": model, "metric": metric},
                    summary,
                    value,
                    threshold,
                    firing(key, value, threshold, active),
                )


class CostAnomalyRule:
    name = "cost_anomaly"

    def __init__(self, config: CostAnomalyAlertConfig, traffic: Traffic) -> None:
        self.config = config
        self._traffic = traffic

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        cfg = self.config
        width = slots_in(cfg.window_seconds, COST_BUCKET_SECONDS)
        first = slot_of(now, COST_BUCKET_SECONDS) - width + 1
        earliest = first - slots_in(cfg.baseline_seconds, COST_BUCKET_SECONDS)
        for team, series in self._traffic.teams.items():
            key = f"{self.name}:{team}"
            # The baseline covers the team's history only, and at least one window of it.
            start = max(earliest, series.first_seen)
            covered = first - start
            if covered < width:
                continue
            spent, before = series.split(first, start)
            usual = before * width / covered
            threshold = max(cfg.ratio * usual, cfg.min_usd)
            summary = (
                f"team {team} spent ${spent:.2f} in the last {span(cfg.window_seconds)}, "
                f"usually ${usual:.2f}"
            )
            yield Verdict(
                key,
                self.name,
                cfg.severity,
                {"team": team},
                summary,
                spent,
                threshold,
                firing(key, spent, threshold, active),
            )
