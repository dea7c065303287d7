import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from modelway.routing.strategies import (
    STRATEGY_NAMES,
    DeploymentStats,
    Strategy,
    make_strategy,
    with_affinity,
)


@dataclass(eq=False)
class Dep:
    id: str
    weight: float = 1.0
    cost_per_million: float | None = None
    priority: int = 0
    stats: DeploymentStats = field(default_factory=DeploymentStats)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def firsts(strategy: Strategy, deps: list[Dep], n: int, key: str | None = None) -> Counter[str]:
    return Counter(strategy.order(deps, key)[0].id for _ in range(n))


def deps(*ids: str) -> list[Dep]:
    return [Dep(i) for i in ids]


# --- every strategy ---------------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGY_NAMES)
@pytest.mark.parametrize("affinity", [False, True])
def test_order_is_always_a_permutation(name: str, affinity: bool) -> None:
    for seed in range(200):
        rng = random.Random(seed)
        strategy = make_strategy(name, rng=random.Random(seed))
        if affinity:
            strategy = with_affinity(strategy)
        candidates = [
            Dep(
                f"d{i}",
                weight=rng.choice([0.0, 0.5, 1.0, 3.0]),
                cost_per_million=rng.choice([None, 0.5, 2.0]),
                priority=rng.randint(0, 2),
            )
            for i in range(rng.randint(0, 7))
        ]
        for dep in candidates:
            for _ in range(rng.randint(0, 3)):
                dep.stats.start()
            if rng.random() < 0.7:
                dep.stats.observe_latency(rng.uniform(0.01, 2.0))
        for _ in range(5):
            key = rng.choice([None, "user-1", f"s{seed}"])
            ordered = strategy.order(candidates, key)
            assert sorted(map(id, ordered)) == sorted(map(id, candidates))


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_zero_weight_is_never_first_unless_nothing_else(name: str) -> None:
    strategy = make_strategy(name, rng=random.Random(1))
    idle, busy = Dep("idle", weight=0.0, cost_per_million=0.0, priority=-5), Dep("busy")
    busy.stats.start()
    busy.stats.observe_latency(5.0)
    assert firsts(strategy, [idle, busy], 200) == {"busy": 200}
    both_zero = [Dep("a", weight=0.0), Dep("b", weight=0.0)]
    assert set(firsts(strategy, both_zero, 200)) == {"a", "b"}


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"round_robin.*least_in_flight"):
        make_strategy("fastest")


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_empty_and_single(name: str) -> None:
    strategy = make_strategy(name)
    assert strategy.order([], "k") == []
    one = deps("a")
    assert strategy.order(one, None) == one


# --- the strategies one by one ----------------------------------------------------------


def test_weighted_follows_weights() -> None:
    strategy = make_strategy("weighted", rng=random.Random(7))
    a, b = Dep("a", weight=3.0), Dep("b", weight=1.0)
    counts = firsts(strategy, [a, b], 10_000)
    assert counts["a"] / 10_000 == pytest.approx(0.75, abs=0.02)


def test_weighted_retry_order_also_follows_weights() -> None:
    strategy = make_strategy("weighted", rng=random.Random(8))
    candidates = [Dep("a", weight=1.0), Dep("b", weight=2.0), Dep("c", weight=1.0)]
    seconds = Counter(strategy.order(candidates, None)[1].id for _ in range(10_000))
    # P(b second) = P(a first) * 2/3 + P(c first) * 2/3 = 1/3
    assert seconds["b"] / 10_000 == pytest.approx(1 / 3, abs=0.02)


def test_round_robin_cycles() -> None:
    strategy = make_strategy("round_robin")
    candidates = deps("a", "b", "c")
    assert [strategy.order(candidates, None)[0].id for _ in range(7)] == list("abcabca")
    assert [d.id for d in strategy.order(candidates, None)] == ["b", "c", "a"]


def test_round_robin_interleaves_weights_and_survives_a_candidate_leaving() -> None:
    strategy = make_strategy("round_robin")
    a, b, c = Dep("a", weight=2.0), Dep("b"), Dep("c")
    assert [strategy.order([a, b], None)[0].id for _ in range(6)] == list("abaaba")
    counts = Counter(strategy.order([a, b, c] if i % 2 else [a, c], None)[0].id for i in range(400))
    assert counts["a"] > counts["b"] > 0 and counts["c"] > 0


def test_least_in_flight_prefers_idle() -> None:
    strategy = make_strategy("least_in_flight", rng=random.Random(3))
    a, b, c = deps("a", "b", "c")
    a.stats.start()
    c.stats.start()
    c.stats.start()
    assert [d.id for d in strategy.order([a, b, c], None)] == ["b", "a", "c"]
    b.stats.start()
    b.stats.start()
    assert strategy.order([a, b, c], None)[0] is a
    a.stats.finish()
    a.stats.finish()  # never below 0
    assert a.stats.in_flight == 0


