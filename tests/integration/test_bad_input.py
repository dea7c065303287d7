"""Every bad input gets the right 4xx, OpenAI-shaped, and the server goes on serving."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.servers import Process

CHAT = "/v1/chat/completions"


def post(gateway: Process, content: bytes, path: str = CHAT, **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.url + path,
        content=content,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )


def assert_error(resp: httpx.Response, status: int, param: str | None = None) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-request-id"]
    error: dict[str, object] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in resp.text
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "mock-gpt", "messages": [', None),
        (b"", None),
        (b"[]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "mock-gpt"}', "messages"),
        (b'{"model": "mock-gpt", "messages": []}', "messages"),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (
            b'{"model": "mock-gpt", "messages": [{"role": "user", "content": 7}]}',
            "messages[0].content",
        ),
        (b'{"model": "mock-gpt", "messages": [{"content": "no role"}]}', "messages[0].role"),
        (b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n"),
        (
            b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": 9}',
            "temperature",
        ),
        (
            b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], '
            b'"stream": "yes"}',
            "stream",
        ),
    ],
)
def test_malformed_requests_are_400(gateway: Process, body: bytes, param: str | None) -> None:
    error = assert_error(post(gateway, body), 400, param)
    assert error["type"] == "invalid_request_error"


def test_invalid_utf8_is_400(gateway: Process) -> None:
    body = b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    error = assert_error(post(gateway, body), 400)
    assert "UTF-8" in str(error["message"])


def test_body_over_the_limit_is_413(gateway: Process) -> None:
    big = (
        b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "'
        + b"a" * (2 * 1024 * 1024)
        + b'"}]}'
    )
    error = assert_error(post(gateway, big), 413)
    assert "1048576" in str(error["message"])


def test_chunked_body_over_the_limit_is_413(gateway: Process) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}]}'

    resp = httpx.post(gateway.url + CHAT, content=chunks(), timeout=30)
    assert_error(resp, 413)


def test_unknown_model_is_404(gateway: Process) -> None:
    body = b'{"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}'
    error = assert_error(post(gateway, body), 404, "model")
    assert error["code"] == "model_not_found"
    assert "gpt-17" in str(error["message"])


def test_unsupported_parameter_value_for_the_embedded_model(gateway: Process) -> None:
    body = (
        b'{"model": "smollm2-135m-instruct", "n": 2, '
        b'"messages": [{"role": "user", "content": "x"}]}'
    )
    error = assert_error(post(gateway, body), 400, "n")
    assert error["code"] == "unsupported_parameter"


def test_embeddings_on_a_chat_only_provider(gateway: Process) -> None:
    body = b'{"model": "smollm2-135m-instruct", "input": "x"}'
    error = assert_error(post(gateway, body, "/v1/embeddings"), 400)
    assert "does not support embeddings" in str(error["message"])


def test_unknown_route_and_wrong_method(gateway: Process) -> None:
    assert_error(httpx.get(gateway.url + "/v1/nothing-here"), 404)
    assert_error(httpx.get(gateway.url + CHAT), 405)


def test_client_that_disconnects_while_sending_the_body(gateway: Process) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"model": '
        )
    assert httpx.get(gateway.url + "/health/live").status_code == 200


def test_server_keeps_serving_after_bad_input(gateway: Process) -> None:
    for _ in range(3):
        post(gateway, b"\x00\x01garbage")
    resp = post(gateway, b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "ok"}]}')
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "ok"
