"""Shifts traffic back from a canary that does worse than the stable deployments.

A canary is held out of its group for ``hold_seconds`` once, over at least
``minimum_requests`` in its breaker's window, its failure rate exceeds the stable
deployments' by ``error_rate_margin``, or its latency exceeds theirs ``latency_ratio``
times. While held, it is used only if no stable deployment is usable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modelway.config import RolloutGuardConfig
from modelway.observability.logging import get_logger

if TYPE_CHECKING:
    from modelway.routing.router import DeploymentRuntime

_log = get_logger("modelway.routing")


class RolloutGuard:
    def __init__(
        self, group: str, config: RolloutGuardConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.group = group
        self.config = config
        self._clock = clock
        self._held_until: dict[str, float] = {}

    def held(self, deployments: Sequence[DeploymentRuntime]) -> set[str]:
        """The ids of canaries held out of the group now."""
        now = self._clock()
        stable = [d for d in deployments if not d.canary and not d.shadow]
        held: set[str] = set()
        for canary in (d for d in deployments if d.canary):
            until = self._held_until.get(canary.id, 0.0)
            if until > now or self._worse(canary, stable):
                held.add(canary.id)
        return held

    def _worse(self, canary: DeploymentRuntime, stable: list[DeploymentRuntime]) -> bool:
        requests, rate = _window(canary)
        if requests < self.config.minimum_requests or not stable:
            return False
        stable_requests = sum(_window(d)[0] for d in stable)
        stable_failures = sum(_window(d)[0] * _window(d)[1] for d in stable)
        stable_rate = stable_failures / stable_requests if stable_requests else 0.0
        stable_latency = sum(d.stats.latency() for d in stable) / len(stable)
        latency = canary.stats.latency()
        reason = None
        if rate > stable_rate + self.config.error_rate_margin:
            reason = f"failure rate {rate:.2f} against {stable_rate:.2f}"
        elif stable_latency > 0 and latency > self.config.latency_ratio * stable_latency:
            reason = f"latency {latency * 1000:.0f} ms against {stable_latency * 1000:.0f} ms"
        if reason is None:
            return False
        self._held_until[canary.id] = self._clock() + self.config.hold_seconds
        _log.warning(
            "rollout_guard",
            group=self.group,
            deployment=canary.id,
            reason=reason,
            hold_seconds=self.config.hold_seconds,
        )
        return True


def _window(dep: DeploymentRuntime) -> tuple[int, float]:
    snapshot = dep.breaker.snapshot()
    requests = snapshot["requests"]
    rate = snapshot["failure_rate"]
    assert isinstance(requests, int) and isinstance(rate, float)
    return requests, rate
