"""The figures of a run, with vLLM ``benchmark_serving``'s definitions, as a table or JSON.

Latency figures are over successful requests only; throughput divides by the wall time
from the first launch to the last answer (vLLM's ``benchmark_duration``).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelway.loadtest.request import Outcome

STAT_NAMES = ("mean", "median", "p90", "p99")


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks, as numpy's default."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def describe(values: Sequence[float]) -> dict[str, float] | None:
    """Mean, median, p90, p99 in milliseconds; None when there is nothing to describe."""
    if not values:
        return None
    ms = [v * 1000 for v in values]
    return {
        "mean": statistics.fmean(ms),
        "median": statistics.median(ms),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
    }


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    succeeded: int
    duration: float
    output_tokens: int
    prompt_tokens: int | None
    errors: dict[str, int]
    ttft_ms: dict[str, float] | None
    tpot_ms: dict[str, float] | None
    itl_ms: dict[str, float] | None
    e2e_latency_ms: dict[str, float] | None

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.requests if self.requests else 0.0

    @property
    def request_throughput(self) -> float:
        return self.succeeded / self.duration if self.duration > 0 else 0.0

    @property
    def output_throughput(self) -> float:
        return self.output_tokens / self.duration if self.duration > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": self.success_rate,
            "duration_s": self.duration,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_output_tokens": self.output_tokens,
            "total_prompt_tokens": self.prompt_tokens,
            "errors": self.errors,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "itl_ms": self.itl_ms,
            "e2e_latency_ms": self.e2e_latency_ms,
        }

    def table(self) -> str:
        lines = [
            f"requests            {self.requests} ({self.succeeded} ok, {self.failed} failed)",
            f"success rate        {self.success_rate:.1%}",
            f"duration            {self.duration:.2f} s",
            f"request throughput  {self.request_throughput:.2f} req/s",
            f"output throughput   {self.output_throughput:.1f} tok/s ({self.output_tokens} tokens)",
        ]
        if self.errors:
            listed = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
            lines.append(f"errors              {listed}")
        lines += ["", f"{'(ms)':<14}" + "".join(f"{name:>10}" for name in STAT_NAMES)]
        for label, stats in (
            ("TTFT", self.ttft_ms),
            ("TPOT", self.tpot_ms),
            ("ITL", self.itl_ms),
            ("E2E latency", self.e2e_latency_ms),
        ):
            cells = (
                "".join(f"{stats[name]:>10.2f}" for name in STAT_NAMES)
                if stats is not None
                else f"{'-':>10}" * len(STAT_NAMES)
            )
            lines.append(f"{label:<14}{cells}")
        return "\n".join(lines)


def summarize(outcomes: Sequence[Outcome], duration: float) -> Summary:
    good = [o for o in outcomes if o.ok]
    prompts = [o.prompt_tokens for o in good]
    return Summary(
        requests=len(outcomes),
        succeeded=len(good),
        duration=duration,
        output_tokens=sum(o.output_tokens for o in good),
        prompt_tokens=sum(p for p in prompts if p is not None)
        if good and None not in prompts
        else None,
        errors=dict(Counter(o.error or "unknown" for o in outcomes if not o.ok)),
        ttft_ms=describe([o.ttft for o in good if o.ttft is not None]),
        tpot_ms=describe([t for o in good if (t := o.tpot) is not None]),
        itl_ms=describe([gap for o in good for gap in o.itl]),
        e2e_latency_ms=describe([o.latency for o in good]),
    )
