"""Opt-in logging of prompts and completions (`logging.log_content`): the texts are put
on the request's log line with PII and secrets redacted first. In the stage list only
when turned on, just inside the observe stage, so the prompt it records is the one that
went upstream (anonymised when the guardrails did) and the answer the one the client got."""

from __future__ import annotations

from collections.abc import AsyncIterator

from modelway.guardrails.anonymizer import Placeholders
from modelway.guardrails.pii import PIIDetector
from modelway.guardrails.secrets import SecretsDetector
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import Next
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse

MAX_LOGGED_CHARS = 20_000


class ContentLog:
    def __init__(self) -> None:
        self._pii = PIIDetector()
        self._secrets = SecretsDetector()

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        try:
            result = await call_next(ctx)
        except BaseException:
            self._record(ctx, None)
            raise
        if isinstance(result, AsyncIterator):
            return self._collect(ctx, result)
        self._record(ctx, _answer_text(result))
        return result

    async def _collect(
        self, ctx: RequestContext, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        pieces: list[str] = []
        try:
            async for chunk in chunks:
                for choice in chunk.choices:
                    if choice.index == 0:
                        text = (
                            choice.delta.content  # type: ignore[union-attr]
                            if isinstance(chunk, ChatChunk)
                            else choice.text  # type: ignore[union-attr]
                        )
                        if text:
                            pieces.append(text)
                yield chunk
        finally:
            self._record(ctx, "".join(pieces))

    def _record(self, ctx: RequestContext, answer: str | None) -> None:
        ctx.logged_content = {
            "prompt": self._redacted(_prompt_text(ctx)),
            "completion": self._redacted(answer) if answer is not None else None,
        }

    def _redacted(self, text: str) -> str:
        text = text[:MAX_LOGGED_CHARS]
        findings = self._secrets.find(text) + self._pii.find(text)
        return Placeholders().redact(text, findings) if findings else text


def _prompt_text(ctx: RequestContext) -> str:
    req = ctx.request
    if isinstance(req, ChatRequest):
        return "\n".join(f"{m.role}: {m.text()}" for m in req.messages)
    if isinstance(req, CompletionRequest) and isinstance(req.prompt, str):
        return req.prompt
    return ""


def _answer_text(result: Result) -> str | None:
    if isinstance(result, ChatResponse) and result.choices:
        return result.choices[0].message.content or ""
    if isinstance(result, CompletionResponse) and result.choices:
        return result.choices[0].text
    return None
