"""Test support shipped with modelway: a mock LLM upstream for tests, benchmarks and chaos runs."""

from modelway.testing.mock_upstream import (
    MockOptions,
    RunningMock,
    build_mock_app,
    run_mock_upstream,
    start_mock_upstream,
)

__all__ = [
    "MockOptions",
    "RunningMock",
    "build_mock_app",
    "run_mock_upstream",
    "start_mock_upstream",
]
