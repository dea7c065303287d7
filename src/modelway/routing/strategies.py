"""Load-balancing strategies: the order in which a model group's usable deployments are tried.

Every strategy returns a permutation of the candidates it is given: the first is the
preferred one, the rest are for retries on another deployment. A candidate whose weight is
not positive never comes first unless every candidate's weight is (then all count as equal).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from modelway.routing.latency import DeploymentStats

__all__ = [
    "STRATEGY_NAMES",
    "Candidate",
    "DeploymentStats",
    "Strategy",
    "make_strategy",
    "with_affinity",
]

STRATEGY_NAMES: tuple[str, ...] = (
    "weighted",
    "round_robin",
    "least_in_flight",
    "latency",
    "lowest_cost",
    "priority",
)


class Candidate(Protocol):
    """What a strategy sees of a deployment."""

    @property
    def id(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def stats(self) -> DeploymentStats: ...
    @property
    def cost_per_million(self) -> float | None: ...
    @property
    def priority(self) -> int: ...


C = TypeVar("C", bound=Candidate)


class Strategy(Protocol):
    def order(self, candidates: Sequence[C], key: str | None) -> list[C]:
        """All of ``candidates``, preferred first. ``key`` is a session/affinity key or None."""
        ...


def _weights(candidates: Sequence[Candidate]) -> list[float]:
    """Weights with the non-positive (and NaN) ones at 0; all 1 when none is positive."""
    weights = [w if w > 0 else 0.0 for w in (c.weight for c in candidates)]
    return weights if any(weights) else [1.0] * len(weights)


class _Ranked:
    """Ascending by ``rank``; ties broken weighted-randomly, zero weights last.

    The tie-break is an exponential race (each candidate draws Exp(weight), smallest first):
    among tied candidates, each comes first with probability weight / total weight.
    """

    def __init__(self, rank: Callable[[Candidate, float], float], rng: random.Random) -> None:
        self._rank = rank
        self._rng = rng

    def order(self, candidates: Sequence[C], key: str | None) -> list[C]:
        if len(candidates) <= 1:
            return list(candidates)
        expo = self._rng.expovariate
        rank = self._rank
        keyed = [
            ((0, rank(c, w), expo(w)) if w > 0 else (1, 0.0, 0.0), i)
            for i, (c, w) in enumerate(zip(candidates, _weights(candidates), strict=True))
        ]
        keyed.sort()
        return [candidates[i] for _, i in keyed]


def _weighted_rank(candidate: Candidate, weight: float) -> float:
    return 0.0


def _in_flight_rank(candidate: Candidate, weight: float) -> float:
    return candidate.stats.in_flight / weight


def _cost_rank(candidate: Candidate, weight: float) -> float:
    cost = candidate.cost_per_million
    return math.inf if cost is None else cost


def _priority_rank(candidate: Candidate, weight: float) -> float:
    return float(candidate.priority)


class _SmoothRoundRobin:
    """Weighted round robin that interleaves (nginx's smooth variant): weights 2:1 give
    A B A A B A, equal weights cycle. State is kept per deployment id, so candidates may come
    and go between calls."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def order(self, candidates: Sequence[C], key: str | None) -> list[C]:
        if len(candidates) <= 1:
            return list(candidates)
        weights = _weights(candidates)
        current = self._current
        for c, w in zip(candidates, weights, strict=True):
            current[c.id] = current.get(c.id, 0.0) + w
        ranked = sorted(
            range(len(candidates)),
            key=lambda i: (weights[i] <= 0, -current[candidates[i].id]),
        )
        current[candidates[ranked[0]].id] -= sum(weights)
        return [candidates[i] for i in ranked]


def _draw(weights: list[float], total: float, rng: random.Random, skip: int) -> int:
    """Index drawn with probability weight / total, never ``skip``; -1 if nothing is left."""
    r = rng.random() * total
    last = -1
    for i, w in enumerate(weights):
        if i == skip or w <= 0:
            continue
        last = i
        r -= w
        if r < 0:
            return i
    return last  # float round-off


class _PeakEwmaP2C:
    """Power of two choices on peak-EWMA latency: draw two distinct candidates by weight and
    prefer the lower latency * (in_flight + 1); the rest follow by that same score."""

    def __init__(self, rng: random.Random, clock: Callable[[], float]) -> None:
        self._rng = rng
        self._clock = clock

    def order(self, candidates: Sequence[C], key: str | None) -> list[C]:
        n = len(candidates)
        if n <= 1:
            return list(candidates)
        now = self._clock()
        weights = _weights(candidates)
        latency = [c.stats.latency(now) for c in candidates]
        load = [c.stats.in_flight + 1 for c in candidates]
        total = sum(weights)
        a = _draw(weights, total, self._rng, -1)
        b = _draw(weights, total - weights[a], self._rng, a) if total > weights[a] else -1
        first = a
        if b >= 0:
            # Without an estimate yet (0), a candidate is tried while idle; once it has
            # requests in flight it borrows its rival's, so the two compare on load instead
            # of the new one taking everything until its first answer.
            la = latency[a] if latency[a] or load[a] == 1 else latency[b]
            lb = latency[b] if latency[b] or load[b] == 1 else latency[a]
            if (lb * load[b], load[b]) < (la * load[a], load[a]):
                first = b
        rest = sorted(
            (i for i in range(n) if i != first),
            key=lambda i: (weights[i] <= 0, latency[i] * load[i]),
        )
        return [candidates[first], *(candidates[i] for i in rest)]


class _Affinity:
    """Sends a key to the candidate that weighted rendezvous hashing picks for it, while that
    candidate is present; the rest follow in the wrapped strategy's order."""

    def __init__(self, inner: Strategy) -> None:
        self._inner = inner

    def order(self, candidates: Sequence[C], key: str | None) -> list[C]:
        ordered = self._inner.order(candidates, key)
        if key is None or len(ordered) <= 1:
            return ordered
        home = _rendezvous(candidates, key)
        if ordered[0] is home:
            return ordered
        return [home, *(c for c in ordered if c is not home)]


def _rendezvous(candidates: Sequence[C], key: str) -> C:
    """The candidate with the smallest Exp(weight) drawn from hash(key, id): each wins with
    probability weight / total, and removing one moves only the keys it had won."""
    raw = key.encode()
    seed = hashlib.blake2b(len(raw).to_bytes(4, "big") + raw, digest_size=8)
    best, best_score = candidates[0], math.inf
    for c, w in zip(candidates, _weights(candidates), strict=True):
        if w <= 0:
            continue
        h = seed.copy()
        h.update(c.id.encode())
        u = (int.from_bytes(h.digest(), "big") >> 11) * 2.0**-53  # uniform in [0, 1)
        score = -math.log1p(-u) / w
        if score < best_score:
            best, best_score = c, score
    return best


def with_affinity(strategy: Strategy) -> Strategy:
    return _Affinity(strategy)


def make_strategy(
    name: str,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Strategy:
    """The strategy called ``name`` (one of STRATEGY_NAMES). ``clock`` is what the latency
    strategy reads the estimates at; it must match the one the stats are fed with."""
    if rng is None:
        rng = random.Random()
    if name == "weighted":
        return _Ranked(_weighted_rank, rng)
    if name == "round_robin":
        return _SmoothRoundRobin()
    if name == "least_in_flight":
        return _Ranked(_in_flight_rank, rng)
    if name == "latency":
        return _PeakEwmaP2C(rng, clock)
    if name == "lowest_cost":
        return _Ranked(_cost_rank, rng)
    if name == "priority":
        return _Ranked(_priority_rank, rng)
    raise ValueError(
        f"unknown load-balancing strategy {name!r}; expected one of {', '.join(STRATEGY_NAMES)}"
    )
