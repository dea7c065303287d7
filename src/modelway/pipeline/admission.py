"""Limits, budgets and accounting around the call.

Before: count the prompt's tokens, take the request and its tokens from every rate
window, a concurrency slot, and its maximum possible cost from every hard budget, all
at once (one round trip to the counters). After: reconcile with the real usage, price
it, and hand the ledger row to the writer. Settling runs off the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from modelway.access.principal import BudgetRule
from modelway.accounting.ledger import LedgerWriter
from modelway.accounting.metering import GroupMeter, RowIds, Spent, ledger_row, spent
from modelway.accounting.pricing import Price, cost_nano_usd, format_usd, usd_to_nano
from modelway.accounting.reservation import Reservation, plan, rate_headers, refusal
from modelway.accounting.tokens import max_output_tokens, prompt_tokens, prompt_tokens_async
from modelway.config_access import BudgetsConfig, LimitsConfig
from modelway.observability.logging import get_logger
from modelway.observability.request_metrics import RequestMetrics
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import Next
from modelway.protocol.errors import GatewayError, Unavailable
from modelway.protocol.openai_chat import ChatChunk
from modelway.store.counters import Budget, Counters, CountersUnavailable

_log = get_logger("modelway.limits")
SpendSince = Callable[[BudgetRule, datetime | None], Awaitable[int]]
# (scope, owner, period, spent USD, limit USD, mode): the alert engine's record_budget.
BudgetListener = Callable[[str, str, str, float, float, str], None]


class Admission:
    def __init__(
        self,
        *,
        counters: Counters,
        ledger: LedgerWriter,
        meters: Mapping[str, GroupMeter],
        prices: Mapping[str, Price | None],
        global_budgets: list[BudgetRule],
        limits: LimitsConfig,
        budgets: BudgetsConfig,
        spend_since: SpendSince,
        metrics: RequestMetrics,
        budget_listener: BudgetListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._counters = counters
        self._ledger = ledger
        self._meters = meters
        self._prices = prices  # per deployment id
        self._global = global_budgets
        self._limits = limits
        self._budgets = budgets
        self._spend_since = spend_since
        self._metrics = metrics
        self._budget_listener = budget_listener
        self._clock = clock
        self._seeded: set[str] = set()
        self._ids = RowIds()

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        meter = self._meters.get(ctx.model)
        if meter is None:  # not a model group: routing answers 404
            return await call_next(ctx)
        now = self._clock()
        # Counting costs time: only done up front when a limit or budget needs the figure.
        counted = self._needs_tokens(ctx, meter)
        prompt = await self._count_prompt(ctx, meter) if counted else 0
        out = max_output_tokens(ctx.request, self._limits.default_output_tokens)
        max_cost = cost_nano_usd(meter.max_price, prompt, out) if meter.max_price else 0
        res = plan(ctx.principal, self._global, prompt + out, max_cost, now)
        if not res.empty:
            await self._admit(ctx, res, now)
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            status = exc.status if isinstance(exc, GatewayError) else 499
            self._finish(ctx, res, now, prompt, 0, status)
            raise
        if isinstance(result, AsyncIterator):
            return self._metered(ctx, res, now, prompt, meter, result)
        used = self._finish(ctx, res, now, prompt, 0, 200)
        ctx.response_headers["x-modelway-cost-usd"] = format_usd(used.cost_nano_usd)
        return result

    def _needs_tokens(self, ctx: RequestContext, meter: GroupMeter) -> bool:
        principal = ctx.principal
        if principal is not None and any(
            limits is not None and limits.tpm is not None
            for limits in (principal.key_limits, principal.team_limits)
        ):
            return True
        if meter.max_price is None:
            return False
        rules = [*(principal.budgets if principal is not None else ()), *self._global]
        return any(rule.mode == "hard" for rule in rules)

    async def _count_prompt(self, ctx: RequestContext, meter: GroupMeter) -> int:
        return await prompt_tokens_async(ctx.request, meter.counter)

    async def _admit(self, ctx: RequestContext, res: Reservation, now: float) -> None:
        try:
            await self._seed(res)
            taken = await self._counters.admit(
                res.windows, res.slots, res.budgets, lease=ctx.request_id, now=now
            )
        except CountersUnavailable:
            self._unavailable(res)
            res.drop()
            return
        if not taken.allowed:
            self._count_refusal(taken.denied_key or "")
            error = refusal(res, taken, datetime.fromtimestamp(now, UTC))
            ctx.response_headers.update(rate_headers(res, taken.windows))
            res.drop()
            refused = Spent(0, 0, 0, 0)
            self._account(ctx, res, now, refused, error.status, time.perf_counter(), self._clock())
            raise error
        ctx.response_headers.update(rate_headers(res, taken.windows))
        if res.budgets:  # while the call is under way: it waits on its upstream meanwhile
            asyncio.get_running_loop().call_soon(self._watch_budgets, res, taken.budgets_spent)

    def _count_refusal(self, denied: str) -> None:
        # Counter keys read "key:<id>:rpm", "team:<id>:parallel", "budget:<scope>:...".
        parts = denied.split(":")
        if parts[0] == "budget":
            self._metrics.budget_rejected(parts[1] if len(parts) > 1 else "")
        else:
            self._metrics.rate_limited(parts[0], parts[-1])

    async def _seed(self, res: Reservation) -> None:
        """A budget counter starts from the ledger's spend in its period (after a restart,
        or when Redis lost it); only the first request per period per replica asks."""
        for budget, rule, period in zip(res.budgets, res.rules, res.periods, strict=True):
            if budget.key in self._seeded:
                continue
            try:
                total = await self._spend_since(rule, period.start)
            except Exception as exc:
                _log.warning("budget_seed_failed", budget=budget.key, error=type(exc).__name__)
                continue
            await self._counters.seed_budget(budget.key, total, budget.ttl_seconds)
            self._seeded.add(budget.key)

    def _unavailable(self, res: Reservation) -> None:
        closed_budgets = self._budgets.on_redis_failure == "closed" and res.has_hard_budget
        closed_limits = self._limits.on_redis_failure == "closed" and (res.windows or res.slots)
        _log.error(
            "counters_unavailable", failing="closed" if closed_budgets or closed_limits else "open"
        )
        if closed_budgets or closed_limits:
            raise Unavailable("limits and budgets cannot be checked right now", retry_after=1)

    def _watch_budgets(self, res: Reservation, spent_at_admission: tuple[int, ...]) -> None:
        """Tell the metrics (team and global budgets) and the alerts (all) what is left."""
        for rule, budget, spent_now in zip(
            res.rules, res.budgets, spent_at_admission, strict=False
        ):
            limit = usd_to_nano(rule.limit_usd)
            spent = spent_now - budget.amount  # this request's reservation is not spent yet
            if rule.scope != "key":
                left = max(limit - spent, 0) / 1e9
                self._metrics.budget_remaining(rule.owner, rule.period, left)
            if self._budget_listener is not None:
                self._budget_listener(
                    rule.scope, rule.owner, rule.period, spent / 1e9, limit / 1e9, rule.mode
                )

    async def _metered(
        self,
        ctx: RequestContext,
        res: Reservation,
        now: float,
        prompt: int,
        meter: GroupMeter,
        chunks: AsyncIterator[Chunk],
    ) -> AsyncIterator[Chunk]:
        reserved_out = res.tokens - prompt
        extensible = res.has_hard_budget and _no_max_tokens(ctx)
        counted, status = 0, 499
        try:
            async for chunk in chunks:
                counted += _chunk_tokens(chunk, meter)
                if extensible and counted > reserved_out:
                    reserved_out += await self._extend(res, meter, now)
                yield chunk
            status = 200
        except GatewayError as exc:
            status = exc.status
            raise
        finally:
            if hasattr(chunks, "aclose"):
                await chunks.aclose()
            self._finish(ctx, res, now, prompt, counted, status)

    async def _extend(self, res: Reservation, meter: GroupMeter, now: float) -> int:
        """Reserve budget for the next stretch of a stream that set no max_tokens."""
        step = self._budgets.stream_step_tokens
        price = meter.max_price
        amount = cost_nano_usd(price, 0, step) if price is not None else 0
        more = [
            Budget(b.key, b.limit, amount if r.mode == "hard" else 0, b.ttl_seconds)
            for b, r in zip(res.budgets, res.rules, strict=True)
        ]
        try:
            taken = await self._counters.extend(more, [], now=self._clock())
        except CountersUnavailable:
            if self._budgets.on_redis_failure == "closed":
                raise Unavailable("budgets cannot be checked right now") from None
            return step
        if not taken.allowed:
            raise refusal(res, taken, datetime.fromtimestamp(now, UTC))
        res.cost_nano_usd += amount
        return step

    def _finish(
        self,
        ctx: RequestContext,
        res: Reservation,
        taken_at: float,
        prompt: int,
        out: int,
        status: int,
    ) -> Spent:
        price = self._prices.get(ctx.deployment or "")
        usage = ctx.usage
        if prompt == 0 and ctx.deployment is not None and not (usage and usage.prompt_tokens):
            meter = self._meters[ctx.model]
            prompt = prompt_tokens(ctx.request, meter.counter)  # the provider sent no usage
        used = spent(ctx, prompt, out, price)
        if ctx.cache_source is not None and (made_by := self._prices.get(ctx.cache_source)):
            # A cached answer: no call was made; what it would have cost is saved.
            ctx.saved_nano_usd = cost_nano_usd(
                made_by, used.prompt_tokens, used.completion_tokens, used.cached_tokens
            )
        ctx.cost_nano_usd = used.cost_nano_usd
        ctx.cached_tokens = used.cached_tokens
        ended, wall = time.perf_counter(), self._clock()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream finalised after its loop stopped
            self._account(ctx, res, taken_at, used, status, ended, wall)
            return used
        # The ledger row and the settlement wait for the answer to be on its way; the
        # callback runs before anything the event loop does next, the caller's next
        # request included.
        loop.call_soon(self._account, ctx, res, taken_at, used, status, ended, wall)
        return used

    def _account(
        self,
        ctx: RequestContext,
        res: Reservation,
        taken_at: float,
        used: Spent,
        status: int,
        ended: float,
        wall: float,
    ) -> None:
        """The ledger row, and the settlement if anything was taken."""
        self._ledger.record(ledger_row(ctx, used, status, ended, wall, self._ids.next()))
        if not res.empty:
            self._settle(ctx, res, taken_at, used)

    def _settle(self, ctx: RequestContext, res: Reservation, taken_at: float, used: Spent) -> None:
        actual_tokens = used.prompt_tokens + used.completion_tokens
        windows = [(w, actual_tokens - w.amount) for w in res.windows if w.key.endswith(":tpm")]
        budgets = [
            (b, used.cost_nano_usd - (res.cost_nano_usd if r.mode == "hard" else 0))
            for b, r in zip(res.budgets, res.rules, strict=True)
        ]
        request_id = ctx.request_id

        def failed(exc: BaseException) -> None:
            _log.error("settle_failed", request_id=request_id, error=type(exc).__name__)

        self._counters.settle_soon(
            windows, budgets, res.slots, lease=request_id, taken_at=taken_at, failed=failed
        )


def _no_max_tokens(ctx: RequestContext) -> bool:
    req: Any = ctx.request
    return (
        getattr(req, "max_tokens", None) is None
        and getattr(req, "max_completion_tokens", None) is None
    )


def _chunk_tokens(chunk: Chunk, meter: GroupMeter) -> int:
    total = 0
    if isinstance(chunk, ChatChunk):
        texts = [choice.delta.content for choice in chunk.choices]
    else:
        texts = [choice.text for choice in chunk.choices]
    for text in texts:
        if text:
            total += meter.counter.count(text)
    return total
