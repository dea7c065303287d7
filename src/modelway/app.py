"""Build the running gateway from a config: providers, router, and the one stage list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelway import __version__
from modelway.app_admission import admission_stage
from modelway.app_cache import response_cache
from modelway.cache.runtime import ResponseCache
from modelway.config import (
    AnthropicDeployment,
    Config,
    Deployment,
    EmbeddingDeployment,
    LocalDeployment,
    OpenAIDeployment,
)
from modelway.guardrails.runtime import Guardrails
from modelway.observability.alerts import (
    AlertEngine,
    DeploymentState,
    EngineState,
    QueueState,
)
from modelway.observability.logging import get_logger
from modelway.observability.metrics import Metrics
from modelway.observability.request_metrics import RequestMetrics
from modelway.observability.runtime_gauges import DeploymentView, QueueView, RuntimeGauges
from modelway.observability.tracing import Tracing
from modelway.pipeline.authenticate import Authenticate
from modelway.pipeline.cache_stage import CacheStage
from modelway.pipeline.content_log import ContentLog
from modelway.pipeline.context import RequestContext, Result
from modelway.pipeline.data_class import DataClassification
from modelway.pipeline.input_guard import InputGuard
from modelway.pipeline.observe import InFlight, Observe
from modelway.pipeline.output_guard import OutputGuard
from modelway.pipeline.stage import Next, Stage, build_chain
from modelway.pipeline.trace import Trace
from modelway.protocol.openai_models import ModelCard, ModelList
from modelway.providers.anthropic import AnthropicProvider
from modelway.providers.base import Provider
from modelway.providers.local import LocalProvider
from modelway.providers.local_embedding import LocalEmbeddingProvider
from modelway.providers.openai_compat import OpenAIProvider
from modelway.routing.breaker import BreakerState, CircuitBreaker
from modelway.routing.dispatch import Dispatch
from modelway.routing.limits import DeploymentLimits
from modelway.routing.probes import probe_forever
from modelway.routing.router import (
    DeploymentRuntime,
    ModelGroupRuntime,
    Router,
    breaker_settings,
)
from modelway.services import Services

ProviderFactory = Callable[[Any, str, str], Provider]

PROVIDERS: dict[type[Any], ProviderFactory] = {
    OpenAIDeployment: lambda dep, name, group: OpenAIProvider(dep, name),
    AnthropicDeployment: lambda dep, name, group: AnthropicProvider(dep, name),
    LocalDeployment: lambda dep, name, group: LocalProvider(dep, name, served_name=group),
    EmbeddingDeployment: lambda dep, name, group: LocalEmbeddingProvider(
        dep, name, served_name=group
    ),
}


def build_stages(
    config: Config,
    services: Services,
    router: Router,
    metrics: RequestMetrics,
    tracing: Tracing,
    alerts: AlertEngine | None,
    guard: Guardrails | None,
    cache: ResponseCache | None = None,
    clock: Callable[[], float] = time.time,
    inflight: InFlight | None = None,
    version: str | None = None,
) -> list[Stage]:
    """The request path, outermost first. A disabled feature is simply not listed."""
    listeners = (_alert_recorder(alerts, router),) if alerts is not None else ()
    observe = Observe(
        get_logger("modelway.request"),
        metrics,
        sample_success=config.logging.sample_success,
        listeners=listeners,
        inflight=inflight,
        config_version=version,
    )
    stages: list[Stage] = [observe]
    if config.logging.log_content:
        stages.append(ContentLog())
    if tracing.enabled:
        stages.append(Trace(tracing))
    if services.master_key is not None:
        stages.append(Authenticate(services.keys))
    stages.append(DataClassification())
    if guard is not None:
        stages.append(InputGuard(guard.policy_for, guard.detectors, guard.count))
    budget_listener = alerts.record_budget if alerts is not None else None
    stages.append(admission_stage(config, services, router, metrics, budget_listener, clock))
    if cache is not None:
        stages.append(CacheStage(cache, guard.policy_name if guard is not None else None))
    if guard is not None:
        stages.append(OutputGuard(guard.policy_for, guard.detectors, guard.count))
    return stages


def _alert_recorder(alerts: AlertEngine, router: Router) -> Callable[[RequestContext, float], None]:
    def record(ctx: RequestContext, latency: float) -> None:
        if ctx.model not in router.groups:
            return  # an unknown model name: nothing to judge
        t = ctx.timings
        alerts.record_request(
            ctx.model,
            ctx.status < 500,  # a client's own mistakes (4xx) are not the group's errors
            latency,
            t.first_token - t.start if ctx.stream and t.first_token is not None else None,
            ctx.principal.team_id if ctx.principal is not None else None,
            (ctx.cost_nano_usd or 0) / 1e9,
        )

    return record


@dataclass
class Runtime:
    config: Config
    router: Router
    services: Services
    metrics: Metrics
    request_metrics: RequestMetrics
    tracing: Tracing
    alerts: AlertEngine | None
    guardrails: Guardrails | None
    cache: ResponseCache | None
    stages: Sequence[Stage]
    inflight: InFlight = field(default_factory=InFlight)
    version: str = "default"  # the config's content hash (config_versions.py)
    created: int = field(default_factory=lambda: int(time.time()))
    _dispatch: Dispatch = field(init=False)
    _chain: Next = field(init=False)
    _health: dict[str, tuple[float, bool]] = field(default_factory=dict, init=False)
    _probes: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _gauges: RuntimeGauges | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        shared = self.services.counters if self.config.redis_url is not None else None
        self._dispatch = Dispatch(self.router, self.request_metrics, shared, self.tracing)
        if self.tracing.enabled:
            for dep in self.deployments:
                dep.provider.propagate_with(self.tracing.inject)
        self._chain = build_chain(self.stages, self._dispatch)

    @property
    def deployments(self) -> list[DeploymentRuntime]:
        return [d for g in self.router.groups.values() for d in g.deployments]

    async def handle(self, ctx: RequestContext) -> Result:
        return await self._chain(ctx)

    async def start(self) -> None:
        await self.services.start()
        await asyncio.gather(*(d.provider.start() for d in self.deployments))
        self._probes = [
            asyncio.create_task(probe_forever(d, d.health_check_seconds))
            for d in self.deployments
            if d.health_check_seconds is not None
        ]
        if self.cache is not None:
            await self.cache.start()
        self._gauges = RuntimeGauges(self.metrics, self._deployment_views, self._queue_views)
        self._probes.append(asyncio.create_task(self._gauges.run()))
        if self.alerts is not None:
            self.alerts.start()

    async def close(self) -> None:
        for probe in self._probes:
            probe.cancel()
        for stage in self.stages:  # their background work may still need the providers
            if isinstance(stage, CacheStage):
                await stage.close()
        await self._dispatch.shadows.close()
        await asyncio.gather(
            *(d.provider.close() for d in self.deployments), return_exceptions=True
        )
        if self.cache is not None:
            await self.cache.close()
        await self.services.close()
        await self.tracing.close()
        if self.alerts is not None:
            await self.alerts.close()

    def sample_gauges(self) -> None:
        """Set the state gauges (in flight, queues, breakers, engines) to their values now:
        a scrape sees the present, not the last background sample."""
        if self._gauges is not None:
            self._gauges.sample(asyncio.get_running_loop().time())

    def _deployment_views(self) -> list[DeploymentView]:
        return [
            DeploymentView(
                d.group, d.id, d.stats.in_flight, d.breaker.state.value, d.provider.stats()
            )
            for d in self.deployments
        ]

    def _deployment_states(self) -> list[DeploymentState]:
        states = []
        for d in self.deployments:
            probed = self._health.get(d.id)
            healthy = probed[1] if probed is not None else None
            states.append(DeploymentState(d.group, d.id, d.breaker.state.value, healthy))
        return states

    def _queue_states(self) -> list[QueueState]:
        return [QueueState(n, g.queue.depth, g.queue.size) for n, g in self.router.groups.items()]

    def _engine_states(self) -> list[EngineState]:
        states = []
        for d in self.deployments:
            stats = d.provider.stats()
            if stats and stats.get("loaded") and stats["kv_cells_total"]:
                states.append(EngineState(d.id, stats["kv_cells_used"] / stats["kv_cells_total"]))
        return states

    def _queue_views(self) -> list[QueueView]:
        return [
            QueueView(name, g.queue.depth, g.queue.size) for name, g in self.router.groups.items()
        ]

    def models(self) -> ModelList:
        return ModelList(
            object="list",
            data=[
                ModelCard(id=name, object="model", created=self.created, owned_by="modelway")
                for name in self.router.groups
            ],
        )

    def engine_stats(self) -> dict[str, dict[str, Any]]:
        """Per deployment served by an in-process engine, its live figures."""
        found = ((d.id, d.provider.stats()) for d in self.deployments)
        return {dep_id: stats for dep_id, stats in found if stats is not None}

    async def readiness(self) -> dict[str, bool]:
        """Per model group: is at least one of its deployments answering (or loaded) with
        its circuit not open?"""
        checks = await asyncio.gather(*(self._healthy(d) for d in self.deployments))
        status: dict[str, bool] = {name: False for name in self.router.groups}
        for dep, ok in zip(self.deployments, checks, strict=True):
            status[dep.group] = status[dep.group] or ok
        return status

    async def _healthy(self, dep: DeploymentRuntime) -> bool:
        if dep.breaker.state is BreakerState.OPEN:
            return False
        now = time.monotonic()
        cached = self._health.get(dep.id)
        if cached is not None and now - cached[0] < self.config.server.health_cache_seconds:
            return cached[1]
        ok = await dep.provider.health()
        self._health[dep.id] = (now, ok)
        return ok


def build_runtime(
    config: Config,
    clock: Callable[[], float] = time.time,
    *,
    previous: Runtime | None = None,
    version: str = "default",
) -> Runtime:
    """``clock`` (epoch seconds) times limits and budget periods; tests move it. A runtime
    built to replace ``previous`` (a reload) keeps its metrics (counters do not reset)
    and, when neither uses Redis, its in-memory limit and budget counters."""
    metrics = previous.metrics if previous is not None else Metrics()
    metrics.info.labels(__version__).set(1)
    if previous is not None:
        metrics.config_info.labels(previous.version).set(0)
    metrics.config_info.labels(version).set(1)
    recorder = RequestMetrics(metrics)

    def breaker_changed(name: str, old: BreakerState, new: BreakerState) -> None:
        get_logger("modelway.routing").warning(
            "circuit_breaker", deployment=name, old=old.value, new=new.value
        )
        recorder.breaker_changed(name, new.value)

    groups: dict[str, list[DeploymentRuntime]] = {g.name: [] for g in config.models}
    for group, dep_id, dep in config.deployment_ids():
        breaker = CircuitBreaker(
            dep_id, breaker_settings(group.routing.breaker), on_change=breaker_changed
        )
        groups[group.name].append(_deployment(group.name, dep_id, dep, breaker))
    routing = {g.name: g.routing for g in config.models}
    router = Router([ModelGroupRuntime(name, deps, routing[name]) for name, deps in groups.items()])
    carried = (
        previous.services.counters
        if previous is not None and previous.config.redis_url is None and config.redis_url is None
        else None
    )
    services = Services.build(config, counters=carried)
    tracing = Tracing.from_config(config.tracing)
    alerts = AlertEngine(config.alerts) if config.alerts.enabled else None
    guard = Guardrails.build(config, recorder) if config.guardrails is not None else None
    cache = response_cache(config, router, lambda: runtime._dispatch)
    inflight = InFlight()
    runtime = Runtime(
        config=config,
        router=router,
        services=services,
        metrics=metrics,
        request_metrics=recorder,
        tracing=tracing,
        alerts=alerts,
        guardrails=guard,
        cache=cache,
        stages=build_stages(
            config,
            services,
            router,
            recorder,
            tracing,
            alerts,
            guard,
            cache,
            clock,
            inflight,
            version,
        ),
        inflight=inflight,
        version=version,
    )
    if alerts is not None:
        alerts.watch(
            deployments=runtime._deployment_states,
            queues=runtime._queue_states,
            engines=runtime._engine_states,
        )
    return runtime


def _deployment(
    group: str, dep_id: str, dep: Deployment, breaker: CircuitBreaker
) -> DeploymentRuntime:
    provider = PROVIDERS[type(dep)](dep, dep_id, group)
    # A local engine bounds itself (slots and queue); HTTP deployments by their limits.
    limits = (
        DeploymentLimits()
        if isinstance(dep, LocalDeployment | EmbeddingDeployment)
        else DeploymentLimits(max_parallel=dep.max_parallel, rpm=dep.rpm, tpm=dep.tpm)
    )
    return DeploymentRuntime(
        breaker=breaker,
        limits=limits,
        first_token_timeout=getattr(dep, "first_token_timeout_seconds", None),
        health_check_seconds=dep.health_check_seconds,
        shadow=dep.shadow,
        canary=dep.canary,
        id=dep_id,
        group=group,
        provider=provider,
        upstream_model=dep.model or group,
        weight=dep.weight,
        tags=tuple(dep.tags),
        priority=dep.priority,
        cost_per_million=dep.cost_per_million,
    )
