"""Input guardrails: shape limits, then each scanned message checked and blocked,
redacted or anonymised by its policy; on the way out, anonymised values are restored
(across stream chunks too). In the stage list only when guardrails are configured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelway.config_guardrails import GuardrailPolicy, InputPolicy
from modelway.guardrails.anonymizer import Placeholders, StreamRestorer
from modelway.guardrails.detectors import Detectors
from modelway.guardrails.input_policy import InputChecks, Verdict
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import Next, aclose
from modelway.protocol.errors import BadRequest, PayloadTooLarge
from modelway.protocol.openai_chat import ChatChunk, ChatMessage, ChatRequest, ChatResponse
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse

HEADER = "x-modelway-guardrails"
_INLINE_CHARS = 4_000
PolicyFor = Callable[[RequestContext], GuardrailPolicy]


class GuardrailBlocked(BadRequest):
    default_code = "guardrail_blocked"


class InputGuard:
    def __init__(
        self, policy_for: PolicyFor, detectors: Detectors, on_action: Callable[[str], None]
    ) -> None:
        self._policy_for = policy_for
        self._detectors = detectors
        self._on_action = on_action  # metrics: one call per action taken

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        policy = self._policy_for(ctx)
        checks = InputChecks(policy.input, self._detectors)
        verdict, placeholders = Verdict(), Placeholders()
        ctx.placeholders = placeholders
        chars = _check_shape(ctx, policy.input)
        if chars > _INLINE_CHARS:  # detectors take ~1.5 ms per 1,000 characters: off the loop
            ctx.request = await asyncio.to_thread(
                _rewritten, ctx.request, checks, verdict, placeholders
            )
        else:
            ctx.request = _rewritten(ctx.request, checks, verdict, placeholders)
        for action in verdict.actions:
            self._on_action(action)
        ctx.guardrail_actions.extend(verdict.actions)
        if verdict.actions:
            ctx.response_headers[HEADER] = ",".join(verdict.actions)
        if verdict.blocked is not None:
            raise GuardrailBlocked(
                f"the request was blocked by the guardrail policy ({verdict.blocked})",
                param="messages",
            )
        if verdict.confidential:
            ctx.data_class = "confidential"
        result = await call_next(ctx)
        if not placeholders.used:
            return result
        if isinstance(result, AsyncIterator):
            return _restored_stream(result, placeholders)
        return _restored(result, placeholders)


def _check_shape(ctx: RequestContext, policy: InputPolicy) -> int:
    """Refuse what exceeds the policy's limits; the characters to scan."""
    req = ctx.request
    if not isinstance(req, ChatRequest):
        prompt = getattr(req, "prompt", "")
        return len(prompt) if isinstance(prompt, str) else 0
    if policy.max_messages is not None and len(req.messages) > policy.max_messages:
        raise BadRequest(
            f"{len(req.messages)} messages is more than this policy's limit of "
            f"{policy.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    chars = sum(len(m.text()) for m in req.messages)
    if policy.max_chars is not None and chars > policy.max_chars:
        raise PayloadTooLarge(
            f"the messages hold {chars} characters, more than this policy's limit of "
            f"{policy.max_chars}",
            param="messages",
            code="too_many_characters",
        )
    if policy.max_tokens is not None and chars // 4 > policy.max_tokens:
        raise BadRequest(
            f"the messages hold about {chars // 4} tokens, more than this policy's limit of "
            f"{policy.max_tokens}",
            param="messages",
            code="too_many_tokens",
        )
    images = sum(
        1
        for m in req.messages
        if isinstance(m.content, list)
        for part in m.content
        if part.get("type") in ("image_url", "input_image")
    )
    if policy.max_images is not None and images > policy.max_images:
        raise BadRequest(
            f"{images} images is more than this policy's limit of {policy.max_images}",
            param="messages",
            code="too_many_images",
        )
    return chars


def _rewritten(req: Any, checks: InputChecks, verdict: Verdict, placeholders: Placeholders) -> Any:
    if isinstance(req, ChatRequest):
        roles = set(checks.policy.roles)
        messages = [
            _message(m, checks, verdict, placeholders) if m.role in roles else m
            for m in req.messages
        ]
        if any(a is not b for a, b in zip(messages, req.messages, strict=True)):
            return req.model_copy(update={"messages": messages})
        return req
    if isinstance(req, CompletionRequest) and isinstance(req.prompt, str):
        prompt = checks.text(req.prompt, verdict, placeholders)
        return req.model_copy(update={"prompt": prompt}) if prompt != req.prompt else req
    return req


def _message(
    message: ChatMessage, checks: InputChecks, verdict: Verdict, placeholders: Placeholders
) -> ChatMessage:
    content = message.content
    if isinstance(content, str):
        checked = checks.text(content, verdict, placeholders)
        return message if checked == content else message.model_copy(update={"content": checked})
    if isinstance(content, list):
        parts, changed = [], False
        for part in content:
            if part.get("type") == "text":
                checked = checks.text(part["text"], verdict, placeholders)
                if checked != part["text"]:
                    part, changed = {**part, "text": checked}, True
            parts.append(part)
        return message.model_copy(update={"content": parts}) if changed else message
    return message


def _restored(result: Result, placeholders: Placeholders) -> Result:
    if isinstance(result, ChatResponse):
        for choice in result.choices:
            if choice.message.content:
                choice.message.content = placeholders.restore(choice.message.content)
    elif isinstance(result, CompletionResponse):
        for c in result.choices:
            c.text = placeholders.restore(c.text)
    return result


async def _restored_stream(
    chunks: AsyncIterator[Chunk], placeholders: Placeholders
) -> AsyncIterator[Chunk]:
    restorers: dict[int, StreamRestorer] = {}
    try:
        async for chunk in chunks:
            for choice in chunk.choices:
                restorer = restorers.setdefault(choice.index, StreamRestorer(placeholders))
                if isinstance(chunk, ChatChunk):
                    text = choice.delta.content  # type: ignore[union-attr]
                    end = choice.finish_reason is not None
                    out = (restorer.feed(text) if text else "") + (restorer.flush() if end else "")
                    if text or out:
                        choice.delta.content = out  # type: ignore[union-attr]
                else:
                    end = choice.finish_reason is not None
                    choice.text = restorer.feed(choice.text) + (  # type: ignore[union-attr]
                        restorer.flush() if end else ""
                    )
            yield chunk
    finally:
        await aclose(chunks)
