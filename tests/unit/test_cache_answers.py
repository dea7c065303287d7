"""Cached answers: a stream assembles into the completion it amounts to, and a stored
completion replays as a stream that assembles back into the same thing."""

from __future__ import annotations

from modelway.cache.answers import CachedAnswer, StreamAssembler
from modelway.protocol.openai_chat import (
    ChatChunk,
    ChunkChoice,
    Delta,
    make_response,
    make_usage,
)

IDS = {"id": "chatcmpl-1", "created": 1, "model": "up"}


def chunk(index: int = 0, finish: str | None = None, **delta: object) -> ChatChunk:
    return ChatChunk(
        **IDS, choices=[ChunkChoice(index=index, delta=Delta(**delta), finish_reason=finish)]
    )


def test_a_stream_assembles_into_its_completion() -> None:
    a = StreamAssembler()
    a.feed(chunk(role="assistant", content=""))
    a.feed(chunk(content="Hello, "))
    a.feed(chunk(content="world."))
    a.feed(chunk(finish="stop"))
    a.feed(ChatChunk(**IDS, choices=[], usage=make_usage(5, 3)))
    response = a.result(None)
    assert response is not None
    assert response.choices[0].message.content == "Hello, world."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.total_tokens == 8


def test_tool_call_fragments_are_joined() -> None:
    a = StreamAssembler()
    call = {"index": 0, "id": "call_1", "type": "function"}
    a.feed(
        chunk(role="assistant", tool_calls=[{**call, "function": {"name": "f", "arguments": ""}}])
    )
    a.feed(chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"x": '}}]))
    a.feed(chunk(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}]))
    a.feed(chunk(finish="tool_calls"))
    response = a.result(make_usage(1, 1))
    assert response is not None
    message = response.choices[0].message
    assert message.content is None
    assert message.tool_calls == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    ]


def test_a_cut_stream_is_not_an_answer() -> None:
    a = StreamAssembler()
    a.feed(chunk(role="assistant", content="Half an ans"))
    assert a.result(make_usage(1, 1)) is None
    assert StreamAssembler().result(None) is None


def test_a_stored_answer_replays_as_a_stream_and_back() -> None:
    original = make_response(
        id="chatcmpl-x",
        created=5,
        model="up",
        content="Paris.",
        finish_reason="stop",
        usage=make_usage(7, 2),
    )
    stored = CachedAnswer.decode(CachedAnswer.of(original, "dep-1").encode())
    assert stored is not None and stored.deployment == "dep-1"
    chunks = stored.as_chunks()
    assert chunks[-1].choices == [] and chunks[-1].usage == make_usage(7, 2)
    a = StreamAssembler()
    for c in chunks:
        a.feed(c)
    again = a.result(None)
    assert again is not None
    assert again.choices[0].message.content == "Paris."
    served = stored.as_response()
    assert served.choices[0].message.content == "Paris."
    assert served.id != "chatcmpl-x"  # each response has its own id


def test_a_foreign_entry_decodes_to_nothing() -> None:
    assert CachedAnswer.decode(b"not json") is None
    assert CachedAnswer.decode(b'{"other": 1}') is None
