"""Recording one finished request into the metrics, cheaply: label children are looked
up once per label set and kept (``labels()`` takes a lock and builds a key each call)."""

from __future__ import annotations

from typing import Any

from modelway.observability.metrics import Metrics
from modelway.pipeline.context import RequestContext


class RequestMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def record(self, ctx: RequestContext, latency: float) -> None:
        m, model = self._m, ctx.model
        team = (ctx.principal.team_id or "") if ctx.principal is not None else ""
        stream = "true" if ctx.stream else "false"
        status = ctx.status
        status_class = f"{status // 100}xx" if status != 499 else "499"
        self._child(m.requests, model, ctx.operation, status_class, stream, team).inc()
        self._child(m.duration, model, ctx.operation, stream).observe(latency)
        if ctx.error_type is not None:
            self._child(m.errors, model, ctx.error_type).inc()
        t = ctx.timings
        upstream = t.upstream_seconds()
        if upstream is not None and ctx.deployment is not None:
            provider = ctx.provider or ""
            self._child(m.upstream, model, ctx.deployment, provider).observe(upstream)
            self._child(m.overhead, model).observe(max(latency - upstream, 0.0))
        if t.queue_seconds:
            self._child(m.queue_wait, model).observe(t.queue_seconds)
        usage = ctx.usage
        if ctx.stream and t.first_token is not None:
            self._child(m.ttft, model).observe(t.first_token - t.start)
            if usage is not None and usage.completion_tokens > 1 and t.end is not None:
                per_token = (t.end - t.first_token) / (usage.completion_tokens - 1)
                self._child(m.tpot, model).observe(per_token)
        if usage is not None:
            self._child(m.tokens, model, team, "input").inc(usage.prompt_tokens)
            self._child(m.tokens, model, team, "output").inc(usage.completion_tokens)
            cached = ctx.cached_tokens
            if cached:
                self._child(m.tokens, model, team, "cached_input").inc(cached)
        if ctx.cost_nano_usd:
            self._child(m.cost, model, team).inc(ctx.cost_nano_usd / 1e9)
        if ctx.cache is not None:
            self._child(m.cache_lookups, model, ctx.cache.replace("-", "_")).inc()
            if ctx.saved_nano_usd:
                self._child(m.cache_saved, model, team).inc(ctx.saved_nano_usd / 1e9)

    def attempt(self, model: str, deployment: str, provider: str, outcome: str) -> None:
        self._child(self._m.attempts, model, deployment, provider, outcome).inc()

    def retry(self, model: str) -> None:
        self._child(self._m.retries, model).inc()

    def fallback(self, model: str, fallback: str) -> None:
        self._child(self._m.fallbacks, model, fallback).inc()

    def rate_limited(self, scope: str, limit: str) -> None:
        self._child(self._m.rate_limited, scope, limit).inc()

    def budget_rejected(self, scope: str) -> None:
        self._child(self._m.budget_rejected, scope).inc()

    def budget_remaining(self, team: str, period: str, usd: float) -> None:
        self._child(self._m.budget_remaining, team, period).set(usd)

    def guardrail_action(self, guardrail: str, action: str) -> None:
        self._child(self._m.guardrail_actions, guardrail, action).inc()

    def breaker_changed(self, deployment: str, state: str) -> None:
        self._child(self._m.breaker_transitions, deployment, state).inc()
