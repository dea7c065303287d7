"""`modelway loadtest` against a gateway in front of the mock upstream: open and closed
loop, streamed and not, checked against what the mock received."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.access_gateway import start_gateway
from tests.integration.conftest import Mock
from tests.servers import Process, modelway_command

UPSTREAM_MODEL = "loadtest-upstream"


@pytest.fixture(scope="module")
def gateway(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    config = {
        "models": [
            {
                "name": "lt-gpt",
                "routing": {"retries": 0},
                "deployments": [
                    {
                        "provider": "openai",
                        "model": UPSTREAM_MODEL,
                        "base_url": f"{upstream.url}/v1",
                    }
                ],
            }
        ]
    }
    proc = start_gateway(tmp_path_factory.mktemp("loadtest"), config)
    try:
        yield proc
    finally:
        proc.stop()


def received(upstream: Mock) -> int:
    count: int = upstream.stats()["by_model"].get(UPSTREAM_MODEL, 0)
    return count


def loadtest(tmp_path: Path, *args: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    out = tmp_path / "run.json"
    result = subprocess.run(
        modelway_command("loadtest", *args, "--json", str(out)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    record: dict[str, Any] = json.loads(out.read_text())
    return record, result


@pytest.mark.parametrize("stream", [False, True])
def test_closed_loop(gateway: Process, upstream: Mock, tmp_path: Path, stream: bool) -> None:
    before = received(upstream)
    args = [gateway.url, "--model", "lt-gpt", "--concurrency", "4", "--duration", "2"]
    args += ["--prompt-tokens", "24", "--max-tokens", "8", "--no-progress"]
    record, result = loadtest(tmp_path, *args, *(["--stream"] if stream else []))

    assert record["arguments"]["concurrency"] == 4
    assert record["arguments"]["stream"] is stream
    assert record["requests"] > 4  # back to back for 2 s against an instant mock
    assert record["success_rate"] == 1.0
    assert record["errors"] == {}
    assert record["total_output_tokens"] == 8 * record["requests"]  # max_tokens of an echo
    assert received(upstream) - before == record["requests"]
    assert record["e2e_latency_ms"]["p99"] >= record["e2e_latency_ms"]["median"] > 0
    if stream:
        for name in ("ttft_ms", "tpot_ms", "itl_ms"):
            assert set(record[name]) == {"mean", "median", "p90", "p99"}
            assert record[name]["mean"] > 0
    else:
        assert record["ttft_ms"] is None and record["tpot_ms"] is None
    assert "TTFT" in result.stdout and "E2E latency" in result.stdout
    assert result.stderr == ""  # --no-progress


@pytest.mark.parametrize("stream", [False, True])
def test_open_loop(gateway: Process, upstream: Mock, tmp_path: Path, stream: bool) -> None:
    before = received(upstream)
    args = [gateway.url + "/v1", "--model", "lt-gpt", "--rps", "20", "--duration", "2"]
    args += ["--arrival", "uniform", "--prompt-tokens", "16", "--max-tokens", "4"]
    record, result = loadtest(tmp_path, *args, *(["--stream"] if stream else []))

    assert record["requests"] == 40  # evenly spaced arrivals: exactly rps * duration
    assert record["success_rate"] == 1.0
    assert received(upstream) - before == 40
    assert record["request_throughput"] == pytest.approx(20, rel=0.25)
    assert (record["ttft_ms"] is not None) is stream
    assert (record["tpot_ms"] is not None) is stream
    assert "40 done, 0 failed" in result.stderr  # the progress line


def test_poisson_arrivals_average_the_rate(gateway: Process, tmp_path: Path) -> None:
    args = [gateway.url, "--model", "lt-gpt", "--rps", "20", "--duration", "2", "--seed", "3"]
    record, _ = loadtest(tmp_path, *args, "--max-tokens", "2", "--no-progress")
    assert 25 <= record["requests"] <= 55  # Poisson(40): within about 2.5 sigma
    assert record["arguments"]["arrival"] == "poisson"


def test_failures_are_counted_by_status_and_still_exit_0(gateway: Process, tmp_path: Path) -> None:
    args = [gateway.url, "--model", "no-such-model", "--concurrency", "2", "--duration", "0.5"]
    record, _ = loadtest(tmp_path, *args, "--no-progress")
    assert record["success_rate"] == 0.0
    assert record["errors"] == {"404": record["requests"]}


@pytest.mark.parametrize(
    "args",
    [
        ["http://127.0.0.1:9", "--model", "m", "--duration", "1"],  # neither --rps nor -c
        [
            "http://127.0.0.1:9",
            "--model",
            "m",
            "--rps",
            "1",
            "--concurrency",
            "1",
            "--duration",
            "1",
        ],
        ["http://127.0.0.1:9", "--model", "m", "--rps", "0", "--duration", "1"],
        ["ftp://x", "--model", "m", "--rps", "1", "--duration", "1"],
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    result = subprocess.run(
        modelway_command("loadtest", *args), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result.stderr
