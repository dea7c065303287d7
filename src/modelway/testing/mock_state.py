"""Options, run-time state and request statistics of the mock upstream."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FAIL_MODES = frozenset({"status", "reset", "cut", "hang"})
REPLY_MODES = frozenset({"echo", "lorem"})


@dataclass
class MockOptions:
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 500
    fail_mode: str = "status"
    retry_after: float = 1.0
    reply: str = "echo"
    lorem_tokens: int = 16
    seed: int | None = None
    models: list[str] = field(default_factory=lambda: ["mock-gpt-4o-mini", "mock-claude"])
    history: int = 50

    def __post_init__(self) -> None:
        check_options(self)


def check_options(options: MockOptions) -> None:
    if options.fail_mode not in FAIL_MODES:
        raise ValueError(f"fail_mode must be one of {sorted(FAIL_MODES)}")
    if options.reply not in REPLY_MODES:
        raise ValueError(f"reply must be one of {sorted(REPLY_MODES)}")
    if not 0.0 <= options.fail_rate <= 1.0:
        raise ValueError("fail_rate must be between 0 and 1")
    if not 100 <= options.fail_status <= 599:
        raise ValueError("fail_status must be an HTTP status code")
    for name in ("latency_ms", "ttft_ms", "tokens_per_second", "retry_after"):
        if getattr(options, name) < 0:
            raise ValueError(f"{name} must not be negative")
    if options.lorem_tokens < 0 or options.history < 0:
        raise ValueError("lorem_tokens and history must not be negative")


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "latency_ms": (int, float),
    "ttft_ms": (int, float),
    "tokens_per_second": (int, float),
    "fail_rate": (int, float),
    "fail_status": (int,),
    "fail_mode": (str,),
    "retry_after": (int, float),
    "reply": (str,),
    "lorem_tokens": (int,),
    "seed": (int, type(None)),
    "models": (list,),
    "history": (int,),
}


def updated_options(options: MockOptions, changes: Mapping[str, Any]) -> MockOptions:
    """A copy of `options` with `changes` applied; ValueError names the first bad field."""
    for name, value in changes.items():
        types = _FIELD_TYPES.get(name)
        if types is None:
            raise ValueError(f"unknown option: {name}")
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"bad type for option {name}")
        if isinstance(value, list) and not all(isinstance(m, str) for m in value):
            raise ValueError("models must be a list of strings")
    new = dataclasses.replace(options, **changes)
    for name in ("latency_ms", "ttft_ms", "tokens_per_second", "fail_rate", "retry_after"):
        setattr(new, name, float(getattr(new, name)))
    return new


class MockStats:
    """Counters and the last request bodies, for `GET /_mock/stats`."""

    __slots__ = ("by_model", "by_path", "failures_injected", "last_requests", "requests_total")

    def __init__(self, history: int) -> None:
        self.requests_total = 0
        self.failures_injected = 0
        self.by_path: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        # Raw pieces are kept and turned into JSON only when the stats are read.
        self.last_requests: deque[tuple[str, str, str, Mapping[str, str], Any]] = deque(
            maxlen=history
        )

    def record(
        self, path: str, method: str, query: str, headers: Mapping[str, str], body: Any
    ) -> None:
        self.requests_total += 1
        self.by_path[path] += 1
        if isinstance(body, dict):
            model = body.get("model")
            if isinstance(model, str):
                self.by_model[model] += 1
        if self.last_requests.maxlen:
            self.last_requests.append((path, method, query, headers, body))

    def resize(self, history: int) -> None:
        if history != self.last_requests.maxlen:
            self.last_requests = deque(self.last_requests, maxlen=history)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "failures_injected": self.failures_injected,
            "last_requests": [
                {
                    "path": p,
                    "method": m,
                    "query": q,
                    "headers": {str(k).lower(): v for k, v in h.items()},
                    "body": b,
                }
                for p, m, q, h, b in self.last_requests
            ],
        }


class MockState:
    """Everything the handlers share; options can be swapped at run time."""

    def __init__(self, options: MockOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.stats = MockStats(options.history)
        self.closing = False

    def set_options(self, options: MockOptions, reseed: bool) -> None:
        self.options = options
        if reseed:
            self.rng = random.Random(options.seed)
        self.stats.resize(options.history)

    def reset_stats(self) -> None:
        self.stats = MockStats(self.options.history)
