from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from modelway.config_alerts import AlertsConfig, SlackNotifierConfig, WebhookNotifierConfig
from modelway.observability.alert_series import LATENCY_EDGES, Traffic, percentile
from modelway.observability.alerts import (
    Alert,
    AlertEngine,
    DeploymentState,
    EngineState,
    QueueState,
    build_notifiers,
)

START = datetime(2025, 3, 10, tzinfo=UTC).timestamp()
MODEL = "gpt-4o"


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A notifier that keeps what it was sent."""

    kind = "recorder"

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    async def aclose(self) -> None:
        pass

    def events(self) -> list[tuple[str, str]]:
        return [(alert.state, alert.key) for alert in self.sent]


class Harness:
    def __init__(self, config: dict[str, Any] | None = None, **readers: Any) -> None:
        self.clock = FakeClock()
        self.notes = Recorder()
        self.engine = AlertEngine(
            AlertsConfig.model_validate(config or {}),
            [self.notes],
            clock=self.clock,
            **readers,
        )
        self.changes: list[Alert] = []

    async def run(
        self,
        seconds: float,
        per_10s: int = 10,
        errors: int = 0,
        latency: float = 0.4,
        ttft: float | None = 0.1,
        model: str = MODEL,
        team: str | None = None,
        cost: float = 0.0,
        every: float = 10,
    ) -> list[Alert]:
        """Records traffic in 10-second steps, evaluating every ``every`` seconds."""
        fresh: list[Alert] = []
        for step in range(int(seconds // 10)):
            for i in range(per_10s):
                ok = i >= errors
                self.engine.record_request(model, ok, latency, ttft, team, cost)
            self.clock.advance(10)
            if (step + 1) * 10 % every == 0:
                fresh.extend(await self.engine.evaluate())
        await self.engine.drain()
        self.changes.extend(fresh)
        return fresh


@pytest.fixture
async def harness() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(config: dict[str, Any] | None = None, **readers: Any) -> Harness:
        made.append(Harness(config, **readers))
        return made[-1]

    yield make
    for h in made:
        await h.engine.close()


def states(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(alert.state, alert.key) for alert in alerts]


async def test_error_spike_fires_once_and_resolves_when_errors_stop(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    assert await h.run(3600, errors=0, every=60) == []  # an hour of clean traffic
    spike = await h.run(120, errors=5)
    assert states(spike) == [("firing", "error_rate:gpt-4o")]
    assert spike[0].severity == "critical" and spike[0].labels == {"model": MODEL}
    assert [a.key for a in h.engine.active()] == ["error_rate:gpt-4o"]
    # The errors stop: the rate decays as the spike leaves the window, and it resolves.
    after = await h.run(600)
    assert states(after) == [("resolved", "error_rate:gpt-4o")]
    assert h.notes.events() == [
        ("firing", "error_rate:gpt-4o"),
        ("resolved", "error_rate:gpt-4o"),
    ]
    assert h.engine.active() == []
    [resolved] = h.engine.recent()
    assert resolved.state == "resolved" and resolved.resolved_at == h.changes[-1].resolved_at
    assert resolved.last_notified is not None


async def test_no_refire_within_the_cooldown(harness: Callable[..., Harness]) -> None:
    h = harness({"cooldown_seconds": 900})
    await h.run(3600, every=60)
    await h.run(60, errors=5)
    await h.run(600)  # resolved
    assert await h.run(60, errors=5) == []  # 5 minutes after resolving: in the cool-down
    await h.run(900)
    again = await h.run(60, errors=5)  # 20+ minutes after resolving
    assert states(again) == [("firing", "error_rate:gpt-4o")]
    assert [state for state, _ in h.notes.events()] == ["firing", "resolved", "firing"]


async def test_error_rate_is_compared_with_the_groups_own_baseline(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    await h.run(3600, per_10s=100, errors=3, every=60)  # 3 % errors is this group's normal
    assert await h.run(300, per_10s=100, errors=8) == []  # 8 %: under 3 x 3 %
    fired = await h.run(300, per_10s=100, errors=15)
    assert states(fired) == [("firing", "error_rate:gpt-4o")]


async def test_an_outage_does_not_become_the_baseline(harness: Callable[..., Harness]) -> None:
    h = harness()
    await h.run(3600, every=60)
    assert len(await h.run(2 * 3600, errors=10, every=60)) == 1  # two hours of total failure
    assert [a.key for a in h.engine.active()] == ["error_rate:gpt-4o"]
    assert states(await h.run(600)) == [("resolved", "error_rate:gpt-4o")]


async def test_a_new_group_is_held_to_the_floor_and_the_minimum_volume(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    assert await h.run(10, per_10s=10, errors=10) == []  # 10 requests: below min_requests
    fired = await h.run(10, per_10s=10, errors=1)  # 11 of 20 failed, no baseline yet
    assert states(fired) == [("firing", "error_rate:gpt-4o")]
    other = harness()
    assert await other.run(60, per_10s=50, errors=1) == []  # 2 %: under the 5 % floor


async def test_latency_degradation_fires_per_metric(harness: Callable[..., Harness]) -> None:
    h = harness({"error_rate": {"enabled": False}})
    await h.run(3600, latency=0.4, ttft=0.1, every=60)
    slow = await h.run(300, latency=2.0, ttft=0.1)
    assert states(slow) == [("firing", "latency:end_to_end:gpt-4o")]
    assert slow[0].labels == {"model": MODEL, "metric": "end_to_end"}
    assert 1.6 <= slow[0].value <= 2.5 and 0.64 <= slow[0].threshold <= 1.0
    assert states(await h.run(600, latency=0.4)) == [("resolved", "latency:end_to_end:gpt-4o")]


async def test_fast_latencies_do_not_alert_when_they_double(
    harness: Callable[..., Harness],
) -> None:
    h = harness({"error_rate": {"enabled": False}})
    await h.run(3600, latency=0.02, ttft=0.01, every=60)
    assert await h.run(300, latency=0.08, ttft=0.04) == []  # under min_latency_seconds


async def test_queue_saturation_with_hysteresis(harness: Callable[..., Harness]) -> None:
    queue = [QueueState(MODEL, 9, 10)]
    h = harness(queues=lambda: queue)
    assert states(await h.engine.evaluate()) == [("firing", "queue:gpt-4o")]
    queue[0] = QueueState(MODEL, 8, 10)  # 80 %: no longer over, but not clearly below
    assert await h.engine.evaluate() == []
    queue[0] = QueueState(MODEL, 5, 10)
    assert states(await h.engine.evaluate()) == [("resolved", "queue:gpt-4o")]


async def test_kv_cache_usage(harness: Callable[..., Harness]) -> None:
    usage = [EngineState("local:smollm2", 0.97)]
    h = harness(engines=lambda: usage)
    [alert] = await h.engine.evaluate()
    assert alert.key == "kv_cache:local:smollm2" and alert.labels == {"deployment": "local:smollm2"}
    usage[0] = EngineState("local:smollm2", 0.5)
    assert states(await h.engine.evaluate()) == [("resolved", "kv_cache:local:smollm2")]


async def test_deployment_down_from_an_open_breaker_until_it_closes(
    harness: Callable[..., Harness],
) -> None:
    deps = [DeploymentState(MODEL, "openai:gpt-4o", "open", None)]
    h = harness(deployments=lambda: deps)
    [alert] = await h.engine.evaluate()
    assert alert.key == "deployment_down:openai:gpt-4o" and alert.severity == "critical"
    assert "circuit breaker open" in alert.summary
    deps[0] = DeploymentState(MODEL, "openai:gpt-4o", "half_open", None)
    assert await h.engine.evaluate() == []  # probing is not recovered
    deps[0] = DeploymentState(MODEL, "openai:gpt-4o", "closed", True)
    assert states(await h.engine.evaluate()) == [("resolved", "deployment_down:openai:gpt-4o")]


async def test_deployment_down_from_failing_probes_and_removed_deployments(
    harness: Callable[..., Harness],
) -> None:
    deps = [DeploymentState(MODEL, "vllm-a", "closed", False)]
    h = harness({"cooldown_seconds": 0}, deployments=lambda: deps)
    [alert] = await h.engine.evaluate()
    assert "health probes failing" in alert.summary
    deps.clear()  # taken out of the config: nothing left to be down
    assert states(await h.engine.evaluate()) == [("resolved", "deployment_down:vllm-a")]
    deps.append(DeploymentState(MODEL, "vllm-a", "half_open", None))
    assert await h.engine.evaluate() == []  # half-open alone does not fire


async def test_budget_thresholds_fire_once_each_and_resolve_at_the_period_end(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    for spent in (10, 55, 60, 85, 90, 100, 120, 130):
        h.engine.record_budget("team", "acme", "day", spent, 100, "hard")
    await h.engine.drain()
    keys = ["budget:team:acme:day:50", "budget:team:acme:day:80", "budget:team:acme:day:100"]
    assert h.notes.events() == [("firing", key) for key in keys]
    severities = [a.severity for a in h.notes.sent]
    assert severities == ["warning", "warning", "critical"]
    assert h.notes.sent[0].labels == {
        "budget": "team:acme",
        "period": "day",
        "mode": "hard",
        "team": "acme",
    }
    h.clock.advance(86400)  # the next day
    resolved = await h.engine.evaluate()
    assert sorted(states(resolved)) == sorted(("resolved", key) for key in keys)
    h.engine.record_budget("team", "acme", "day", 51, 100, "hard")  # a new period alerts anew
    assert [a.key for a in h.engine.active()] == ["budget:team:acme:day:50"]
    await h.engine.drain()


async def test_budget_jump_fires_the_highest_threshold_and_soft_budgets_are_optional(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    h.engine.record_budget("key", "k-1", "month", 95, 100, "soft")
    assert [a.key for a in h.engine.active()] == ["budget:key:k-1:month:80"]
    h.engine.record_budget("key", "k-1", "month", 95, 200, "soft")  # the limit was raised
    assert h.engine.active() == []
    quiet = harness({"budget": {"include_soft": False}})
    quiet.engine.record_budget("key", "k-1", "month", 150, 100, "soft")
    assert quiet.engine.active() == []
    await h.engine.drain()


async def test_cost_anomaly_against_the_teams_own_spend_rate(
    harness: Callable[..., Harness],
) -> None:
    h = harness({"error_rate": {"enabled": False}, "latency": {"enabled": False}})
    # A day at $0.36 an hour (one cent per 10-second step, across 10 requests)...
    assert await h.run(86400, team="acme", cost=0.001, every=3600) == []
    # ...then $6 in half an hour.
    spike = await h.run(1800, team="acme", cost=0.033, every=600)
    assert states(spike) == [("firing", "cost_anomaly:acme")]
    assert spike[0].labels == {"team": "acme"} and spike[0].value >= 3 * 0.36


async def test_a_new_team_has_no_cost_baseline(harness: Callable[..., Harness]) -> None:
    h = harness({"error_rate": {"enabled": False}, "latency": {"enabled": False}})
    assert await h.run(3600, team="new", cost=0.05, every=600) == []


async def test_memory_only_with_a_limit(harness: Callable[..., Harness]) -> None:
    rss = [900 * 2**20]
    h = harness({"memory": {"max_rss_bytes": 2**30}}, rss=lambda: rss[0])
    assert await h.engine.evaluate() == []
    rss[0] = 2**30 + 1
    assert states(await h.engine.evaluate()) == [("firing", "memory:process")]
    off = harness(rss=lambda: 2**40)
    assert await off.engine.evaluate() == []


async def test_a_failing_state_reader_does_not_stop_the_other_rules(
    harness: Callable[..., Harness],
) -> None:
    def broken() -> list[QueueState]:
        raise RuntimeError("router gone")

    h = harness(queues=broken, engines=lambda: [EngineState("local", 0.99)])
    assert states(await h.engine.evaluate()) == [("firing", "kv_cache:local")]


async def test_disabled_alerts_record_nothing_and_never_fire(
    harness: Callable[..., Harness],
) -> None:
    h = harness({"enabled": False}, queues=lambda: [QueueState(MODEL, 10, 10)])
    h.engine.record_budget("global", "global", "month", 500, 100, "hard")
    assert await h.engine.evaluate() == [] and h.engine.active() == []
    rule_off = harness({"queue": {"enabled": False}}, queues=lambda: [QueueState(MODEL, 10, 10)])
    assert await rule_off.engine.evaluate() == []


async def test_admin_json_lists_active_then_recent(harness: Callable[..., Harness]) -> None:
    queue = [QueueState(MODEL, 10, 10)]
    h = harness(
        queues=lambda: queue,
        deployments=lambda: [DeploymentState(MODEL, "d1", "open", None)],
    )
    await h.engine.evaluate()
    body = h.engine.as_json()
    assert [a["key"] for a in body["active"]] == ["deployment_down:d1", "queue:gpt-4o"]
    assert body["recent"] == []
    assert body["active"][0]["started_at"] == "2025-03-10T00:00:00+00:00"
    queue.clear()
    await h.engine.evaluate()
    [recent] = h.engine.as_json()["recent"]
    assert recent["key"] == "queue:gpt-4o" and recent["state"] == "resolved"
    await h.engine.drain()


def test_percentile_estimate_is_within_one_bin() -> None:
    hist = [0] * (len(LATENCY_EDGES) + 1)
    for i in range(1, 1001):  # 1 ms .. 1 s, uniform
        hist[bisect_right(LATENCY_EDGES, i / 1000)] += 1
    p95 = percentile(hist, 0.95)
    assert p95 is not None and 0.95 / 1.25 <= p95 <= 0.95 * 1.25
    assert percentile([0] * len(hist), 0.5) is None


def test_running_sums_match_a_recount_as_buckets_come_and_go() -> None:
    rng = random.Random(7)
    traffic = Traffic(keep_seconds=600, keep_cost_seconds=1800)
    now = START
    kept: list[tuple[float, bool, float]] = []  # every request, for the recount
    for _ in range(2000):
        now += rng.choice([0.5, 3, 10, 40, 200])
        ok, cost = rng.random() > 0.3, rng.choice([0.0, 0.01, 0.5])
        traffic.record(now, MODEL, ok, rng.uniform(0.01, 3), None, "acme", cost)
        kept = [*(k for k in kept if k[0] > now - 2000), (now, ok, cost)]  # past all windows
        if rng.random() < 0.05:
            traffic.prune(now)
        if MODEL not in traffic.models:
            continue
        last = int(now // 10)
        first, start = last - 5, last - 40
        recent, base = traffic.models[MODEL].split(first, start, histograms=True)
        slots = [(int(t // 10), ok) for t, ok, _ in kept]
        assert recent.count == sum(1 for slot, _ in slots if slot >= first)
        assert base.errors == sum(1 for slot, ok in slots if start <= slot < first and not ok)
        assert sum(base.latency) == sum(1 for slot, ok in slots if start <= slot < first and ok)
        costs = traffic.teams["acme"].split(int(now // 60) - 5, int(now // 60) - 25)
        minutes = [(int(t // 60), c) for t, _, c in kept]
        spent = sum(c for m, c in minutes if m >= int(now // 60) - 5)
        before = sum(c for m, c in minutes if int(now // 60) - 25 <= m < int(now // 60) - 5)
        assert costs == (pytest.approx(spent), pytest.approx(before))


def test_config_defaults_and_notifier_union() -> None:
    config = AlertsConfig.model_validate(
        {
            "notifiers": [
                {"type": "webhook", "url": "https://hooks.example/x", "headers": {"X-T": "s"}},
                {"type": "slack", "url": "https://hooks.slack.com/services/T/B/secret"},
                {"type": "log"},
            ],
            "budget": {"thresholds": [100, 50]},
        }
    )
    assert isinstance(config.notifiers[0], WebhookNotifierConfig)
    assert isinstance(config.notifiers[1], SlackNotifierConfig)
    assert config.budget.thresholds == (50, 100)
    assert config.error_rate.window_seconds == 300 and config.memory.max_rss_bytes is None
    assert [n.kind for n in build_notifiers(config.notifiers)] == ["log", "webhook", "slack"]
    assert "secret" not in repr(config)


@pytest.mark.parametrize(
    "bad",
    [
        {"notifiers": [{"type": "webhook", "url": "ftp://tok3n@example"}]},
        {"notifiers": [{"type": "pager"}]},
        {"latency": {"percentile": 95}},
        {"queue": {"depth": 0.5}},
    ],
)
def test_config_rejects_bad_sections_without_echoing_urls(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        AlertsConfig.model_validate(bad)
    assert "tok3n" not in str(caught.value)
