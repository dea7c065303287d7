from collections.abc import AsyncIterator

from modelway.protocol.sse import data_frame, parse_sse


async def feed(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def collect(pieces: list[bytes]) -> list[tuple[str | None, str]]:
    return [(e.event, e.data) async for e in parse_sse(feed(pieces))]


async def test_events_split_anywhere_are_reassembled() -> None:
    raw = b'data: {"a": 1}\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n'
    expected = [(None, '{"a": 1}'), ("ping", "{}"), (None, "[DONE]")]
    for cut in range(1, len(raw)):
        assert await collect([raw[:cut], raw[cut:]]) == expected


async def test_crlf_comments_and_multiline_data() -> None:
    raw = b": keep-alive\r\n\r\ndata: line1\r\ndata: line2\r\n\r\n"
    assert await collect([raw]) == [(None, "line1\nline2")]


async def test_a_trailing_event_without_blank_line_is_kept() -> None:
    assert await collect([b"data: last"]) == [(None, "last")]


def test_data_frame() -> None:
    assert data_frame(b"{}") == b"data: {}\n\n"
