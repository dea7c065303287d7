"""The life of a mock request: body, fault plan, latency, injected faults and SSE pacing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from modelway.testing.mock_state import FAIL_MODES, MockState

STATE_KEY = web.AppKey("modelway_mock_state", MockState)

Protocol = Literal["openai", "anthropic"]

_JSON_TYPE = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_RETRY_AFTER_STATUSES = frozenset({429, 503, 529})
_HANG_POLL_S = 0.1

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=_JSON_TYPE)


def error_response(
    protocol: Protocol,
    status: int,
    message: str,
    param: str | None = None,
    retry_after: float | None = None,
) -> web.Response:
    body: dict[str, Any]
    if protocol == "anthropic":
        default = "invalid_request_error" if status < 500 else "api_error"
        kind = _ANTHROPIC_ERRORS.get(status, default)
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        default_type = "invalid_request_error" if status < 500 else "server_error"
        kind, code = _OPENAI_ERRORS.get(status, (default_type, None))
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    response = json_response(body, status)
    if retry_after is not None and status in _RETRY_AFTER_STATUSES:
        response.headers["Retry-After"] = f"{retry_after:g}"
    return response


@dataclass(slots=True)
class Plan:
    latency: float
    ttft: float
    interval: float
    fault: str | None
    status: int


def _float_header(headers: Mapping[str, str], name: str, default: float) -> float:
    value = headers.get(name)
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def make_plan(state: MockState, headers: Mapping[str, str]) -> Plan:
    options = state.options
    tps = _float_header(headers, "x-mock-tokens-per-second", options.tokens_per_second)
    fault: str | None = None
    status = options.fail_status
    forced_status = headers.get("x-mock-fail-status")
    if forced_status is not None:
        with contextlib.suppress(ValueError):
            status, fault = int(forced_status), "status"
    forced_mode = headers.get("x-mock-fail-mode")
    if forced_mode in FAIL_MODES:
        fault = forced_mode
    if fault is None and options.fail_rate > 0 and state.rng.random() < options.fail_rate:
        fault = options.fail_mode
    if fault is not None:
        state.stats.failures_injected += 1
    return Plan(
        latency=_float_header(headers, "x-mock-latency-ms", options.latency_ms) / 1000.0,
        ttft=_float_header(headers, "x-mock-ttft-ms", options.ttft_ms) / 1000.0,
        interval=1.0 / tps if tps > 0 else 0.0,
        fault=fault,
        status=status,
    )


async def read_body(
    request: web.Request, protocol: Protocol
) -> tuple[MockState, dict[str, Any]] | web.Response:
    """Parse and record the JSON body; a 400 in the protocol's shape when it is not an object."""
    state = request.app[STATE_KEY]
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    state.stats.record(request.path, request.method, request.query_string, request.headers, body)
    if not isinstance(body, dict):
        return error_response(protocol, 400, "The request body is not a valid JSON object.")
    return state, body


async def before_answer(
    request: web.Request, state: MockState, protocol: Protocol, streaming: bool
) -> Plan | web.StreamResponse:
    """Wait the latency and apply injected faults; a response means the request ends here."""
    plan = make_plan(state, request.headers)
    if plan.latency > 0:
        await asyncio.sleep(plan.latency)
    fault = plan.fault
    if fault is None or (fault == "cut" and streaming):
        return plan
    if fault == "status":
        retry_after = state.options.retry_after
        return error_response(protocol, plan.status, "Injected failure.", retry_after=retry_after)
    if fault == "hang":
        await hang(request, state)
    else:
        abort_connection(request, reset=True)
    return web.Response()


def abort_connection(request: web.Request, reset: bool) -> None:
    """Drop the connection; with `reset` the peer gets a TCP RST instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def hang(request: web.Request, state: MockState) -> None:
    """Never answer: wait until the client goes away or the server shuts down."""
    while not state.closing:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(_HANG_POLL_S)
    abort_connection(request, reset=False)


async def send_stream(
    request: web.Request,
    plan: Plan,
    head: list[bytes],
    tokens: list[bytes],
    tail: list[bytes],
) -> web.StreamResponse:
    """Send SSE frames: `head` first, then after the TTFT the paced `tokens`, then `tail`.

    With a `cut` fault about half of the token frames go out and the connection is dropped.
    """
    cut = plan.fault == "cut"
    if cut:
        tokens = tokens[: max(1, len(tokens) // 2)]
        tail = []
    response = web.StreamResponse(headers=_SSE_HEADERS)
    try:
        await response.prepare(request)
        if plan.ttft <= 0 and plan.interval <= 0:
            await response.write(b"".join(head + tokens + tail))
        else:
            await response.write(b"".join(head))
            if plan.ttft > 0:
                await asyncio.sleep(plan.ttft)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, frame in enumerate(tokens):
                if i and plan.interval > 0:
                    delay = start + i * plan.interval - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await response.write(frame)
            if tail:
                await response.write(b"".join(tail))
        if cut:
            abort_connection(request, reset=False)
        else:
            await response.write_eof()
    except ConnectionResetError:
        pass
    return response


def sse_data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_event(name: bytes, obj: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(obj) + b"\n\n"
