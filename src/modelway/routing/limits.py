"""A deployment's own limits: concurrent requests, and the provider account's quotas
of requests and tokens per minute (sliding one-minute window, in this process; with
Redis, dispatch also takes each request from a window shared by every replica)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class DeploymentLimits:
    def __init__(
        self,
        *,
        max_parallel: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_parallel = max_parallel
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sent: deque[tuple[float, int]] = deque()  # (when, tokens) in the window
        self._tokens = 0
        # Set when the quota shared with other replicas (Redis) said no: until then this
        # deployment counts as full here too.
        self._blocked_until = 0.0

    @property
    def limited(self) -> bool:
        return (self.max_parallel, self.rpm, self.tpm) != (None, None, None)

    def admits(self, in_flight: int, tokens: int) -> bool:
        """Would one more request of ``tokens`` tokens stay within every limit now?"""
        if self.max_parallel is not None and in_flight >= self.max_parallel:
            return False
        if self._blocked_until and self._clock() < self._blocked_until:
            return False
        self._expire()
        if self.rpm is not None and len(self._sent) >= self.rpm:
            return False
        # A request larger than the whole quota is let through alone rather than never.
        return self.tpm is None or self._tokens + tokens <= self.tpm or not self._sent

    def take(self, tokens: int) -> None:
        if self.rpm is None and self.tpm is None:
            return
        self._sent.append((self._clock(), tokens))
        self._tokens += tokens

    @property
    def shared(self) -> bool:
        """Does this deployment have a quota that replicas must count together?"""
        return self.rpm is not None or self.tpm is not None

    def block(self, seconds: float) -> None:
        """The shared quota is spent for ``seconds``: stop choosing this deployment."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def seconds_until_room(self) -> float | None:
        """When the window next frees a request's worth; None if only concurrency binds."""
        self._expire()
        now = self._clock()
        blocked = self._blocked_until - now if self._blocked_until > now else None
        if not self._sent:
            return blocked
        local = max(0.0, self._sent[0][0] + WINDOW_SECONDS - now)
        return max(local, blocked) if blocked is not None else local

    def _expire(self) -> None:
        horizon = self._clock() - WINDOW_SECONDS
        while self._sent and self._sent[0][0] <= horizon:
            self._tokens -= self._sent.popleft()[1]
