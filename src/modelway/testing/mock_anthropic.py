"""Anthropic Messages protocol handler, non-streamed and with the real SSE event sequence."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from aiohttp import web

from modelway.testing import mock_replies as replies
from modelway.testing.mock_serving import (
    Plan,
    before_answer,
    error_response,
    json_response,
    read_body,
    send_stream,
    sse_event,
)

_STOP_REASONS = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens"}
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'


def _bad_request(message: str) -> web.Response:
    return error_response("anthropic", 400, message)


async def messages(request: web.Request) -> web.StreamResponse:
    read = await read_body(request, "anthropic")
    if isinstance(read, web.Response):
        return read
    state, body = read
    model, conversation = body.get("model"), body.get("messages")
    max_tokens = body.get("max_tokens")
    if not isinstance(model, str):
        return _bad_request("model: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return _bad_request("max_tokens: Field required")
    if not isinstance(conversation, list) or not conversation:
        return _bad_request("messages: Field required")
    streaming = body.get("stream") is True
    plan = await before_answer(request, state, "anthropic", streaming)
    if not isinstance(plan, Plan):
        return plan

    headers = request.headers
    input_tokens = replies.prompt_words(conversation, body.get("system"))
    tool = replies.anthropic_forced_tool(body)
    message_id = "msg_" + secrets.token_hex(12)
    stop_sequence: str | None = None
    answer: replies.Answer | None = None
    tool_input: dict[str, Any] = {}
    arguments = ""
    if tool is not None:
        arguments = replies.tool_arguments(headers)
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            tool_input = parsed
        else:
            arguments = "{}"
        output_tokens = max(1, replies.count_words(arguments))
        stop_reason = "tool_use"
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": "toolu_" + secrets.token_hex(12),
            "name": tool,
            "input": tool_input,
        }
    else:
        text = replies.reply_text(
            state.options, state.rng, headers, replies.last_user_text(conversation)
        )
        answer = replies.shape_answer(text, max_tokens, body.get("stop_sequences"))
        output_tokens = len(answer.tokens)
        stop_reason = _STOP_REASONS[answer.reason]
        stop_sequence = answer.stop_sequence
        block = {"type": "text", "text": answer.text}

    if not streaming:
        return json_response(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": stop_reason,
                "stop_sequence": stop_sequence,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            }
        )

    start = {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        },
    }
    block_start: dict[str, Any]
    if answer is not None:
        block_start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": token} for token in answer.tokens]
    else:
        block_start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in replies.json_pieces(arguments)
        ]
    head = [
        sse_event(b"message_start", start),
        sse_event(
            b"content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block_start},
        ),
        _PING,
    ]
    tokens = [
        sse_event(b"content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
        for d in deltas
    ]
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"output_tokens": output_tokens},
    }
    tail = [_BLOCK_STOP, sse_event(b"message_delta", message_delta), _MESSAGE_STOP]
    return await send_stream(request, plan, head, tokens, tail)
