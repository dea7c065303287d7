"""Translation between the internal OpenAI-shaped chat types and Anthropic's Messages API.

Pure functions (request out, response back, error bodies) and the stateful stream-event
translator; no I/O, so all of it is testable without a network.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelway.protocol import errors
from modelway.protocol.openai_chat import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Delta,
    Usage,
    make_chunk,
    make_response,
    make_usage,
)
from modelway.providers.upstream_http import UpstreamFailure, error_for

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status Anthropic pairs with each error type; an error that arrives inside a
# stream has no status of its own, and routing decides on the mapped status.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

Block = dict[str, Any]


# -- OpenAI -> Anthropic -----------------------------------------------------------------


def to_anthropic_request(req: ChatRequest, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API body for ``req`` (without ``stream``)."""
    _refuse_unsupported(req)
    system, messages = _convert_messages(req.messages)
    body: dict[str, Any] = {
        "model": req.model,
        "messages": messages,
        "max_tokens": req.output_limit or default_max_tokens,
    }
    if system:
        body["system"] = system
    if req.temperature is not None:
        # OpenAI accepts 0..2, Anthropic 0..1: above 1 is clamped rather than refused so
        # clients tuned for OpenAI keep working (at Anthropic's most random setting).
        body["temperature"] = min(req.temperature, 1.0)
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop_list:
        body["stop_sequences"] = req.stop_list
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.tools:
        body["tools"] = [_convert_tool(t, i) for i, t in enumerate(req.tools)]
        tool_choice = _convert_tool_choice(req.tool_choice)
        if (req.model_extra or {}).get("parallel_tool_calls") is False:
            tool_choice = tool_choice or {"type": "auto"}
            if tool_choice["type"] != "none":
                tool_choice["disable_parallel_tool_use"] = True
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    return body


def _refuse_unsupported(req: ChatRequest) -> None:
    if req.n is not None and req.n > 1:
        raise errors.UnsupportedParameter(
            "Anthropic models return one choice per request; 'n' must be 1", param="n"
        )
    if req.response_format is not None and req.response_format.get("type") != "text":
        raise errors.UnsupportedParameter(
            f"response_format {req.response_format.get('type')!r} is not supported by "
            "Anthropic models; describe the JSON wanted in the prompt or use a tool",
            param="response_format",
        )
    if (req.model_extra or {}).get("logprobs"):
        raise errors.UnsupportedParameter(
            "Anthropic models do not return logprobs", param="logprobs"
        )


def _convert_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    system_parts: list[str] = []
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role in ("system", "developer"):
            if text := msg.text():
                system_parts.append(text)
            continue
        if msg.role == "tool":
            role, blocks = "user", [_tool_result_block(msg, i)]
        elif msg.role == "user":
            role, blocks = "user", _content_blocks(msg, i)
        elif msg.role == "assistant":
            role, blocks = "assistant", _content_blocks(msg, i) + _tool_use_blocks(msg, i)
        else:
            raise errors.UnsupportedParameter(
                f"messages[{i}]: role {msg.role!r} is not supported by Anthropic models; "
                "use 'tool' messages",
                param=f"messages[{i}].role",
            )
        if not blocks:
            continue
        # Anthropic requires user and assistant turns to alternate.
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system_parts), out


def _content_blocks(msg: ChatMessage, i: int) -> list[Block]:
    if msg.content is None:
        return []
    if isinstance(msg.content, str):
        return [{"type": "text", "text": msg.content}] if msg.content else []
    blocks: list[Block] = []
    for j, part in enumerate(msg.content):
        kind = part["type"]
        if kind == "text":
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"messages[{i}].content[{j}]"))
        else:
            raise errors.UnsupportedParameter(
                f"content parts of type {kind!r} are not supported by Anthropic models",
                param=f"messages[{i}].content[{j}].type",
            )
    return blocks


