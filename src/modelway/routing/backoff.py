"""How long to wait before the next attempt: exponential backoff with full jitter."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    retry_after: float | None,
    same_deployment: bool,
    rng: random.Random | None = None,
) -> float:
    """The pause before attempt ``attempt + 1`` (``attempt`` counts from 0).

    Moving to another deployment needs no pause: the one that failed is not asked
    again. Asking the same one again waits a random time up to the exponential bound
    (full jitter), and at least what its ``Retry-After`` said.
    """
    if not same_deployment:
        return 0.0
    bound = min(maximum, initial * (2**attempt))
    pause = (rng or random).uniform(0.0, bound)
    return max(pause, retry_after or 0.0)
