"""Resolve the caller's key to a principal, and check that it may use the model asked for.

Present in the stage list only when authentication is configured (a master key is set).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelway.access.key_cache import KeyCache
from modelway.pipeline.context import RequestContext, Result
from modelway.pipeline.stage import Next
from modelway.protocol.errors import AuthFailed, PermissionDenied


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer`` or, as Anthropic clients send it, ``x-api-key``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Authenticate:
    def __init__(self, keys: KeyCache) -> None:
        self._keys = keys

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        key = presented_key(ctx.headers)
        if key is None:
            raise AuthFailed(
                "no API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        principal = self._keys.resolve(key)
        ctx.principal = principal
        if not principal.may_use(ctx.model):
            raise PermissionDenied(
                f"this key may not use the model '{ctx.model}'",
                param="model",
                code="model_not_allowed",
            )
        if principal.data_class == "confidential":
            ctx.data_class = "confidential"
        return await call_next(ctx)
