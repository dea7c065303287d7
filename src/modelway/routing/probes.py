"""Background health probes: a deployment that stops answering its probe trips its
circuit breaker before user traffic finds out."""

from __future__ import annotations

import asyncio
import contextlib

from modelway.routing.router import DeploymentRuntime


async def probe_forever(dep: DeploymentRuntime, interval: float) -> None:
    """Ask the deployment's health every ``interval`` seconds and tell its breaker.

    A failed probe counts as a failure; a passing one as a success while the circuit is
    closed (an open circuit closes only through its half-open trial of real requests).
    """
    while True:
        await asyncio.sleep(interval)
        ok = False
        with contextlib.suppress(Exception):  # a probe that raises counts as failed
            ok = await dep.provider.health()
        if ok:
            dep.breaker.record_success()
        else:
            dep.breaker.record_failure()
