"""A pooled HTTP connection to one upstream, mapping every failure to a gateway error.

The client is pyreqwest (Rust's reqwest: keep-alive pools, rustls TLS, proxies from the
environment). Measured against aiohttp and httpx for this hop it costs the least CPU
and latency per request (docs/benchmarks.md). One ``UpstreamHTTP`` per deployment holds
a connection pool. Transport failures and non-2xx answers are converted here, at the
boundary, into the typed errors of ``modelway.protocol.errors``; the wire protocol
supplies how its error bodies read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder

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
        self._total = timedelta(seconds=timeout_seconds)
        # Streams may run long: what bounds them is the silence between chunks.
        self._idle = timedelta(seconds=timeout_seconds)
        self._connect = timedelta(seconds=connect_timeout_seconds)
        self._max_connections = max_connections
        self._client: Client | None = None
        # Writes trace context (W3C traceparent) into each request's headers, if set.
        self.propagate: Callable[[dict[str, str]], None] | None = None

    @property
    def client(self) -> Client:
        if self._client is None:  # built on first use, inside the running event loop
            self._client = (
                ClientBuilder()
                .default_headers(self._headers)
                .connect_timeout(self._connect)
                .read_timeout(self._idle)
                .max_connections(self._max_connections)
                .error_for_status(False)
                .build()
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def post(
        self, path: str, body: bytes, *, params: Mapping[str, str] | None = None
    ) -> bytes:
        """POST a JSON body and return the 2xx answer's bytes."""
        request = self.client.post(self.base_url + path).body_bytes(body).timeout(self._total)
        if params:
            request = request.query(dict(params))
        if self.propagate is not None:
            request = self._traced(request)
        try:
            resp = await request.build().send()
            payload = bytes(await resp.bytes())
        except rq.PyreqwestError as exc:
            raise self._transport_error(exc) from None
        if resp.status >= 300:
            raise self._refusal(resp.status, payload, resp.get_header)
        return payload

    async def post_stream(
        self, path: str, body: bytes, *, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        """POST and yield the answer's bytes as they arrive.

        A refusal (non-2xx) raises on the first ``__anext__``, before anything is
        yielded, so callers can still fall back or answer with an error status.
        """
        # No read-ahead: each chunk goes on as it arrives (a larger limit holds SSE
        # events back until the buffer fills).
        request = (
            self.client.post(self.base_url + path).body_bytes(body).streamed_read_buffer_limit(1)
        )
        if params:
            request = request.query(dict(params))
        if self.propagate is not None:
            request = self._traced(request)
        try:
            async with request.build_streamed() as resp:
                if resp.status >= 300:
                    payload = bytes(await resp.body_reader.bytes())
                    raise self._refusal(resp.status, payload, resp.get_header)
                reader = resp.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    yield bytes(chunk)
        except rq.PyreqwestError as exc:
            raise self._transport_error(exc) from None

    async def get_ok(
        self, path: str, *, params: Mapping[str, str] | None = None, timeout_seconds: float = 3.0
    ) -> bool:
        """Is the upstream reachable with our credentials? Any answer below 500 but 401
        and 403 says so: a 404 only means the server has no such listing path."""
        request = self.client.get(self.base_url + path).timeout(timedelta(seconds=timeout_seconds))
        if params:
            request = request.query(dict(params))
        try:
            resp = await request.build().send()
        except rq.PyreqwestError:
            return False
        return resp.status < 500 and resp.status not in (401, 403)

    def _traced(self, request: Any) -> Any:
        assert self.propagate is not None
        carrier: dict[str, str] = {}
        self.propagate(carrier)
        return request.headers(carrier) if carrier else request

    def _refusal(
        self, status: int, payload: bytes, header: Callable[[str], str | None]
    ) -> errors.GatewayError:
        failure = self._read_error(status, payload)
        retry_after = parse_retry_after(
            {k: v for k in ("retry-after-ms", "retry-after") if (v := header(k)) is not None}
        )
        return error_for(failure, retry_after, f"upstream {self.name}")

    def _transport_error(self, exc: rq.PyreqwestError) -> errors.GatewayError:
        where = f"upstream {self.name}"
        if isinstance(exc, rq.ConnectTimeoutError):
            return errors.Timeout(f"{where}: timed out connecting")
        if isinstance(exc, rq.RequestTimeoutError):
            return errors.Timeout(f"{where}: timed out")
        if isinstance(exc, rq.ConnectError) and _never_connected(exc):
            return errors.Unavailable(f"{where}: cannot connect")
        if isinstance(exc, rq.NetworkError | rq.BodyDecodeError):
            return errors.UpstreamError(f"{where}: connection closed before the answer ended")
        return errors.UpstreamError(f"{where}: {exc.__class__.__name__}")


def _never_connected(exc: rq.ConnectError) -> bool:
    """reqwest reports a reset after sending as a connect error too; its causes tell
    a refused or unresolvable address ("client error (Connect)") from a dropped one."""
    causes = (exc.details or {}).get("causes") or []
    return any("(Connect)" in str(cause.get("message", "")) for cause in causes)
