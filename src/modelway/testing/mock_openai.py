"""OpenAI protocol handlers: chat completions, completions, embeddings and the model list."""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from modelway.testing import mock_replies as replies
from modelway.testing.mock_serving import (
    STATE_KEY,
    Plan,
    before_answer,
    error_response,
    json_response,
    read_body,
    send_stream,
    sse_data,
)
from modelway.testing.mock_state import MockState

_DONE = b"data: [DONE]\n\n"
_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length"}
_MODEL_CREATED = 1_700_000_000


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _include_usage(body: dict[str, Any]) -> bool:
    stream_options = body.get("stream_options")
    return isinstance(stream_options, dict) and stream_options.get("include_usage") is True


async def _read_with_model(
    request: web.Request,
) -> tuple[MockState, dict[str, Any], str] | web.Response:
    """The recorded body and its model, or the 400 a client gets without one."""
    read = await read_body(request, "openai")
    if isinstance(read, web.Response):
        return read
    state, body = read
    model = body.get("model")
    if not isinstance(model, str):
        return error_response("openai", 400, "'model' is required.", "model")
    return state, body, model


async def chat_completions(request: web.Request) -> web.StreamResponse:
    read = await _read_with_model(request)
    if isinstance(read, web.Response):
        return read
    state, body, model = read
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response("openai", 400, "'messages' must be a non-empty array.", "messages")
    streaming = body.get("stream") is True
    plan = await before_answer(request, state, "openai", streaming)
    if not isinstance(plan, Plan):
        return plan

    headers = request.headers
    prompt = replies.prompt_words(messages)
    tool = replies.openai_forced_tool(body)
    answer: replies.Answer | None = None
    arguments = ""
    if tool is not None:
        arguments = replies.tool_arguments(headers)
        completion = max(1, replies.count_words(arguments))
        finish = "tool_calls"
    else:
        text = replies.reply_text(
            state.options, state.rng, headers, replies.last_user_text(messages)
        )
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        answer = replies.shape_answer(text, max_tokens, body.get("stop"))
        completion = len(answer.tokens)
        finish = _FINISH[answer.reason]
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    call_id = "call_" + secrets.token_hex(12)
    created = int(time.time())
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1
    usage = _usage(prompt, completion * n)

    if not streaming:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if answer is not None:
            message["content"] = answer.text
        else:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments},
                }
            ]
        return json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                    for i in range(n)
                ],
                "usage": usage,
            }
        )

    with_usage = _include_usage(body)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        frames = b""
        for i in range(n):
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if with_usage:
                obj["usage"] = None
            frames += sse_data(obj)
        return frames

    if answer is not None:
        head = [chunk({"role": "assistant", "content": ""})]
        tokens = [chunk({"content": token}) for token in answer.tokens]
    else:
        head = [
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": tool, "arguments": ""},
                        }
                    ],
                }
            )
        ]
        tokens = [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in replies.json_pieces(arguments)
        ]
    tail = [chunk({}, finish)]
    if with_usage:
        tail.append(
            sse_data(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    tail.append(_DONE)
    return await send_stream(request, plan, head, tokens, tail)


def _prompt_items(prompt: Any) -> list[Any] | None:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        return prompt
    return None


async def completions(request: web.Request) -> web.StreamResponse:
    read = await _read_with_model(request)
    if isinstance(read, web.Response):
        return read
    state, body, model = read
    items = _prompt_items(body.get("prompt"))
    if items is None:
        return error_response("openai", 400, "'prompt' is required.", "prompt")
    streaming = body.get("stream") is True
    plan = await before_answer(request, state, "openai", streaming)
    if not isinstance(plan, Plan):
        return plan

    if all(isinstance(i, int) for i in items):
        prompt, echo = len(items), ""
    else:
        prompt = sum(replies.input_words(i) for i in items if isinstance(i, str | list))
        last = items[-1]
        echo = last if isinstance(last, str) else ""
    text = replies.reply_text(state.options, state.rng, request.headers, echo)
    answer = replies.shape_answer(text, body.get("max_tokens"), body.get("stop"))
    finish = _FINISH[answer.reason]
    completion_id = "cmpl-" + secrets.token_hex(12)
    created = int(time.time())
    usage = _usage(prompt, len(answer.tokens))

    def payload(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    if not streaming:
        return json_response({**payload(answer.text, finish), "usage": usage})
    tokens = [sse_data(payload(token, None)) for token in answer.tokens]
    tail = [sse_data(payload("", finish))]
    if _include_usage(body):
        tail.append(sse_data({**payload("", None), "choices": [], "usage": usage}))
    tail.append(_DONE)
    return await send_stream(request, plan, [], tokens, tail)


async def embeddings(request: web.Request) -> web.StreamResponse:
    read = await _read_with_model(request)
    if isinstance(read, web.Response):
        return read
    state, body, model = read
    items = replies.embedding_inputs(body.get("input"))
    if items is None:
        return error_response("openai", 400, "'input' must be a string or array.", "input")
    dimensions = body.get("dimensions", 8)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        return error_response("openai", 400, "'dimensions' must be a positive integer.")
    as_base64 = body.get("encoding_format") == "base64"
    plan = await before_answer(request, state, "openai", False)
    if not isinstance(plan, Plan):
        return plan

    data = []
    prompt = 0
    for index, item in enumerate(items):
        prompt += replies.input_words(item)
        vector = replies.embedding_vector(item, dimensions)
        encoded: Any = replies.embedding_base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
    )


async def models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.stats.record(request.path, request.method, request.query_string, request.headers, None)
    plan = await before_answer(request, state, "openai", False)
    if not isinstance(plan, Plan):
        return plan
    data = [
        {"id": name, "object": "model", "created": _MODEL_CREATED, "owned_by": "modelway-mock"}
        for name in state.options.models
    ]
    return json_response({"object": "list", "data": data})
