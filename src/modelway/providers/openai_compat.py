"""Any OpenAI-compatible server: OpenAI, Azure OpenAI, vLLM, SGLang, TGI, llama.cpp
server, Ollama, Groq, Together, Mistral, DeepSeek, OpenRouter.

The request goes out as the client sent it (unknown fields included) with the model
name replaced; answers come back parsed once into the internal types, which are the
OpenAI types, so nothing is lost on the way through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from modelway.config import OpenAIDeployment
from modelway.protocol import errors
from modelway.protocol.json_body import to_dict
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse
from modelway.protocol.openai_embeddings import EmbeddingRequest, EmbeddingResponse
from modelway.protocol.sse import parse_sse
from modelway.providers.base import Provider
from modelway.providers.upstream_http import UpstreamFailure, UpstreamHTTP, error_for

M = TypeVar("M", bound=BaseModel)


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, deployment: OpenAIDeployment, name: str) -> None:
        self.deployment_name = name
        headers: dict[str, str] = {}
        if deployment.api_key is not None:
            key = deployment.api_key.get_secret_value()
            if deployment.api_version:  # Azure OpenAI authenticates with an api-key header
                headers["api-key"] = key
            else:
                headers["authorization"] = f"Bearer {key}"
        headers.update(deployment.headers)
        self._params = {"api-version": deployment.api_version} if deployment.api_version else None
        self._http = UpstreamHTTP(
            base_url=deployment.base_url,
            headers=headers,
            read_error=read_openai_error,
            name=name,
            timeout_seconds=deployment.timeout_seconds,
            connect_timeout_seconds=deployment.connect_timeout_seconds,
            max_connections=deployment.max_connections,
        )

    async def close(self) -> None:
        await self._http.close()

    async def chat(self, req: ChatRequest) -> ChatResponse:
        body = _body(req, stream=False)
        payload = await self._http.post("/chat/completions", body, params=self._params)
        return self._parse(ChatResponse, payload)

    async def chat_stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = _body(req, stream=True)
        raw = self._http.post_stream("/chat/completions", body, params=self._params)
        async for data in self._events(raw):
            yield self._parse(ChatChunk, data)

    async def complete(self, req: CompletionRequest) -> CompletionResponse:
        body = _body(req, stream=False)
        payload = await self._http.post("/completions", body, params=self._params)
        return self._parse(CompletionResponse, payload)

    async def complete_stream(self, req: CompletionRequest) -> AsyncIterator[CompletionResponse]:
        body = _body(req, stream=True)
        raw = self._http.post_stream("/completions", body, params=self._params)
        async for data in self._events(raw):
            yield self._parse(CompletionResponse, data)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        payload = await self._http.post(
            "/embeddings", orjson.dumps(to_dict(req)), params=self._params
        )
        return self._parse(EmbeddingResponse, payload)

    async def health(self) -> bool:
        return await self._http.get_ok("/models", params=self._params)

    async def _events(self, raw: AsyncGenerator[bytes, None]) -> AsyncIterator[str]:
        """The data of each SSE event up to ``[DONE]``; an error event raises."""
        async with aclosing(raw), aclosing(parse_sse(raw)) as events:
            async for event in events:
                if event.data == "[DONE]":
                    return
                if event.data.startswith('{"error"') or event.event == "error":
                    raise self._stream_error(event.data)
                yield event.data
        raise errors.UpstreamError(
            f"upstream {self.deployment_name}: the stream ended before [DONE]"
        )

    def _parse(self, model: type[M], payload: bytes | str) -> M:
        try:
            return model.model_validate_json(payload)
        except ValidationError:
            pass
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "error" in obj:
            raise self._stream_error(payload)
        raise errors.UpstreamError(
            f"upstream {self.deployment_name}: answered with a body that is not a valid "
            f"{model.__name__}"
        )

    def _stream_error(self, data: bytes | str) -> errors.GatewayError:
        raw = data.encode() if isinstance(data, str) else data
        status = 500
        try:
            code = orjson.loads(raw).get("error", {}).get("code")
            if isinstance(code, int):
                status = code
        except (orjson.JSONDecodeError, AttributeError):
            pass
        failure = read_openai_error(status, raw)
        return error_for(failure, None, f"upstream {self.deployment_name}")


def _body(req: BaseModel, *, stream: bool) -> bytes:
    body: dict[str, Any] = to_dict(req)
    if stream:
        body["stream"] = True
        # Always ask for usage so cost and limits see it; the client gets the usage
        # chunk only if it asked for it.
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return orjson.dumps(body)


def read_openai_error(status: int, payload: bytes) -> UpstreamFailure:
    """Read ``{"error": {"message", "type", "code"}}`` (or a bare string) from a refusal."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = payload[:200].decode("utf-8", errors="replace").strip()
        return UpstreamFailure(status=status, message=text)
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, str):
        return UpstreamFailure(status=status, message=err)
    if isinstance(err, dict):
        code = err.get("code")
        return UpstreamFailure(
            status=status,
            message=str(err.get("message") or ""),
            code=str(code) if code is not None else None,
            type=str(err.get("type")) if err.get("type") is not None else None,
        )
    message = obj.get("message") or obj.get("detail") if isinstance(obj, dict) else None
    return UpstreamFailure(status=status, message=str(message or f"HTTP {status}"))
