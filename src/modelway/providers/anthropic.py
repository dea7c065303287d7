"""The Anthropic Messages API behind the ``Provider`` interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelway.config import AnthropicDeployment
from modelway.protocol import errors
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse
from modelway.protocol.sse import parse_sse
from modelway.providers.anthropic_translate import (
    AnthropicStreamTranslator,
    from_anthropic_response,
    read_anthropic_error,
    to_anthropic_request,
)
from modelway.providers.base import Provider
from modelway.providers.upstream_http import UpstreamHTTP

MESSAGES_PATH = "/v1/messages"
HEALTH_PATH = "/v1/models"


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, deployment: AnthropicDeployment, name: str) -> None:
        self.deployment_name = name
        self.deployment = deployment
        self._where = f"upstream {name}"
        self._http = UpstreamHTTP(
            base_url=deployment.base_url,
            headers=self._credentials(deployment),
            read_error=read_anthropic_error,
            name=name,
            timeout_seconds=deployment.timeout_seconds,
            connect_timeout_seconds=deployment.connect_timeout_seconds,
            max_connections=deployment.max_connections,
        )

    @staticmethod
    def _credentials(deployment: AnthropicDeployment) -> dict[str, str]:
        headers = {"anthropic-version": deployment.anthropic_version}
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.get_secret_value()
        return {**headers, **deployment.headers}

    async def close(self) -> None:
        await self._http.close()

    async def chat(self, req: ChatRequest) -> ChatResponse:
        body = to_anthropic_request(req, self.deployment.default_max_tokens)
        payload = await self._http.post(MESSAGES_PATH, orjson.dumps(body))
        return from_anthropic_response(self._decode(payload), self._where)

    async def chat_stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = to_anthropic_request(req, self.deployment.default_max_tokens)
        body["stream"] = True
        translator = AnthropicStreamTranslator(self._where)
        # Closing both explicitly releases the upstream connection at once when the
        # client goes away mid-stream.
        raw = self._http.post_stream(MESSAGES_PATH, orjson.dumps(body))
        events = parse_sse(raw)
        try:
            async for event in events:
                if not event.data:
                    continue
                for chunk in translator.feed(event.event, self._decode(event.data.encode())):
                    yield chunk
        finally:
            await events.aclose()
            await raw.aclose()
        translator.check_complete()

    async def health(self) -> bool:
        return await self._http.get_ok(HEALTH_PATH)

    def _decode(self, payload: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise errors.UpstreamError(f"{self._where}: the answer is not a JSON object")
        return data
