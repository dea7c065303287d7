"""Encoding answers: JSON bodies, SSE streams, and OpenAI-shaped errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from modelway.observability.logging import get_logger
from modelway.pipeline.context import Chunk
from modelway.protocol.errors import GatewayError, InternalError
from modelway.protocol.json_body import to_json
from modelway.protocol.sse import DONE_FRAME, data_frame

JSON = "application/json"
_log = get_logger("modelway.api")


def json_response(model: BaseModel, headers: Mapping[str, str]) -> Response:
    return Response(to_json(model), media_type=JSON, headers=dict(headers))


def error_response(
    exc: GatewayError, request_id: str, extra: Mapping[str, str] | None = None
) -> Response:
    headers = {**(extra or {}), "x-request-id": request_id, **exc.headers()}
    return Response(exc.to_json(), status_code=exc.status, media_type=JSON, headers=headers)


def sse_response(
    chunks: AsyncIterator[Chunk], include_usage: bool, headers: Mapping[str, str]
) -> StreamingResponse:
    return StreamingResponse(
        _frames(chunks, include_usage),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _frames(chunks: AsyncIterator[Chunk], include_usage: bool) -> AsyncIterator[bytes]:
    """``data:`` frames then ``[DONE]``; a failure mid-stream ends with an error frame
    and no ``[DONE]``, so no client mistakes a broken answer for a whole one."""
    try:
        async for chunk in chunks:
            serializer = type(chunk).__pydantic_serializer__
            if include_usage:
                yield data_frame(serializer.to_json(chunk, exclude_unset=True))
            elif chunk.choices or chunk.usage is None:
                # Usage was requested upstream for accounting; this client did not ask.
                yield data_frame(serializer.to_json(chunk, exclude_unset=True, exclude={"usage"}))
        yield DONE_FRAME
    except GatewayError as exc:
        yield data_frame(exc.to_json())
    except Exception:
        _log.exception("stream_failed")
        yield data_frame(InternalError("the gateway failed while streaming").to_json())
