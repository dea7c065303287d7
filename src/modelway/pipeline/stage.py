"""The stage protocol and the chain that runs an ordered list of stages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from modelway.pipeline.context import RequestContext, Result

Next = Callable[[RequestContext], Awaitable[Result]]


class Stage(Protocol):
    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result: ...


class Handler(Protocol):
    """The innermost step: it answers without a ``call_next``."""

    async def __call__(self, ctx: RequestContext) -> Result: ...


def build_chain(stages: Sequence[Stage], innermost: Handler) -> Next:
    """Fold the stages, outermost first, around the innermost handler, once."""
    chain: Next = innermost
    for stage in reversed(stages):
        chain = _bind(stage, chain)
    return chain


def _bind(stage: Stage, call_next: Next) -> Next:
    async def step(ctx: RequestContext) -> Result:
        return await stage(ctx, call_next)

    return step


async def aclose(chunks: AsyncIterator[Any]) -> None:
    """Close a stream a stage wrapped (its generator's cleanup runs now, not at GC)."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