def test_least_in_flight_spreads_ties_by_weight() -> None:
    strategy = make_strategy("least_in_flight", rng=random.Random(4))
    counts = firsts(strategy, [Dep("a", weight=3.0), Dep("b")], 10_000)
    assert counts["a"] / 10_000 == pytest.approx(0.75, abs=0.02)


def test_lowest_cost_first_unknown_last_ties_weighted() -> None:
    strategy = make_strategy("lowest_cost", rng=random.Random(5))
    unknown = Dep("unknown")
    pricey = Dep("pricey", cost_per_million=10.0)
    cheap1 = Dep("cheap1", cost_per_million=0.5, weight=1.0)
    cheap2 = Dep("cheap2", cost_per_million=0.5, weight=3.0)
    orders = Counter(
        tuple(d.id for d in strategy.order([unknown, pricey, cheap1, cheap2], None))
        for _ in range(4_000)
    )
    assert set(orders) == {
        ("cheap2", "cheap1", "pricey", "unknown"),
        ("cheap1", "cheap2", "pricey", "unknown"),
    }
    assert orders[("cheap2", "cheap1", "pricey", "unknown")] / 4_000 == pytest.approx(
        0.75, abs=0.03
    )


def test_priority_ascending() -> None:
    strategy = make_strategy("priority", rng=random.Random(6))
    backup = Dep("backup", priority=1)
    primary = Dep("primary", priority=0)
    last = Dep("last", priority=5)
    assert [d.id for d in strategy.order([last, backup, primary], None)] == [
        "primary",
        "backup",
        "last",
    ]
    twins = [Dep("p1", weight=3.0), Dep("p2", weight=1.0), backup]
    counts = firsts(strategy, twins, 4_000)
    assert set(counts) == {"p1", "p2"}
    assert counts["p1"] / 4_000 == pytest.approx(0.75, abs=0.03)


# --- latency --------------------------------------------------------------------------


def observed(dep_id: str, seconds: float, now: float) -> Dep:
    dep = Dep(dep_id)
    dep.stats.observe_latency(seconds, now)
    return dep


def test_latency_prefers_fast_but_still_samples_the_slow_ones() -> None:
    clock = Clock()
    strategy = make_strategy("latency", rng=random.Random(9), clock=clock)
    fast = observed("fast", 0.2, clock.now)
    slow1, slow2 = observed("slow1", 1.0, clock.now), observed("slow2", 2.0, clock.now)
    counts = firsts(strategy, [slow1, fast, slow2], 9_000)
    # Two distinct draws out of three: the fast one is in the pair 2/3 of the time.
    assert counts["fast"] / 9_000 == pytest.approx(2 / 3, abs=0.02)
    assert counts["slow1"] / 9_000 == pytest.approx(1 / 3, abs=0.02)
    assert [d.id for d in strategy.order([slow2, slow1, fast], None)][1:] in (
        ["slow1", "slow2"],
        ["fast", "slow2"],
    )


def test_latency_weighs_load() -> None:
    clock = Clock()
    strategy = make_strategy("latency", rng=random.Random(10), clock=clock)
    fast, slow = observed("fast", 0.2, clock.now), observed("slow", 0.5, clock.now)
    assert firsts(strategy, [fast, slow], 100) == {"fast": 100}
    for _ in range(3):
        fast.stats.start(clock.now)  # 0.2 * 4 > 0.5 * 1
    assert firsts(strategy, [fast, slow], 100) == {"slow": 100}


def test_latency_tries_a_new_deployment_without_sending_it_everything() -> None:
    clock = Clock()
    strategy = make_strategy("latency", rng=random.Random(11), clock=clock)
    known, new = observed("known", 0.5, clock.now), Dep("new")
    assert strategy.order([known, new], None)[0] is new
    new.stats.start(clock.now)
    # No estimate yet: it borrows its rival's, so the comparison is on load alone.
    assert strategy.order([known, new], None)[0] is known
    known.stats.start(clock.now)
    known.stats.start(clock.now)
    assert strategy.order([known, new], None)[0] is new


def test_latency_adapts_to_a_spike_and_recovers() -> None:
    clock = Clock()
    strategy = make_strategy("latency", rng=random.Random(12), clock=clock)
    a, b = observed("a", 0.2, clock.now), observed("b", 0.4, clock.now)
    for dep in (a, b):
        dep.stats.start(clock.now)  # busy throughout: no idle decay in this test
    assert strategy.order([a, b], None)[0] is a

    a.stats.observe_latency(3.0, clock.now)  # peak: taken at once
    assert a.stats.latency(clock.now) == 3.0
    assert strategy.order([a, b], None)[0] is b

    for _ in range(60):
        clock.now += 1.0
        a.stats.observe_latency(0.2, clock.now)
        b.stats.observe_latency(0.4, clock.now)
    assert a.stats.latency(clock.now) == pytest.approx(0.2, abs=0.02)
    assert strategy.order([a, b], None)[0] is a


