import pytest

from modelway.api.request_body import parse_as
from modelway.protocol.errors import BadRequest
from modelway.protocol.openai_chat import ChatRequest
from modelway.protocol.openai_embeddings import EmbeddingRequest


def refusal(data: object) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_as(ChatRequest, data)
    return info.value


def chat(**extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_unknown_fields_are_kept_for_passthrough() -> None:
    req = parse_as(ChatRequest, chat(vendor_option={"x": 1}))
    assert req.model_dump(exclude_unset=True)["vendor_option"] == {"x": 1}


def test_content_parts_are_accepted() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]
    req = parse_as(ChatRequest, {"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert req.messages[0].text() == "a"


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (chat(temperature=3), "temperature"),
        (chat(temperature="hot"), "temperature"),
        (chat(n=0), "n"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(stop=[""]), "stop"),
        (chat(response_format={"type": "yaml"}), "response_format"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            "messages[0].content",
        ),
    ],
)
def test_bad_requests_name_the_field(data: dict[str, object], param: str) -> None:
    err = refusal(data)
    assert err.param == param
    assert err.status == 400
    assert err.message.startswith(param)


def test_body_must_be_an_object() -> None:
    assert refusal([1, 2]).message == "the request body must be a JSON object"


def test_embedding_input_must_not_be_empty() -> None:
    with pytest.raises(BadRequest) as info:
        parse_as(EmbeddingRequest, {"model": "e", "input": []})
    assert info.value.param == "input"
