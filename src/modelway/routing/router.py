"""Model groups and their deployments, with each deployment's breaker and live figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from modelway.config import BreakerConfig, RoutingConfig
from modelway.protocol.errors import ModelNotFound
from modelway.providers.base import Provider
from modelway.routing.admission import AdmissionQueue
from modelway.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker
from modelway.routing.limits import DeploymentLimits
from modelway.routing.rollout_guard import RolloutGuard
from modelway.routing.strategies import DeploymentStats, Strategy, make_strategy, with_affinity

PRIVATE_TAG = "private"  # infrastructure the organisation controls


@dataclass(eq=False)
class DeploymentRuntime:
    id: str
    group: str
    provider: Provider
    upstream_model: str
    breaker: CircuitBreaker
    weight: float = 1.0
    tags: Sequence[str] = ()
    priority: int = 0
    cost_per_million: float | None = None
    stats: DeploymentStats = field(default_factory=DeploymentStats)
    limits: DeploymentLimits = field(default_factory=DeploymentLimits)
    first_token_timeout: float | None = None
    health_check_seconds: float | None = None
    shadow: bool = False
    canary: bool = False


@dataclass(eq=False)
class ModelGroupRuntime:
    name: str
    deployments: list[DeploymentRuntime]
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    strategy: Strategy = field(init=False)
    queue: AdmissionQueue = field(init=False)
    _limited: bool = field(init=False)
    guard: RolloutGuard | None = field(init=False)

    def __post_init__(self) -> None:
        strategy = make_strategy(self.routing.strategy)
        self.strategy = with_affinity(strategy) if self.routing.affinity else strategy
        self._limited = any(d.limits.limited for d in self.deployments)
        guard = self.routing.rollout_guard
        self.guard = RolloutGuard(self.name, guard) if guard is not None else None
        self.queue = AdmissionQueue(
            self.name,
            size=self.routing.queue_size,
            timeout_seconds=self.routing.queue_timeout_seconds,
        )

    @property
    def limited(self) -> bool:
        """Does any deployment carry limits (so requests may have to wait)?"""
        return self._limited

    def candidates(self, key: str | None, *, private_only: bool) -> list[DeploymentRuntime]:
        """Deployments whose circuit is not open, best first for this request; with
        ``private_only``, only those tagged ``private``."""
        usable = [
            d
            for d in self.deployments
            if not d.shadow and _usable(d) and (not private_only or PRIVATE_TAG in d.tags)
        ]
        held = self.guard.held(self.deployments) if self.guard is not None else set()
        trusted = [d for d in usable if d.id not in held]
        if held and trusted:
            return self.strategy.order(trusted, key) + [d for d in usable if d.id in held]
        return self.strategy.order(usable, key)

    @property
    def shadows(self) -> list[DeploymentRuntime]:
        return [d for d in self.deployments if d.shadow]


def _usable(dep: DeploymentRuntime) -> bool:
    return dep.breaker.state is not BreakerState.OPEN


def breaker_settings(config: BreakerConfig) -> BreakerSettings:
    return BreakerSettings(**config.model_dump())


class Router:
    def __init__(self, groups: Sequence[ModelGroupRuntime]) -> None:
        self.groups = {g.name: g for g in groups}

    def group(self, name: str) -> ModelGroupRuntime:
        group = self.groups.get(name)
        if group is None:
            raise ModelNotFound(
                f"the model '{name}' does not exist on this gateway; "
                f"GET /v1/models lists the models it serves",
                param="model",
            )
        return group
