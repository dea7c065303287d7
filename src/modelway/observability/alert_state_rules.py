"""The alert rules over the gateway's current state, read through callables on each
evaluation: queues, KV caches, process memory, deployments."""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping

from modelway.config_alerts import (
    DeploymentDownAlertConfig,
    KVCacheAlertConfig,
    MemoryAlertConfig,
    QueueAlertConfig,
)
from modelway.observability.alert_rules import Verdict, firing
from modelway.observability.alert_types import Alert, DeploymentState, EngineState, QueueState


class QueueRule:
    name = "queue"

    def __init__(self, config: QueueAlertConfig, queues: Callable[[], Iterable[QueueState]]):
        self.config = config
        self._queues = queues

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        for queue in self._queues():
            if queue.size <= 0:
                continue
            key = f"{self.name}:{queue.model}"
            value = queue.depth / queue.size
            summary = f"{queue.model}: {queue.depth} of {queue.size} queue places taken"
            threshold = self.config.depth_ratio
            yield Verdict(
                key,
                self.name,
                self.config.severity,
                {"model": queue.model},
                summary,
                value,
                threshold,
                firing(key, value, threshold, active),
            )


class KVCacheRule:
    name = "kv_cache"

    def __init__(self, config: KVCacheAlertConfig, engines: Callable[[], Iterable[EngineState]]):
        self.config = config
        self._engines = engines

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        for engine in self._engines():
            key = f"{self.name}:{engine.deployment}"
            summary = f"{engine.deployment}: KV cache {engine.kv_usage:.0%} full"
            threshold = self.config.usage
            yield Verdict(
                key,
                self.name,
                self.config.severity,
                {"deployment": engine.deployment},
                summary,
                engine.kv_usage,
                threshold,
                firing(key, engine.kv_usage, threshold, active),
            )


def read_rss() -> int | None:
    """The process's resident memory in bytes (the peak, where /proc is missing)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB else


class MemoryRule:
    name = "memory"

    def __init__(self, config: MemoryAlertConfig, rss: Callable[[], int | None]) -> None:
        assert config.max_rss_bytes is not None
        self.config = config
        self._limit = config.max_rss_bytes
        self._rss = rss

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        rss = self._rss()
        if rss is None:
            return
        key = f"{self.name}:process"
        summary = f"resident memory {rss / 2**20:.0f} MiB, limit {self._limit / 2**20:.0f} MiB"
        yield Verdict(
            key,
            self.name,
            self.config.severity,
            {},
            summary,
            float(rss),
            float(self._limit),
            firing(key, rss, self._limit, active),
        )


class DeploymentDownRule:
    name = "deployment_down"

    def __init__(
        self,
        config: DeploymentDownAlertConfig,
        deployments: Callable[[], Iterable[DeploymentState]],
    ) -> None:
        self.config = config
        self._deployments = deployments

    def __call__(self, now: float, active: Mapping[str, Alert]) -> Iterator[Verdict]:
        cfg = self.config
        for dep in self._deployments():
            key = f"{self.name}:{dep.deployment}"
            reasons = []
            # Half-open is still down, for an alert already firing: it is only probing.
            breaker_down = ("open", "half_open") if key in active else ("open",)
            if cfg.on_breaker_open and dep.breaker_state in breaker_down:
                reasons.append(f"circuit breaker {dep.breaker_state.replace('_', '-')}")
            if cfg.on_failed_health and dep.healthy is False:
                reasons.append("health probes failing")
            state = f"down: {', '.join(reasons)}" if reasons else "up"
            summary = f"deployment {dep.deployment} of {dep.model} is {state}"
            yield Verdict(
                key,
                self.name,
                cfg.severity,
                {"model": dep.model, "deployment": dep.deployment},
                summary,
                1.0 if reasons else 0.0,
                1.0,
                bool(reasons),
            )