def _image_block(image: Any, param: str) -> Block:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise errors.BadRequest("an image_url part needs a 'url'", param=f"{param}.image_url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise errors.BadRequest(
                "image data URLs must read data:<media type>;base64,<data>",
                param=f"{param}.image_url.url",
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise errors.BadRequest(
        "image URLs must be http(s) or data: URLs", param=f"{param}.image_url.url"
    )


def _tool_use_blocks(msg: ChatMessage, i: int) -> list[Block]:
    blocks: list[Block] = []
    for j, call in enumerate(msg.tool_calls or []):
        param = f"messages[{i}].tool_calls[{j}]"
        function = call.get("function") or {}
        name, raw = function.get("name"), function.get("arguments") or "{}"
        if not isinstance(name, str) or not name or not isinstance(call.get("id"), str):
            raise errors.BadRequest("a tool call needs an 'id' and a function name", param=param)
        try:
            arguments = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise errors.BadRequest(
                "tool call arguments must be a JSON object",
                param=f"{param}.function.arguments",
            )
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": name, "input": arguments})
    return blocks


def _tool_result_block(msg: ChatMessage, i: int) -> Block:
    if not msg.tool_call_id:
        raise errors.BadRequest(
            "a tool message needs a 'tool_call_id'", param=f"messages[{i}].tool_call_id"
        )
    block: Block = {"type": "tool_result", "tool_use_id": msg.tool_call_id}
    if text := msg.text():
        block["content"] = text
    return block


def _convert_tool(tool: dict[str, Any], i: int) -> Block:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise errors.UnsupportedParameter(
            "only tools of type 'function' are supported by Anthropic models",
            param=f"tools[{i}]",
        )
    if not isinstance(function.get("name"), str):
        raise errors.BadRequest("a tool needs a function name", param=f"tools[{i}].function.name")
    converted: Block = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _convert_tool_choice(choice: str | dict[str, Any] | None) -> Block | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mapped = {"auto": "auto", "required": "any", "none": "none"}.get(choice)
        if mapped is None:
            raise errors.BadRequest(
                "tool_choice must be 'auto', 'required', 'none' or a named function",
                param="tool_choice",
            )
        return {"type": mapped}
    name = (choice.get("function") or {}).get("name")
    if choice.get("type") != "function" or not isinstance(name, str):
        raise errors.UnsupportedParameter(
            "tool_choice objects must name a function for Anthropic models", param="tool_choice"
        )
    return {"type": "tool", "name": name}


# -- Anthropic -> OpenAI -----------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def usage_from(usage: dict[str, Any]) -> Usage:
    """Prompt tokens include cache reads and writes: all of them were the prompt."""
    prompt = (
        (usage.get("input_tokens") or 0)
        + (usage.get("cache_read_input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
    )
    return make_usage(prompt, usage.get("output_tokens") or 0)


def from_anthropic_response(data: dict[str, Any], where: str) -> ChatResponse:
    content = data.get("content")
    if not isinstance(content, list) or not isinstance(data.get("id"), str):
        raise errors.UpstreamError(f"{where}: the answer is not an Anthropic message")
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(_tool_call(block))
    return make_response(
        id=data["id"],
        created=int(time.time()),
        model=data.get("model") or "",
        content="".join(texts) if texts or not tool_calls else None,
        finish_reason=finish_reason(data.get("stop_reason")),
        usage=usage_from(data.get("usage") or {}),
        tool_calls=tool_calls or None,
    )


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {
            "name": block.get("name"),
            "arguments": orjson.dumps(block.get("input") or {}).decode(),
        },
    }


def read_anthropic_error(status: int, payload: bytes) -> UpstreamFailure:
    """Read ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return UpstreamFailure(status, payload[:200].decode("utf-8", errors="replace").strip())
    return _failure(status, body)


def stream_error(data: dict[str, Any], where: str) -> errors.GatewayError:
    """The gateway error for an ``event: error`` that arrived mid-stream."""
    failure = _failure(0, data)
    status = ERROR_STATUS.get(failure.type or "", 500)
    return error_for(UpstreamFailure(status, failure.message, None, failure.type), None, where)


def _failure(status: int, body: Any) -> UpstreamFailure:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return UpstreamFailure(status, "")
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    return UpstreamFailure(status, str(error.get("message") or ""), None, kind)


# -- Streaming ---------------------------------------------------------------------------


class AnthropicStreamTranslator:
    """Turns Anthropic stream events into OpenAI chat chunks, one event at a time."""

    def __init__(self, where: str, created: int | None = None) -> None:
        self.where = where
        self.created = created if created is not None else int(time.time())
        self.id = ""
        self.model = ""
        self.finished = False
        self._prompt_tokens = 0
        self._output_tokens = 0
        # Anthropic content-block index -> OpenAI tool-call index.
        self._tool_index: dict[int, int] = {}

    def feed(self, event: str | None, data: dict[str, Any]) -> list[ChatChunk]:
        kind = event or data.get("type")
        if kind == "error":
            raise stream_error(data, self.where)
        if self.finished:
            return []
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            start = usage_from(message.get("usage") or {})
            self._prompt_tokens, self._output_tokens = start.prompt_tokens, start.completion_tokens
            return [self._chunk(Delta(role="assistant", content=""))]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "message_delta":
            usage = data.get("usage") or {}
            self._output_tokens = usage.get("output_tokens") or self._output_tokens
            if usage.get("input_tokens") is not None:
                # Newer API versions repeat the (final) input counts here.
                self._prompt_tokens = usage_from(usage).prompt_tokens
            reason = finish_reason((data.get("delta") or {}).get("stop_reason"))
            return [self._chunk(Delta(), finish_reason=reason)]
        if kind == "message_stop":
            self.finished = True
            total = make_usage(self._prompt_tokens, self._output_tokens)
            return [make_chunk(id=self.id, created=self.created, model=self.model, usage=total)]
        return []  # ping, content_block_stop and event types added later

    def check_complete(self) -> None:
        """Raise if the upstream stream ended before ``message_stop``."""
        if not self.finished:
            raise errors.UpstreamError(f"{self.where}: stream ended early")

    def _block_start(self, data: dict[str, Any]) -> list[ChatChunk]:
        block = data.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk(Delta(content=block["text"]))]
        if block.get("type") != "tool_use":
            return []
        index = len(self._tool_index)
        self._tool_index[data.get("index", -1)] = index
        call = {
            "index": index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk(Delta(tool_calls=[call]))]

    def _block_delta(self, data: dict[str, Any]) -> list[ChatChunk]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk(Delta(content=delta["text"]))]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_index.get(data.get("index", -1))
            if index is None:
                return []
            call = {"index": index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk(Delta(tool_calls=[call]))]
        return []  # thinking, signature and citation deltas have no OpenAI form

    def _chunk(self, delta: Delta, finish_reason: str | None = None) -> ChatChunk:
        return make_chunk(
            id=self.id,
            created=self.created,
            model=self.model,
            delta=delta,
            finish_reason=finish_reason,
        )
