"""The load generator's arithmetic: percentiles, arrivals, per-request figures."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from modelway.loadtest import Outcome, summarize
from modelway.loadtest.prompts import PromptMaker
from modelway.loadtest.report import percentile
from modelway.loadtest.runner import arrival_times


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0


def test_uniform_arrivals_are_exactly_rate_times_duration() -> None:
    times = arrival_times(20, 2, "uniform", random.Random(0))
    assert len(times) == 40 and times[1] == pytest.approx(0.05) and times[-1] < 2


def test_poisson_arrivals_average_the_rate() -> None:
    times = arrival_times(100, 100, "poisson", random.Random(1))
    assert len(times) == pytest.approx(10_000, rel=0.05)
    assert all(a < b for a, b in pairwise(times)) and times[-1] < 100


def test_tpot_follows_vllm() -> None:
    assert Outcome(True, latency=1.0, ttft=0.1, output_tokens=10).tpot == pytest.approx(0.1)
    assert Outcome(True, latency=1.0, ttft=0.1, output_tokens=1).tpot is None
    assert Outcome(True, latency=1.0, output_tokens=10).tpot is None  # not streamed


def test_summary_counts_failures_by_status_and_times_only_successes() -> None:
    outcomes = [
        Outcome(True, 0.2, ttft=0.05, itl=[0.01, 0.03], output_tokens=3, prompt_tokens=5),
        Outcome(True, 0.4, ttft=0.15, itl=[0.02], output_tokens=2, prompt_tokens=5),
        Outcome(False, 9.0, error="503"),
        Outcome(False, 9.0, error="connect"),
    ]
    summary = summarize(outcomes, duration=2.0)
    assert summary.success_rate == 0.5
    assert summary.errors == {"503": 1, "connect": 1}
    assert summary.request_throughput == 1.0
    assert summary.output_throughput == 2.5
    assert summary.prompt_tokens == 10
    assert summary.e2e_latency_ms is not None and summary.e2e_latency_ms["mean"] == 300
    assert summary.ttft_ms is not None and summary.ttft_ms["median"] == pytest.approx(100)
    assert summary.itl_ms is not None and summary.itl_ms["mean"] == pytest.approx(20)
    assert "503: 1" in summary.table()


def test_prompts_differ_and_have_about_n_words() -> None:
    maker = PromptMaker(50, seed=1)
    prompts = [maker.make(i) for i in range(20)]
    assert len(set(prompts)) == 20
    assert all(abs(len(p.split()) - 50) <= 2 for p in prompts)
