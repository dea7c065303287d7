import pytest

from modelway.protocol import errors
from modelway.providers.openai_compat import read_openai_error
from modelway.providers.upstream_http import UpstreamFailure, error_for, parse_retry_after


def mapped(status: int, body: bytes, retry_after: float | None = None) -> errors.GatewayError:
    return error_for(read_openai_error(status, body), retry_after, "upstream x")


@pytest.mark.parametrize(
    ("status", "kind", "client_status"),
    [
        (400, errors.BadRequest, 400),
        (401, errors.AuthFailed, 401),
        (403, errors.PermissionDenied, 403),
        (404, errors.ModelNotFound, 404),
        (408, errors.Timeout, 504),
        (429, errors.RateLimited, 429),
        (500, errors.UpstreamError, 502),
        (502, errors.UpstreamError, 502),
        (503, errors.Unavailable, 503),
        (504, errors.Timeout, 504),
        (529, errors.Unavailable, 503),
    ],
)
def test_status_mapping(status: int, kind: type[errors.GatewayError], client_status: int) -> None:
    err = mapped(status, b'{"error": {"message": "nope", "type": "x"}}')
    assert type(err) is kind
    assert err.status == client_status
    assert err.upstream_status == status


def test_retryable_errors_are_the_transient_ones() -> None:
    assert mapped(429, b"{}").retryable and mapped(503, b"{}").retryable
    assert not mapped(400, b"{}").retryable and not mapped(401, b"{}").retryable


def test_context_length_is_recognised_from_the_code() -> None:
    body = b'{"error": {"message": "too long", "code": "context_length_exceeded"}}'
    err = mapped(400, body)
    assert isinstance(err, errors.ContextTooLong)
    assert err.body()["error"]["code"] == "context_length_exceeded"


def test_content_filter_is_recognised() -> None:
    body = b'{"error": {"message": "filtered", "code": "content_filter"}}'
    assert isinstance(mapped(400, body), errors.ContentFiltered)


def test_auth_failure_message_does_not_repeat_upstream_text() -> None:
    err = mapped(401, b'{"error": {"message": "Incorrect API key provided: sk-abc123"}}')
    assert "sk-abc123" not in err.message


def test_rate_limit_carries_retry_after_header() -> None:
    err = mapped(429, b"{}", retry_after=2.4)
    assert err.headers() == {"retry-after": "2"}


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after({}) is None


def test_non_json_error_body_is_quoted_briefly() -> None:
    failure = read_openai_error(502, b"<html>Bad Gateway</html>" * 50)
    assert failure.message.startswith("<html>Bad Gateway")
    assert len(failure.message) <= 200


def test_error_body_shape() -> None:
    err = error_for(UpstreamFailure(status=500, message="boom"), None, "upstream x")
    assert err.body() == {
        "error": {
            "message": "upstream x: boom",
            "type": "upstream_error",
            "param": None,
            "code": None,
        }
    }
