"""Gauges of live state (in flight, queue depth, circuits, the embedded engines), sampled
once a second off the request path rather than updated on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from modelway.observability.metrics import BREAKER_STATES, Metrics


@dataclass(frozen=True, slots=True)
class DeploymentView:
    model: str
    deployment: str
    in_flight: int
    breaker: str  # closed, half_open, open
    engine: dict[str, Any] | None  # the embedded engine's stats, if it is one


@dataclass(frozen=True, slots=True)
class QueueView:
    model: str
    depth: int
    size: int


class RuntimeGauges:
    def __init__(
        self,
        metrics: Metrics,
        deployments: Callable[[], Iterable[DeploymentView]],
        queues: Callable[[], Iterable[QueueView]],
    ) -> None:
        self._m = metrics
        self._deployments = deployments
        self._queues = queues
        self._generated: dict[str, tuple[float, int]] = {}  # engine: (when, tokens so far)

    def sample(self, now: float) -> None:
        m = self._m
        for dep in self._deployments():
            m.in_flight.labels(dep.model, dep.deployment).set(dep.in_flight)
            m.breaker_state.labels(dep.model, dep.deployment).set(BREAKER_STATES[dep.breaker])
            stats = dep.engine
            if stats is None or not stats.get("loaded"):
                continue
            m.engine_running.labels(dep.deployment).set(stats["running"])
            m.engine_waiting.labels(dep.deployment).set(stats["queue_depth"])
            total = stats["kv_cells_total"] or 1
            m.engine_kv_usage.labels(dep.deployment).set(stats["kv_cells_used"] / total)
            generated = stats["generated_tokens"]
            before = self._generated.get(dep.deployment)
            if before is not None and now - before[0] < 0.5:
                continue  # a scrape just after a sample: the rate keeps its last interval
            if before is not None:
                rate = (generated - before[1]) / (now - before[0])
                m.engine_tokens_per_second.labels(dep.deployment).set(rate)
            self._generated[dep.deployment] = (now, generated)
        for queue in self._queues():
            m.queue_depth.labels(queue.model).set(queue.depth)

    async def run(self, every: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.sample(loop.time())
            await asyncio.sleep(every)
