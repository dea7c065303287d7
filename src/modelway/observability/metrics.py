"""The gateway's Prometheus metrics: one catalog, named by Prometheus' rules (``modelway_``
prefix, base units in the name, ``_total`` counters), with bounded labels only: model
group, deployment, provider, operation, status class, stream, team. Never key ids,
prompts or user ids.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes), values live in shared
files and one scrape of any worker sees them all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Request latencies from a cached answer (ms) to a long generation (minutes).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
)
# Gateway overhead and queue waits: tens of microseconds up to seconds.
OVERHEAD_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    30.0,
)
TOKEN_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every metric the gateway exports, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        r = self.registry
        c = _factory(Counter, r)
        h = _factory(Histogram, r)
        g = _factory(Gauge, r)
        live: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        latest: dict[str, Any] = {"multiprocess_mode": "mostrecent"} if self.multiprocess else {}

        # Traffic
        self.requests = c(
            "modelway_requests_total",
            "Requests answered, by model group, operation, status class and stream.",
            ["model", "operation", "status_class", "stream", "team"],
        )
        self.errors = c(
            "modelway_request_errors_total",
            "Requests that failed, by the error's type (the OpenAI error type).",
            ["model", "error_type"],
        )
        self.attempts = c(
            "modelway_upstream_attempts_total",
            "Calls to deployments, by outcome (success or the error type).",
            ["model", "deployment", "provider", "outcome"],
        )
        self.retries = c(
            "modelway_retries_total", "Attempts after the first, per model group.", ["model"]
        )
        self.fallbacks = c(
            "modelway_fallbacks_total",
            "Requests moved to a fallback group, by the group left and the one taken.",
            ["model", "fallback"],
        )
        self.cache_lookups = c(
            "modelway_cache_lookups_total",
            "Response cache lookups, by result (hit, semantic_hit, miss, bypass).",
            ["model", "result"],
        )
        self.config_info = g(
            "modelway_config_info",
            "1 for the config version (content hash) being served, 0 for earlier ones.",
            ["version"],
            **latest,
        )
        self.cache_saved = c(
            "modelway_cache_saved_usd_total",
            "What answers served from the response cache would have cost, in USD.",
            ["model", "team"],
        )
        self.guardrail_actions = c(
            "modelway_guardrail_actions_total",
            "Guardrail actions taken, by guardrail and action (block, redact, flag, ...).",
            ["guardrail", "action"],
        )
        self.rate_limited = c(
            "modelway_rate_limit_rejections_total",
            "Requests refused by a rate limit, by scope (key, team) and limit (rpm, tpm,"
            " parallel).",
            ["scope", "limit"],
        )
        self.budget_rejected = c(
            "modelway_budget_rejections_total",
            "Requests refused because a hard budget is spent, by scope (key, team, global).",
            ["scope"],
        )
        self.breaker_transitions = c(
            "modelway_circuit_breaker_transitions_total",
            "Circuit breaker state changes, by deployment and new state.",
            ["deployment", "state"],
        )
        # Tokens and cost
        self.tokens = c(
            "modelway_tokens_total",
            "Tokens, by model group, team and type (input, output, cached_input).",
            ["model", "team", "type"],
        )
        self.cost = c(
            "modelway_cost_usd_total",
            "Cost in US dollars, by model group and team.",
            ["model", "team"],
        )
        # Latency
        self.duration = h(
            "modelway_request_duration_seconds",
            "End-to-end time of a request in the gateway (to the last byte for streams).",
            ["model", "operation", "stream"],
            buckets=LATENCY_BUCKETS,
        )
        self.ttft = h(
            "modelway_time_to_first_token_seconds",
            "Streams: time from the request to its first token.",
            ["model"],
            buckets=LATENCY_BUCKETS,
        )
        self.tpot = h(
            "modelway_time_per_output_token_seconds",
            "Streams: time per output token after the first.",
            ["model"],
            buckets=TOKEN_TIME_BUCKETS,
        )
        self.upstream = h(
            "modelway_upstream_duration_seconds",
            "Time spent in the provider call, per deployment.",
            ["model", "deployment", "provider"],
            buckets=LATENCY_BUCKETS,
        )
        self.overhead = h(
            "modelway_gateway_overhead_seconds",
            "End-to-end time minus upstream time: what the gateway itself added.",
            ["model"],
            buckets=OVERHEAD_BUCKETS,
        )
        self.queue_wait = h(
            "modelway_queue_wait_seconds",
            "Time requests waited in a model group's queue for a deployment with room.",
            ["model"],
            buckets=OVERHEAD_BUCKETS,
        )
        # State, sampled every second
        self.in_flight = g(
            "modelway_deployment_in_flight_requests",
            "Requests in flight per deployment.",
            ["model", "deployment"],
            **live,
        )
        self.queue_depth = g(
            "modelway_queue_depth", "Requests waiting in a model group's queue.", ["model"], **live
        )
        self.breaker_state = g(
            "modelway_circuit_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            ["model", "deployment"],
            **latest,
        )
        self.budget_remaining = g(
            "modelway_budget_remaining_usd",
            "What is left of a team's (or the global) budget in its current period.",
            ["team", "period"],
            **latest,
        )
        self.engine_running = g(
            "modelway_engine_running_sequences",
            "Embedded engine: sequences being decoded.",
            ["deployment"],
            **live,
        )
        self.engine_waiting = g(
            "modelway_engine_waiting_requests",
            "Embedded engine: requests waiting for a slot.",
            ["deployment"],
            **live,
        )
        self.engine_kv_usage = g(
            "modelway_engine_kv_cache_usage_ratio",
            "Embedded engine: share of the KV cache in use (0 to 1).",
            ["deployment"],
            **latest,
        )
        self.engine_tokens_per_second = g(
            "modelway_engine_generated_tokens_per_second",
            "Embedded engine: tokens generated per second, over the last few seconds.",
            ["deployment"],
            **live,
        )
        self.info = g(
            "modelway_build_info", "Always 1; the version in a label.", ["version"], **latest
        )
        if not self.multiprocess:
            ProcessCollector(registry=r)

    def collect_registry(self) -> CollectorRegistry:
        """The registry a scrape reads: in multiprocess mode, every worker's values."""
        if not self.multiprocess:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        ProcessCollector(registry=merged)
        return merged


def _factory(kind: Any, registry: CollectorRegistry) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        return kind(*args, registry=registry, **kwargs)

    return make
