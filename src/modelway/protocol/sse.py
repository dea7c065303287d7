"""Server-sent events: encoding frames, and splitting an upstream byte stream into events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

DONE_FRAME = b"data: [DONE]\n\n"


def data_frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


async def parse_sse(chunks: AsyncIterator[bytes]) -> AsyncGenerator[SSEEvent, None]:
    """Yield events from raw bytes, however the bytes were split across reads."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while True:
            end, sep_len = _event_end(buffer)
            if end < 0:
                break
            raw, buffer = buffer[:end], buffer[end + sep_len :]
            event = _parse_event(raw)
            if event is not None:
                yield event
    if buffer.strip():
        event = _parse_event(buffer)
        if event is not None:
            yield event


def _event_end(buffer: bytes) -> tuple[int, int]:
    best, sep_len = -1, 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        i = buffer.find(sep)
        if i >= 0 and (best < 0 or i < best):
            best, sep_len = i, len(sep)
    return best, sep_len


def _parse_event(raw: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[str] = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if not data and event is None:
        return None
    return SSEEvent(event=event, data="\n".join(data))
