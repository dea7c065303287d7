"""After a call: the tokens it really used, what it cost, and its ledger row."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelway.accounting.ledger import LedgerRow
from modelway.accounting.pricing import Price, cost_nano_usd
from modelway.accounting.tokens import TokenCounter
from modelway.pipeline.context import RequestContext


@dataclass(frozen=True, slots=True)
class GroupMeter:
    """How one model group's requests are counted and priced before the call."""

    counter: TokenCounter
    max_price: Price | None  # the dearest deployment's, for budget reservations


@dataclass(slots=True)  # built per request: not frozen, see store/counters.py
class Spent:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nano_usd: int


def cached_tokens(usage: Any) -> int:
    details = (usage.model_extra or {}).get("prompt_tokens_details") if usage else None
    if isinstance(details, Mapping):
        cached = details.get("cached_tokens")
        if isinstance(cached, int) and cached > 0:
            return cached
    return 0


def spent(
    ctx: RequestContext, prompt_estimate: int, output_counted: int, price: Price | None
) -> Spent:
    """From the provider's usage when it sent one, otherwise from the tokens counted."""
    usage = ctx.usage
    if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
        prompt, completion, cached = (
            usage.prompt_tokens,
            usage.completion_tokens,
            cached_tokens(usage),
        )
    elif ctx.deployment is None:  # never reached a provider
        prompt, completion, cached = 0, 0, 0
    else:
        prompt, completion, cached = prompt_estimate, output_counted, 0
    cost = cost_nano_usd(price, prompt, completion, cached) if price is not None else 0
    return Spent(prompt, completion, cached, cost)


def ledger_row(
    ctx: RequestContext, used: Spent, status: int, now: float, wall: float, row_id: str
) -> LedgerRow:
    principal = ctx.principal
    latency = (now - ctx.timings.start) * 1000
    return LedgerRow(
        id=row_id,
        request_id=ctx.request_id,
        time=datetime.fromtimestamp(wall, UTC),
        key_id=principal.key_id if principal is not None else None,
        team_id=principal.team_id if principal is not None else None,
        model=ctx.model,
        deployment=ctx.deployment,
        provider=ctx.provider,
        prompt_tokens=used.prompt_tokens,
        completion_tokens=used.completion_tokens,
        cached_tokens=used.cached_tokens,
        cost_nano_usd=used.cost_nano_usd,
        latency_ms=round(latency, 3),
        status=status,
        stream=ctx.stream,
        tags=principal.tags if principal is not None else {},
        cache=ctx.cache,
        saved_nano_usd=ctx.saved_nano_usd,
    )


class RowIds:
    """Unique ledger row ids without a system call each: a random prefix per process
    and a counter (``os.urandom`` costs ~15 us a call on some virtual machines)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"
