"""Per-deployment circuit breaker: stop sending traffic to a deployment that keeps failing."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

_BUCKETS = 10


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    failure_rate: float = 0.5
    minimum_requests: int = 10
    window_seconds: float = 30.0
    consecutive_failures: int = 5
    cooldown_seconds: float = 10.0
    half_open_probes: int = 2
    max_cooldown_seconds: float = 120.0

    def __post_init__(self) -> None:
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.minimum_requests < 1:
            raise ValueError("minimum_requests must be at least 1")
        if not self.window_seconds > 0:
            raise ValueError("window_seconds must be positive")
        if self.consecutive_failures < 0:
            raise ValueError("consecutive_failures must be 0 (disabled) or more")
        if not self.cooldown_seconds > 0:
            raise ValueError("cooldown_seconds must be positive")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be at least 1")
        if self.max_cooldown_seconds < self.cooldown_seconds:
            raise ValueError("max_cooldown_seconds must be at least cooldown_seconds")


class _Window:
    """Success/failure counts over a rolling window, kept in a fixed ring of time buckets.

    An event stops counting between ``window - window/10`` and ``window`` seconds after it
    happened, depending on where in its bucket it fell.
    """

    def __init__(self, window_seconds: float) -> None:
        self._width = window_seconds / _BUCKETS
        self._epochs = [-1] * _BUCKETS
        self._successes = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS

    def add(self, now: float, *, failed: bool) -> None:
        epoch = math.floor(now / self._width)
        slot = epoch % _BUCKETS
        if self._epochs[slot] != epoch:
            self._epochs[slot] = epoch
            self._successes[slot] = 0
            self._failures[slot] = 0
        if failed:
            self._failures[slot] += 1
        else:
            self._successes[slot] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """(requests, failures) recorded in the window ending at ``now``."""
        oldest = math.floor(now / self._width) - _BUCKETS + 1
        requests = failures = 0
        for slot in range(_BUCKETS):
            if self._epochs[slot] >= oldest:
                requests += self._successes[slot] + self._failures[slot]
                failures += self._failures[slot]
        return requests, failures

    def clear(self) -> None:
        self._epochs = [-1] * _BUCKETS
        self._successes = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS


class CircuitBreaker:
    """Decides whether one deployment may take traffic, from the outcomes of its attempts.

    CLOSED: everything goes; opens when the failure rate over the rolling window reaches
    ``failure_rate`` with at least ``minimum_requests`` in the window, or after
    ``consecutive_failures`` failures in a row. OPEN: nothing goes until the cooldown has
    passed, then HALF_OPEN: at most ``half_open_probes`` attempts at once; after that many
    successful probes it closes with a clean window, and any probe failure re-opens it with
    the cooldown doubled (up to ``max_cooldown_seconds``).

    Every ``allow()`` that returned True must be followed by exactly one of
    ``record_success``, ``record_failure`` or ``release``. Results that arrive while OPEN, or
    while HALF_OPEN with no probe outstanding, belong to attempts admitted before the
    breaker tripped and are ignored.

    Not thread-safe, by design: the gateway uses it from a single event loop and every
    method runs to completion without awaiting, so no locks are needed.
    """

    def __init__(
        self,
        name: str,
        settings: BreakerSettings = BreakerSettings(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._window = _Window(settings.window_seconds)
        self._consecutive = 0
        self._cooldown = settings.cooldown_seconds
        self._half_open_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._half_open_at:
            self._probes_in_flight = 0
            self._probe_successes = 0
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._probes_in_flight >= self.settings.half_open_probes:
            return False
        self._probes_in_flight += 1
        return True

    def record_success(self) -> None:
        state = self.state
        if state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.add(self._clock(), failed=False)
        elif state is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1
            self._probe_successes += 1
            self._consecutive = 0
            if self._probe_successes >= self.settings.half_open_probes:
                self._close()

    def record_failure(self) -> None:
        state = self.state
        if state is BreakerState.CLOSED:
            now = self._clock()
            self._consecutive += 1
            self._window.add(now, failed=True)
            if self._should_trip(now):
                self._open(self.settings.cooldown_seconds)
        elif state is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1
            self._consecutive += 1
            self._open(min(self._cooldown * 2, self.settings.max_cooldown_seconds))

    def release(self) -> None:
        if self.state is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def snapshot(self) -> dict[str, object]:
        state = self.state
        now = self._clock()
        requests, failures = self._window.totals(now)
        return {
            "name": self.name,
            "state": state.value,
            "failure_rate": failures / requests if requests else 0.0,
            "requests": requests,
            "consecutive_failures": self._consecutive,
            "seconds_until_half_open": (
                max(0.0, self._half_open_at - now) if state is BreakerState.OPEN else None
            ),
            "probes_in_flight": self._probes_in_flight,
        }

    def _should_trip(self, now: float) -> bool:
        limit = self.settings.consecutive_failures
        if limit and self._consecutive >= limit:
            return True
        requests, failures = self._window.totals(now)
        return (
            requests >= self.settings.minimum_requests
            and failures / requests >= self.settings.failure_rate
        )

    def _open(self, cooldown: float) -> None:
        self._cooldown = cooldown
        self._half_open_at = self._clock() + cooldown
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(BreakerState.OPEN)

    def _close(self) -> None:
        self._window.clear()
        self._consecutive = 0
        self._cooldown = self.settings.cooldown_seconds
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(BreakerState.CLOSED)

    def _transition(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if self._on_change is not None:
            self._on_change(self.name, old, new)