def test_latency_estimate_decays_when_idle_and_holds_while_busy() -> None:
    stats = DeploymentStats(decay_seconds=10.0)
    assert stats.latency(0.0) == 0.0
    stats.start(0.0)
    stats.observe_latency(2.0, 1.0)
    assert stats.latency(100.0) == 2.0  # in flight: a hung request must not look fast
    stats.finish(100.0)
    assert stats.latency(110.0) == pytest.approx(2.0 / 2.718281828, rel=1e-6)
    stats.start(110.0)  # the decay so far is kept, and holds again
    assert stats.latency(500.0) == pytest.approx(2.0 / 2.718281828, rel=1e-6)
    stats.observe_latency(float("nan"), 500.0)
    stats.observe_latency(-1.0, 500.0)
    assert stats.latency(500.0) == pytest.approx(2.0 / 2.718281828, rel=1e-6)


def test_latency_retries_a_slow_deployment_after_idling() -> None:
    clock = Clock()
    strategy = make_strategy("latency", rng=random.Random(13), clock=clock)
    fast, slow = observed("fast", 0.2, clock.now), observed("slow", 2.0, clock.now)
    seen = Counter[str]()
    for _ in range(60):  # one request a second, each taking 0.2 s on the fast one
        clock.now += 1.0
        first = strategy.order([fast, slow], None)[0]
        seen[first.id] += 1
        first.stats.start(clock.now)
        first.stats.observe_latency(0.2 if first is fast else 2.0, clock.now)
        first.stats.finish(clock.now)
    assert seen["fast"] > 50
    assert 1 <= seen["slow"] <= 5


# --- affinity -------------------------------------------------------------------------


def test_affinity_is_sticky_per_key() -> None:
    strategy = with_affinity(make_strategy("weighted", rng=random.Random(14)))
    candidates = deps("a", "b", "c")
    for key in ("alice", "bob", "carol", "x" * 500):
        homes = {strategy.order(candidates, key)[0].id for _ in range(50)}
        assert len(homes) == 1
    assert len({strategy.order(candidates, None)[0].id for _ in range(50)}) > 1


EXPECTED_HOMES = ["a", "b", "c", "a", "a", "c", "a", "c"]


def test_affinity_is_stable_across_processes() -> None:
    # blake2b, not hash(): fixed expectations hold whatever PYTHONHASHSEED is.
    strategy = with_affinity(make_strategy("round_robin"))
    candidates = deps("a", "b", "c")
    homes = [strategy.order(candidates, f"user-{i}")[0].id for i in range(8)]
    assert homes == [
        strategy.order(list(reversed(candidates)), f"user-{i}")[0].id for i in range(8)
    ]
    assert homes == EXPECTED_HOMES


def test_affinity_spreads_keys_by_weight() -> None:
    strategy = with_affinity(make_strategy("weighted", rng=random.Random(15)))
    counts = firsts_by_key(strategy, deps("a", "b", "c"), 1000)
    assert all(abs(counts[d] - 333) <= 60 for d in "abc"), counts
    weighted = [Dep("a", weight=2.0), Dep("b"), Dep("c")]
    counts = firsts_by_key(strategy, weighted, 4000)
    assert counts["a"] / 4000 == pytest.approx(0.5, abs=0.04), counts


def firsts_by_key(strategy: Strategy, candidates: list[Dep], keys: int) -> Counter[str]:
    return Counter(strategy.order(candidates, f"key-{i}")[0].id for i in range(keys))


def test_affinity_moves_only_the_keys_of_a_removed_candidate() -> None:
    strategy = with_affinity(make_strategy("least_in_flight", rng=random.Random(16)))
    a, b, c, d = deps("a", "b", "c", "d")
    before = {f"k{i}": strategy.order([a, b, c, d], f"k{i}")[0].id for i in range(1000)}
    after = {key: strategy.order([a, b, d], key)[0].id for key in before}
    for key, home in before.items():
        if home != "c":
            assert after[key] == home
    moved = Counter(after[key] for key, home in before.items() if home == "c")
    assert set(moved) == {"a", "b", "d"}
    back = {key: strategy.order([a, b, c, d], key)[0].id for key in before}
    assert back == before


def test_affinity_rest_follows_the_wrapped_order() -> None:
    strategy = with_affinity(make_strategy("priority"))
    candidates = [Dep("p0", priority=0), Dep("p1", priority=1), Dep("p2", priority=2)]
    for i in range(50):
        ordered = [d.id for d in strategy.order(candidates, f"s{i}")]
        home = ordered[0]
        assert ordered[1:] == [d for d in ("p0", "p1", "p2") if d != home]
