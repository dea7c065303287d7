"""Reading a request: its id, its body within the size limit, and its typed form."""

from __future__ import annotations

import itertools
import os
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from modelway.protocol.errors import BadRequest, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)


# Request ids must be unique, not secret: a random per-process prefix and a counter
# cost no system call, unlike uuid4.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def request_id(request: Request) -> str:
    """The client's ``x-request-id`` when it is sane, else a new one."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
    except ClientDisconnect:
        raise BadRequest("the client closed the connection before sending the whole body") from None
    if not body:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = "not valid UTF-8" if "utf-8" in str(exc).lower() else "not valid JSON"
        raise BadRequest(f"the request body is {reason}: {exc}") from None


def parse_as(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _path(first["loc"])
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "is required"
        raise BadRequest(f"{path or 'body'}: {message}{more}", param=path or None) from None


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("str", "list[dict[str,any]]", "list[str]", "list[int]", "list[list[int]]"):
            continue  # the union member pydantic tried: noise to a client
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts)
