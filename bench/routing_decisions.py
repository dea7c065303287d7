"""The cost of one routing decision: µs per `order` call for each strategy, 5 candidates.

Candidates have different weights, costs, priorities, latency estimates and requests in
flight, so no strategy takes a shortcut. Affinity-wrapped variants get a fresh key on every
call (the hash is computed per call, never cached).

    .venv/bin/python bench/routing_decisions.py [-n 100000]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field

from modelway.routing.strategies import (
    STRATEGY_NAMES,
    DeploymentStats,
    Strategy,
    make_strategy,
    with_affinity,
)


@dataclass(eq=False)
class Deployment:
    id: str
    weight: float
    cost_per_million: float | None
    priority: int
    stats: DeploymentStats = field(default_factory=DeploymentStats)


def candidates() -> list[Deployment]:
    deps = [
        Deployment("openai-east", 3.0, 2.5, 0),
        Deployment("openai-west", 1.0, 2.5, 0),
        Deployment("azure", 2.0, 2.0, 1),
        Deployment("vllm-a", 1.0, None, 1),
        Deployment("vllm-b", 0.5, 0.4, 2),
    ]
    for i, dep in enumerate(deps):
        for _ in range(i % 3):
            dep.stats.start()
        dep.stats.observe_latency(0.2 + 0.15 * i)
    return deps


def time_per_call(strategy: Strategy, n: int, affinity: bool) -> float:
    deps = candidates()
    keys = [f"session-{i}" for i in range(n)] if affinity else [None] * n
    order = strategy.order
    started = time.perf_counter()
    for key in keys:
        order(deps, key)
    return (time.perf_counter() - started) / n * 1e6


def bench_decisions(n: int = 100_000) -> dict[str, float]:
    """µs per decision, by strategy name (``+affinity`` for the wrapped ones)."""
    figures: dict[str, float] = {}
    for name in STRATEGY_NAMES:
        figures[name] = time_per_call(make_strategy(name, rng=random.Random(0)), n, False)
    for name in ("weighted", "latency"):
        wrapped = with_affinity(make_strategy(name, rng=random.Random(0)))
        figures[f"{name}+affinity"] = time_per_call(wrapped, n, True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="decisions per strategy")
    args = parser.parse_args()
    for name, micros in bench_decisions(args.n).items():
        print(f"{name:<20} {micros:6.2f} µs/decision")


if __name__ == "__main__":
    main()
