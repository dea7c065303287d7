"""Per-deployment live figures: requests in flight and a peak-EWMA latency estimate."""

from __future__ import annotations

import math
import time

DEFAULT_DECAY_SECONDS = 10.0


class DeploymentStats:
    """Live per-deployment figures the strategies read; one per deployment, shared by the router.

    The latency estimate (seconds; for streams, time to first token) is a peak EWMA: a sample
    above the estimate replaces it at once, one below pulls it down with a weight that grows
    with the time since the last update (time constant ``decay_seconds``). A new deployment
    starts at 0, so it gets tried.

    While nothing is in flight the estimate also relaxes toward 0, so a deployment that was
    slow once is tried again after a while rather than shunned for good. While requests are
    in flight it holds, so requests that hang never make a deployment look fast.
    """

    __slots__ = ("_cost", "_decay", "_stamp", "in_flight")

    def __init__(self, decay_seconds: float = DEFAULT_DECAY_SECONDS) -> None:
        if not decay_seconds > 0:
            raise ValueError(f"decay_seconds must be > 0, got {decay_seconds!r}")
        self.in_flight = 0
        self._decay = decay_seconds
        self._cost = 0.0
        self._stamp = 0.0  # when _cost was last set, or when the deployment went idle

    def latency(self, now: float | None = None) -> float:
        """The current estimate, in seconds."""
        if self.in_flight or self._cost == 0.0:
            return self._cost
        return self._cost * self._weight(now)

    def observe_latency(self, seconds: float, now: float | None = None) -> None:
        if not (math.isfinite(seconds) and seconds >= 0.0):
            return  # one bad sample must not poison the estimate for good
        if now is None:
            now = time.monotonic()
        current = self.latency(now)
        if seconds >= current:
            self._cost = seconds
        else:
            w = self._weight(now)
            self._cost = current * w + seconds * (1.0 - w)
        self._stamp = now

    def start(self, now: float | None = None) -> None:
        if self.in_flight == 0:
            if now is None:
                now = time.monotonic()
            # Fold the idle decay in: from here the estimate holds until news arrives.
            self._cost = self.latency(now)
            self._stamp = now
        self.in_flight += 1

    def finish(self, now: float | None = None) -> None:
        if self.in_flight == 0:
            return
        self.in_flight -= 1
        if self.in_flight == 0:
            self._stamp = time.monotonic() if now is None else now

    def _weight(self, now: float | None) -> float:
        """How much of the estimate survives from ``_stamp`` to ``now``, in (0, 1]."""
        if now is None:
            now = time.monotonic()
        return math.exp(min(0.0, self._stamp - now) / self._decay)

    def __repr__(self) -> str:
        return f"DeploymentStats(in_flight={self.in_flight}, latency={self._cost:.4f})"
