"""A pooled HTTP connection to one upstream, mapping every failure to a gateway error.

aiohttp is the client (measured faster than httpx for this hop: docs/benchmarks.md).
One ``UpstreamHTTP`` per deployment holds a keep-alive connection pool. Transport
failures and non-2xx answers are converted here, at the boundary, into the typed errors
of ``modelway.protocol.errors``; the wire protocol supplies how its error bodies read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass

import aiohttp

from modelway.protocol import errors


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """What an upstream said when it refused: the protocol's reading of its error body."""

    status: int
    message: str
    code: str | None = None
    type: str | None = None


ErrorReader = Callable[[int, bytes], UpstreamFailure]


def error_for(
    failure: UpstreamFailure, retry_after: float | None, where: str
) -> errors.GatewayError:
    """Map an upstream refusal to the gateway error routing decides on."""
    status, code = failure.status, (failure.code or "")
    message = f"{where}: {failure.message}" if failure.message else f"{where}: HTTP {status}"
    lowered = f"{code} {failure.type or ''} {failure.message}".lower()
    if (
        "context_length" in lowered
        or "prompt is too long" in lowered
        or ("maximum context length" in lowered)
    ):
        return errors.ContextTooLong(message, upstream_status=status)
    if "content_filter" in lowered or "content_policy" in lowered:
        return errors.ContentFiltered(message, upstream_status=status)
    if status == 401:
        return errors.AuthFailed(
            f"{where}: the upstream rejected the gateway's credentials", upstream_status=status
        )
    if status == 403:
        return errors.PermissionDenied(message, upstream_status=status)
    if status == 404:
        return errors.ModelNotFound(message, upstream_status=status)
    if status == 408:
        return errors.Timeout(message, upstream_status=status)
    if status == 413:
        return errors.PayloadTooLarge(message, upstream_status=status)
    if status == 429:
        return errors.RateLimited(message, retry_after=retry_after, upstream_status=status)
    if status in (503, 529):
        return errors.Unavailable(message, retry_after=retry_after, upstream_status=status)
    if status == 504:
        return errors.Timeout(message, upstream_status=status)
    if 400 <= status < 500:
        return errors.BadRequest(message, code=failure.code, upstream_status=status)
    return errors.UpstreamError(message, upstream_status=status)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue  # an HTTP date: rare from LLM APIs; fall back to the default backoff
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None


class UpstreamHTTP:
    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        read_error: ErrorReader,
        name: str,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        max_connections: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self._headers = {"content-type": "application/json", **headers}
        self._read_error = read_error
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=connect_timeout_seconds
        )
        # A stream may run long; what bounds it is the silence between chunks.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_seconds, sock_read=timeout_seconds
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, path: str, body: bytes, *, params: Mapping[str, str] | None = None
    ) -> bytes:
        """POST a JSON body and return the 2xx answer's bytes."""
        try:
            async with self.session.post(
                self.base_url + path, data=body, params=params, timeout=self._timeout
            ) as resp:
                payload = await resp.read()
                if resp.status >= 300:
                    raise self._refusal(resp.status, payload, resp.headers)
                return payload
        except errors.GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._transport_error(exc) from None

    async def post_stream(
        self, path: str, body: bytes, *, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        """POST and yield the answer's bytes as they arrive.

        A refusal (non-2xx) raises on the first ``__anext__``, before anything is
        yielded, so callers can still fall back or answer with an error status.
        """
        try:
            async with self.session.post(
                self.base_url + path, data=body, params=params, timeout=self._stream_timeout
            ) as resp:
                if resp.status >= 300:
                    raise self._refusal(resp.status, await resp.read(), resp.headers)
                async for chunk in resp.content.iter_any():
                    yield chunk
        except errors.GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._transport_error(exc) from None

    async def get_ok(self, path: str, timeout_seconds: float = 3.0) -> bool:
        try:
            async with self.session.get(
                self.base_url + path, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
            ) as resp:
                await resp.read()
                return resp.status < 500 and resp.status not in (401, 403, 404)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    def _refusal(
        self, status: int, payload: bytes, headers: Mapping[str, str]
    ) -> errors.GatewayError:
        failure = self._read_error(status, payload)
        return error_for(failure, parse_retry_after(headers), f"upstream {self.name}")

    def _transport_error(self, exc: BaseException) -> errors.GatewayError:
        where = f"upstream {self.name}"
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return errors.Timeout(f"{where}: timed out")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return errors.Unavailable(f"{where}: cannot connect")
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return errors.UpstreamError(f"{where}: connection closed before the answer ended")
        return errors.UpstreamError(f"{where}: {exc.__class__.__name__}")
