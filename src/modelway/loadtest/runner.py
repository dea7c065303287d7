"""Launching requests: open loop (arrivals on a schedule) or closed loop (C workers)."""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import aiohttp

from modelway.loadtest.prompts import PromptMaker
from modelway.loadtest.request import Outcome, Target, send

Launch = Callable[[int], Coroutine[Any, Any, Outcome]]

# Open loop launches on schedule however many are in flight; this only bounds sockets.
OPEN_LOOP_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True)
class LoadSpec:
    target: Target
    duration: float
    prompt_tokens: int
    rps: float | None = None
    concurrency: int | None = None
    arrival: Literal["poisson", "uniform"] = "poisson"
    seed: int | None = None


@dataclass(slots=True)
class Run:
    """The outcomes, and the wall time from the first launch to the last answer."""

    outcomes: list[Outcome]
    elapsed: float


class _Progress:
    def __init__(self, duration: float, stream: TextIO | None) -> None:
        self.duration = duration
        self.stream = stream
        self.start = time.perf_counter()
        self.done = 0
        self.failed = 0
        self.launched = 0

    def record(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += 0 if outcome.ok else 1

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        return (
            f"\r{self.done} done, {self.failed} failed, {self.launched - self.done} in flight, "
            f"{elapsed:.1f}/{self.duration:g} s "
        )

    async def show(self) -> None:
        # The line rewrites itself with \r: live on a terminal only; elsewhere (a log
        # file, a pipe) just the final line is written.
        if self.stream is None or not self.stream.isatty():
            return
        while True:
            self.stream.write(self.line())
            self.stream.flush()
            await asyncio.sleep(0.5)

    def finish(self) -> None:
        if self.stream is not None:
            line = self.line()
            self.stream.write((line if self.stream.isatty() else line.lstrip("\r")) + "\n")
            self.stream.flush()


def arrival_times(rps: float, duration: float, arrival: str, rng: random.Random) -> list[float]:
    """Launch offsets (seconds) within ``[0, duration)``: Poisson or evenly spaced."""
    if arrival == "uniform":
        return [i / rps for i in range(math.ceil(rps * duration - 1e-9))]
    times: list[float] = []
    t = rng.expovariate(rps)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rps)
    return times


async def run_load(spec: LoadSpec, progress: TextIO | None = sys.stderr) -> Run:
    prompts = PromptMaker(spec.prompt_tokens, spec.seed)
    limit = spec.concurrency if spec.concurrency is not None else OPEN_LOOP_CONNECTIONS
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
    shown = _Progress(spec.duration, progress)
    ticker = asyncio.create_task(shown.show())
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int) -> Outcome:
            outcome = await send(session, spec.target, prompts.make(index))
            shown.record(outcome)
            return outcome

        try:
            start = time.perf_counter()
            if spec.rps is not None:
                outcomes = await _open_loop(spec, one, shown, random.Random(spec.seed))
            else:
                outcomes = await _closed_loop(spec, one, shown)
            elapsed = time.perf_counter() - start
        finally:
            ticker.cancel()
            shown.finish()
    return Run(outcomes, elapsed)


async def _open_loop(
    spec: LoadSpec,
    one: Launch,
    shown: _Progress,
    rng: random.Random,
) -> list[Outcome]:
    assert spec.rps is not None
    tasks: list[asyncio.Task[Outcome]] = []
    start = time.perf_counter()
    for index, offset in enumerate(arrival_times(spec.rps, spec.duration, spec.arrival, rng)):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
        shown.launched += 1
    return list(await asyncio.gather(*tasks))


async def _closed_loop(spec: LoadSpec, one: Launch, shown: _Progress) -> list[Outcome]:
    assert spec.concurrency is not None
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + spec.duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            index = shown.launched
            shown.launched += 1
            outcomes.append(await one(index))

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    return outcomes
