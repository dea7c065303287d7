"""What a request says about how to route it: its session or prefix affinity key, its
estimated tokens, its queue priority and tenant, and its deadline."""

from __future__ import annotations

import time

from modelway.pipeline.context import RequestContext
from modelway.protocol import errors
from modelway.protocol.openai_chat import ChatRequest
from modelway.protocol.openai_completions import CompletionRequest
from modelway.protocol.openai_embeddings import EmbeddingRequest
from modelway.routing.router import ModelGroupRuntime

TIMEOUT_HEADER = "x-modelway-timeout-ms"
PRIORITY_HEADER = "x-modelway-priority"


PREFIX_AFFINITY_CHARS = 2048  # a shared prompt at least this long pins a deployment


def affinity_key(ctx: RequestContext) -> str | None:
    """The session key (x-session-id, else the request's user), else, for a long prompt,
    its first characters: requests sharing a long prefix reuse one replica's cache."""
    explicit = ctx.headers.get("x-session-id") or getattr(ctx.request, "user", None)
    if explicit:
        return str(explicit)
    req = ctx.request
    if isinstance(req, ChatRequest):
        text = "".join(f"{m.role}:{m.text()}" for m in req.messages)
    elif isinstance(req, CompletionRequest) and isinstance(req.prompt, str):
        text = req.prompt
    else:
        return None
    return text[:PREFIX_AFFINITY_CHARS] if len(text) >= PREFIX_AFFINITY_CHARS else None


def estimated_tokens(ctx: RequestContext) -> int:
    """Prompt (about four characters a token) plus the most the answer may take."""
    req = ctx.request
    if isinstance(req, ChatRequest):
        chars = sum(len(m.text()) for m in req.messages)
    else:
        source = req.prompt if isinstance(req, CompletionRequest) else req.input
        chars = len(source) if isinstance(source, str) else 4 * len(source)
    limit = req.output_limit if isinstance(req, ChatRequest | CompletionRequest) else 0
    return chars // 4 + (limit or 256 if not isinstance(req, EmbeddingRequest) else 0)


def priority_of(ctx: RequestContext) -> int:
    """The header's priority; a key or team with a priority caps it (a client may lower
    its own requests, not raise them above its policy)."""
    principal = ctx.principal
    policy = principal.priority if principal is not None else None
    raw = ctx.headers.get(PRIORITY_HEADER)
    if raw is None:
        return policy if policy is not None else 0
    try:
        asked = int(raw)
    except ValueError:
        raise errors.BadRequest(
            f"{PRIORITY_HEADER} must be an integer (higher goes first)", param=PRIORITY_HEADER
        ) from None
    return min(asked, policy) if policy is not None else asked


def tenant_of(ctx: RequestContext) -> tuple[str, float]:
    """Who shares the queue fairly with whom: teams (each key alone without one)."""
    principal = ctx.principal
    if principal is None:
        return "", 1.0
    return principal.team_id or principal.key_id, principal.queue_weight


def deadline_of(ctx: RequestContext, group: ModelGroupRuntime) -> float | None:
    limits = []
    if group.routing.timeout_seconds is not None:
        limits.append(group.routing.timeout_seconds)
    header = ctx.headers.get(TIMEOUT_HEADER)
    if header is not None:
        try:
            milliseconds = float(header)
        except ValueError:
            raise errors.BadRequest(
                f"{TIMEOUT_HEADER} must be a number of milliseconds", param=TIMEOUT_HEADER
            ) from None
        if milliseconds <= 0:
            raise errors.BadRequest(f"{TIMEOUT_HEADER} must be positive", param=TIMEOUT_HEADER)
        limits.append(milliseconds / 1000)
    return time.monotonic() + min(limits) if limits else None


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
