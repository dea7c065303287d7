"""Output guardrails: secrets and PII in answers redacted (streams through a hold-back
window), moderation (a tripped answer becomes a refusal with finish_reason
content_filter), markdown/HTML sanitised, and JSON answers validated against the
request's schema (one retry). In the stage list only when guardrails are configured."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from modelway.config_guardrails import GuardrailPolicy, OutputPolicy
from modelway.guardrails.anonymizer import Placeholders, StreamRedactor
from modelway.guardrails.detectors import Detectors
from modelway.guardrails.findings import Finding
from modelway.guardrails.json_output import validate_json_answer
from modelway.guardrails.moderation import ModerationWatch, Moderator
from modelway.guardrails.sanitize import StreamSanitizer, sanitize_markdown
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.input_guard import HEADER
from modelway.pipeline.stage import Next, aclose
from modelway.protocol.errors import UpstreamError
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse

REFUSAL = "The answer was withheld by the content policy."
PolicyFor = Callable[[RequestContext], GuardrailPolicy]


class OutputGuard:
    def __init__(
        self, policy_for: PolicyFor, detectors: Detectors, on_action: Callable[[str], None]
    ) -> None:
        self._policy_for = policy_for
        self._detectors = detectors
        self._on_action = on_action
        self._moderators: dict[tuple[tuple[str, ...], tuple[str, ...]], Moderator] = {}

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        policy = self._policy_for(ctx).output
        schema = _json_format(ctx) if policy.validate_json else None
        result = await call_next(ctx)
        if isinstance(result, AsyncIterator):
            return self._stream(ctx, policy, result)
        if not isinstance(result, ChatResponse):
            return result
        if schema is not None and (problem := _invalid(result, schema)) is not None:
            self._note(ctx, "json:retry")
            result = await call_next(ctx)  # one more try
            assert isinstance(result, ChatResponse)
            if (problem := _invalid(result, schema)) is not None:
                self._note(ctx, "json:invalid")
                raise UpstreamError(f"the model's answer does not match the schema: {problem}")
        for choice in result.choices:
            text = choice.message.content
            if not text:
                continue
            if self._moderated(policy, text):
                self._note(ctx, "moderation:refuse")
                choice.message.content, choice.finish_reason = REFUSAL, "content_filter"
                continue
            choice.message.content = self._clean(ctx, policy, text)
        return result

    def _clean(self, ctx: RequestContext, policy: OutputPolicy, text: str) -> str:
        findings = self._detect(policy)(text)
        if findings:
            self._note(ctx, "output.redact")
            text = _placeholders(ctx).redact(text, findings)
        if policy.allowed_domains is not None:
            text, removed = sanitize_markdown(text, policy.allowed_domains)
            if removed:
                self._note(ctx, "output.sanitize")
        return text

    def _detect(self, policy: OutputPolicy) -> Callable[[str], list[Finding]]:
        pii = self._detectors.pii(tuple(policy.pii_entities)) if policy.pii == "redact" else None
        secrets = self._detectors.secrets if policy.secrets == "redact" else None

        def detect(text: str) -> list[Finding]:
            found = secrets.find(text) if secrets is not None else []
            return found + (pii.find(text) if pii is not None else [])

        return detect

    def _moderator(self, policy: OutputPolicy) -> Moderator | None:
        if not policy.moderation and not policy.blocked_terms:
            return None
        key = (tuple(policy.moderation), tuple(policy.blocked_terms))
        found = self._moderators.get(key)
        if found is None:
            found = self._moderators[key] = Moderator(policy.moderation, policy.blocked_terms)
        return found

    def _moderated(self, policy: OutputPolicy, text: str) -> bool:
        moderator = self._moderator(policy)
        return moderator is not None and bool(moderator.check(text))

    def _note(self, ctx: RequestContext, action: str) -> None:
        self._on_action(action)
        if action not in ctx.guardrail_actions:
            ctx.guardrail_actions.append(action)

    async def _stream(
        self, ctx: RequestContext, policy: OutputPolicy, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        detect = self._detect(policy)
        moderator = self._moderator(policy)
        placeholders = _placeholders(ctx)
        lanes: dict[int, _Lane] = {}
        try:
            async for chunk in chunks:
                if not isinstance(chunk, ChatChunk):
                    yield chunk
                    continue
                refused = False
                for choice in chunk.choices:
                    lane = lanes.get(choice.index)
                    if lane is None:
                        lane = lanes[choice.index] = _Lane(policy, detect, moderator, placeholders)
                    text = choice.delta.content
                    out = lane.feed(text) if text else ""
                    if choice.finish_reason is not None:
                        out += lane.flush()
                    if lane.refused:
                        refused = True
                        choice.delta.content = REFUSAL if not lane.told else ""
                        lane.told = True
                        choice.finish_reason = "content_filter"
                    elif text or out:
                        choice.delta.content = out
                if refused:
                    self._note(ctx, "moderation:refuse")
                    yield chunk
                    return  # the rest of the answer is not sent
                yield chunk
        finally:
            await aclose(chunks)
            if any(lane.redacted for lane in lanes.values()):
                self._note(ctx, "output.redact")
            if any(lane.sanitized for lane in lanes.values()):
                self._note(ctx, "output.sanitize")


class _Lane:
    """One choice's text on its way out: moderation watch, redaction, sanitising."""

    def __init__(
        self,
        policy: OutputPolicy,
        detect: Callable[[str], list[Finding]],
        moderator: Moderator | None,
        placeholders: Placeholders,
    ) -> None:
        self._redactor = StreamRedactor(
            detect, hold_back=policy.hold_back_chars, placeholders=placeholders
        )
        self._sanitizer = (
            StreamSanitizer(policy.allowed_domains) if policy.allowed_domains is not None else None
        )
        self._watch = ModerationWatch(moderator) if moderator is not None else None
        self.refused = False
        self.told = False

    def feed(self, text: str) -> str:
        if self._watch is not None and self._watch.feed(text):
            self.refused = True
            return ""
        out = self._redactor.feed(text)
        return self._sanitizer.feed(out) if self._sanitizer is not None else out

    def flush(self) -> str:
        out = self._redactor.flush()
        if self._sanitizer is not None:
            out = self._sanitizer.feed(out) + self._sanitizer.flush()
        return out

    @property
    def redacted(self) -> bool:
        return self._redactor.redacted

    @property
    def sanitized(self) -> bool:
        return self._sanitizer is not None and bool(self._sanitizer.removed)


def _placeholders(ctx: RequestContext) -> Placeholders:
    """The request's mapping, so output placeholders never collide with input ones."""
    if ctx.placeholders is None:
        ctx.placeholders = Placeholders()
    found: Placeholders = ctx.placeholders
    return found


def _json_format(ctx: RequestContext) -> dict[str, Any] | None:
    req = ctx.request
    if not isinstance(req, ChatRequest) or ctx.stream:
        return None
    fmt = getattr(req, "response_format", None)
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return fmt
    return None


def _invalid(result: ChatResponse, response_format: dict[str, Any]) -> str | None:
    for choice in result.choices:
        problem = validate_json_answer(choice.message.content or "", response_format)
        if problem is not None:
            return problem
    return None


__all__ = ["HEADER", "OutputGuard"]
