import pytest

from modelway.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Change = tuple[str, BreakerState, BreakerState]

RATE_ONLY = BreakerSettings(consecutive_failures=0)


def make(
    settings: BreakerSettings | None = None,
) -> tuple[CircuitBreaker, FakeClock, list[Change]]:
    clock = FakeClock()
    changes: list[Change] = []
    breaker = CircuitBreaker(
        "dep-a",
        settings or BreakerSettings(),
        clock=clock,
        on_change=lambda *args: changes.append(args),
    )
    return breaker, clock, changes


def state(breaker: CircuitBreaker) -> BreakerState:
    # a call, so mypy does not narrow the property across assertions
    return breaker.state


def attempt(breaker: CircuitBreaker, *, ok: bool) -> None:
    assert breaker.allow()
    if ok:
        breaker.record_success()
    else:
        breaker.record_failure()


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.settings.consecutive_failures):
        attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.OPEN


def test_failure_rate_opens_only_after_minimum_volume() -> None:
    breaker, _, _ = make(RATE_ONLY)
    for _ in range(9):
        attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED
    attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.OPEN


def test_failure_rate_threshold_is_inclusive() -> None:
    breaker, _, _ = make(RATE_ONLY)
    for _ in range(5):
        attempt(breaker, ok=True)
    for _ in range(4):
        attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED
    attempt(breaker, ok=False)  # 5 of 10
    assert state(breaker) is BreakerState.OPEN


def test_low_failure_rate_stays_closed() -> None:
    breaker, _, _ = make(RATE_ONLY)
    for _ in range(30):
        attempt(breaker, ok=True)
        attempt(breaker, ok=True)
        attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED


def test_consecutive_failures_open() -> None:
    breaker, _, _ = make(BreakerSettings(minimum_requests=100))
    for _ in range(4):
        attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED
    attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.OPEN


def test_success_resets_consecutive_count() -> None:
    breaker, _, _ = make(BreakerSettings(minimum_requests=100))
    for _ in range(3):
        for _ in range(4):
            attempt(breaker, ok=False)
        assert breaker.snapshot()["consecutive_failures"] == 4
        attempt(breaker, ok=True)
        assert breaker.snapshot()["consecutive_failures"] == 0
    assert state(breaker) is BreakerState.CLOSED


def test_old_failures_age_out_of_window() -> None:
    breaker, clock, _ = make(RATE_ONLY)
    for _ in range(9):
        attempt(breaker, ok=False)
    clock.advance(30.0)
    assert breaker.snapshot()["requests"] == 0
    attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED


def test_window_is_rolling_not_reset_in_blocks() -> None:
    breaker, clock, _ = make(RATE_ONLY)
    for _ in range(5):
        attempt(breaker, ok=False)
    clock.advance(15.0)
    for _ in range(4):
        attempt(breaker, ok=False)
    clock.advance(11.0)  # 26s: within the window whatever the bucket boundaries
    assert breaker.snapshot()["requests"] == 9
    clock.advance(4.0)  # 30s: the first five are out, the last four are not
    assert breaker.snapshot()["requests"] == 4
    attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED


def test_open_refuses() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    clock.advance(9.9)
    assert not breaker.allow()
    assert state(breaker) is BreakerState.OPEN


def test_cooldown_leads_to_half_open_with_limited_probes() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    clock.advance(10.0)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()
    assert breaker.snapshot()["probes_in_flight"] == 2


def test_probes_all_succeed_close_with_clean_window() -> None:
    breaker, clock, changes = make()
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    snap = breaker.snapshot()
    assert snap["requests"] == 0
    assert snap["consecutive_failures"] == 0
    # a clean window: one failure does not re-trip on the old record
    attempt(breaker, ok=False)
    assert state(breaker) is BreakerState.CLOSED
    assert changes[-1] == ("dep-a", BreakerState.HALF_OPEN, BreakerState.CLOSED)


def test_sequential_probes_also_close() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    clock.advance(10.0)
    attempt(breaker, ok=True)
    assert state(breaker) is BreakerState.HALF_OPEN
    attempt(breaker, ok=True)
    assert state(breaker) is BreakerState.CLOSED


def test_probe_failure_reopens_with_doubling_capped_cooldown() -> None:
    breaker, clock, _ = make(BreakerSettings(cooldown_seconds=10.0, max_cooldown_seconds=35.0))
    trip(breaker)
    for expected in (20.0, 35.0, 35.0):
        clock.advance(breaker.snapshot()["seconds_until_half_open"])  # type: ignore[arg-type]
        attempt(breaker, ok=False)
        assert state(breaker) is BreakerState.OPEN
        assert breaker.snapshot()["seconds_until_half_open"] == expected


def test_cooldown_resets_after_closing() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    clock.advance(10.0)
    attempt(breaker, ok=False)
    assert breaker.snapshot()["seconds_until_half_open"] == 20.0
    clock.advance(20.0)
    attempt(breaker, ok=True)
    attempt(breaker, ok=True)
    trip(breaker)
    assert breaker.snapshot()["seconds_until_half_open"] == 10.0


def test_release_frees_probe_slot_without_counting() -> None:
    breaker, clock, _ = make(BreakerSettings(half_open_probes=1))
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED


def test_release_in_closed_is_harmless() -> None:
    breaker, _, _ = make()
    assert breaker.allow()
    breaker.release()
    assert breaker.snapshot()["requests"] == 0


def test_stragglers_while_open_or_without_probe_are_ignored() -> None:
    breaker, clock, _ = make()
    assert breaker.allow()  # admitted before the trip, finishes later
    trip(breaker)
    breaker.record_success()
    assert state(breaker) is BreakerState.OPEN
    clock.advance(10.0)
    breaker.record_failure()
    assert state(breaker) is BreakerState.HALF_OPEN


def test_on_change_receives_every_transition_in_order() -> None:
    breaker, clock, changes = make()
    trip(breaker)
    clock.advance(10.0)
    attempt(breaker, ok=False)
    clock.advance(20.0)
    attempt(breaker, ok=True)
    attempt(breaker, ok=True)
    closed, opened, half = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    assert changes == [
        ("dep-a", closed, opened),
        ("dep-a", opened, half),
        ("dep-a", half, opened),
        ("dep-a", opened, half),
        ("dep-a", half, closed),
    ]


def test_snapshot_contents() -> None:
    breaker, clock, _ = make(BreakerSettings(minimum_requests=100))
    attempt(breaker, ok=True)
    attempt(breaker, ok=True)
    attempt(breaker, ok=False)
    attempt(breaker, ok=False)
    assert breaker.snapshot() == {
        "name": "dep-a",
        "state": "closed",
        "failure_rate": 0.5,
        "requests": 4,
        "consecutive_failures": 2,
        "seconds_until_half_open": None,
        "probes_in_flight": 0,
    }
    for _ in range(3):
        attempt(breaker, ok=False)
    clock.advance(4.0)
    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["seconds_until_half_open"] == 6.0
    assert snap["requests"] == 7
    assert snap["failure_rate"] == 5 / 7


def test_empty_snapshot_has_zero_failure_rate() -> None:
    breaker, _, _ = make()
    assert breaker.snapshot()["failure_rate"] == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"minimum_requests": 0},
        {"window_seconds": 0.0},
        {"consecutive_failures": -1},
        {"cooldown_seconds": 0.0},
        {"half_open_probes": 0},
        {"cooldown_seconds": 30.0, "max_cooldown_seconds": 20.0},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerSettings(**kwargs)  # type: ignore[arg-type]
