"""The one error hierarchy of the gateway, and its OpenAI-shaped wire form.

Every failure a client can see is a ``GatewayError``: it knows its HTTP status and
renders itself as ``{"error": {"message", "type", "param", "code"}}``. Providers map
upstream failures onto the subclasses below at their boundary; routing decides on
the subclass (``retryable``), never on strings.

    GatewayError
    ├── BadRequest                 400 invalid_request_error
    │   ├── ContextTooLong         400 code=context_length_exceeded
    │   ├── ContentFiltered        400 code=content_filter
    │   └── UnsupportedParameter   400 code=unsupported_parameter
    ├── AuthFailed                 401 authentication_error
    ├── PermissionDenied           403 permission_error
    ├── ModelNotFound              404 code=model_not_found
    ├── Conflict                   409 code=conflict
    ├── PayloadTooLarge            413
    ├── RateLimited                429 (retry_after)                retryable
    ├── QuotaExceeded              429 insufficient_quota (a spent budget)
    ├── UpstreamError              502 (any unexpected upstream status)  retryable
    ├── Unavailable                503 (retry_after)                retryable
    └── Timeout                    504                              retryable
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after
        self.upstream_status = upstream_status

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after)))}


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class ContextTooLong(BadRequest):
    default_code = "context_length_exceeded"


class ContentFiltered(BadRequest):
    default_code = "content_filter"


class UnsupportedParameter(BadRequest):
    default_code = "unsupported_parameter"


class AuthFailed(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "model_not_found"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    retryable = True


class QuotaExceeded(GatewayError):
    """A hard budget is spent: retrying soon will not help, unlike a rate limit."""

    status = 429
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    default_code = "conflict"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    retryable = True


class Unavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    retryable = True


class Timeout(GatewayError):
    status = 504
    type = "timeout"
    default_code = "upstream_timeout"
    retryable = True


class InternalError(GatewayError):
    """A bug in the gateway. The message never carries the exception's text."""

    status = 500
    type = "server_error"
