"""One pipelined connection to Redis for the counters on the request path.

Callers share a single socket: each command is written as soon as it is given, and
replies are matched to callers in order, since Redis answers a connection's commands in
the order it reads them. A call costs one write and its share of one read, with no pool,
lock or per-call timer: one watchdog per connection fails every waiting call when the
oldest has had no reply within the timeout. On this project's benchmark machine a
command through redis-py's asyncio connection took about twice the loopback round trip
(its per-call timeouts, stream reader and health checks), which mattered on a path whose
whole budget is a few hundred microseconds (`bench/counters.py`). redis-py still reads
the URL, and hiredis parses the replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from modelway.store.counters import CountersUnavailable

# Past this much unsent data the socket is not keeping up: refuse rather than queue.
_MAX_WRITE_BUFFER = 1 << 20


Arg = bytes | str | int
Failed = Callable[[BaseException], None]


def pack(*args: Arg) -> bytes:
    """One command in the Redis protocol (RESP)."""
    # hiredis's stubs type the argument as a one-element tuple.
    packed: bytes = hiredis.pack_command(cast(Any, args))
    return packed


class _Lost(Exception):
    """The connection closed before the command's reply came."""


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("READONLY"):
        return ReadOnlyError(message)
    return ResponseError(message)


class _Replies(asyncio.Protocol):
    """The socket's side: hands each reply to the oldest waiting caller."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        self.answered = 0  # replies handed out so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                future = self._waiting.popleft()[0]
                self.answered += 1
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_reply_error(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # out of step: start over
            self.abort(CountersUnavailable(f"redis: unexpected reply ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_Lost(str(exc) if exc else "connection closed"))

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Write one command; the future gets its reply."""
        transport = self._writable()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((future, time.monotonic() + self._timeout))
        transport.write(command)
        self._arm(loop)
        return future

    def send_all(self, commands: list[bytes]) -> list[asyncio.Future[Any]]:
        """Write several commands at once; a future per reply, in order."""
        transport = self._writable()
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self._timeout
        futures = [loop.create_future() for _ in commands]
        self._waiting.extend((future, deadline) for future in futures)
        transport.write(b"".join(commands))
        self._arm(loop)
        return futures

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._check)

    def _writable(self) -> asyncio.Transport:
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise _Lost("connection closed")
        if transport.get_write_buffer_size() > _MAX_WRITE_BUFFER:
            raise CountersUnavailable("redis: too many commands waiting to be sent")
        return transport

    def abort(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._fail(exc)

    def _check(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        late = self._waiting[0][1] - time.monotonic()
        if late <= 0:
            self.abort(CountersUnavailable(f"redis: no reply within {self._timeout:g}s"))
        else:
            self._watchdog = asyncio.get_running_loop().call_later(late, self._check)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(exc)


class RedisWire:
    """Commands (already in the Redis protocol) to the Redis at `url`, one connection.

    Supports redis://, rediss:// (TLS; `ssl_cert_reqs` and `ssl_ca_certs` in the query)
    and unix:// URLs with a username, password, `db` and `client_name`. Every failure to
    get a reply within `timeout` seconds raises `CountersUnavailable`, as does a READONLY
    reply (a replica, during a failover); another Redis error raises redis-py's matching
    exception.
    """

    def __init__(self, url: str, *, timeout: float, setup: Sequence[bytes] = ()) -> None:
        self._options: dict[str, Any] = dict(parse_url(url))
        self._timeout = timeout
        self._setup = list(setup)  # sent on every new connection, after the handshake
        self._replies: _Replies | None = None
        self._connecting: asyncio.Task[_Replies] | None = None
        self._closed = False
        self._soon: list[tuple[bytes, Failed, bytes | None]] = []
        self._unanswered: set[asyncio.Future[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, command: bytes, *, reload: bytes | None = None) -> Any:
        """`command`'s reply. `reload` (a SCRIPT LOAD) is sent, and the command once more,
        when Redis answers that it lacks the command's script."""
        replies = self._replies
        if replies is None or replies.closed:
            replies = await self._connection()
        reused = replies.answered > 0
        try:
            if self._soon:  # the commands held for later go first, in the same write
                return await self._send_held(replies, command)
            return await replies.send(command)
        except NoScriptError:
            if reload is None:
                raise
            await self.call(reload)
            return await self.call(command)
        except ReadOnlyError as exc:  # talking to a replica, during a failover
            raise CountersUnavailable(f"redis: {exc}") from exc
        except _Lost as exc:
            if not reused:
                raise CountersUnavailable(f"redis: {exc}") from None
        # A connection that had served before closed under this call (Redis restarted,
        # or dropped an idle client): try once more on a new one.
        try:
            return await (await self._connection()).send(command)
        except _Lost as exc:
            raise CountersUnavailable(f"redis: {exc}") from None

    def send_soon(self, command: bytes, failed: Failed, *, reload: bytes | None = None) -> None:
        """Send `command` without waiting for it: after the caller's current step, in one
        write with the others given meanwhile. `failed` hears of an error reply or of
        the command not getting through. `reload` (a SCRIPT LOAD) is sent, and the
        command once more, when Redis answers that it lacks the command's script."""
        self._soon.append((command, failed, reload))
        if len(self._soon) == 1:
            asyncio.get_running_loop().call_soon(self._send_soon)

    def _send_soon(self) -> None:
        if not self._soon:  # a call sent them already
            return
        replies = self._replies
        if replies is None or replies.closed:
            batch, self._soon = self._soon, []
            task = asyncio.get_running_loop().create_task(self._send_later(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        with contextlib.suppress(_Lost, CountersUnavailable):  # `failed` heard of it
            self._send_held(replies)

    def _send_held(self, replies: _Replies, command: bytes = b"") -> asyncio.Future[Any]:
        """Write the held commands and then `command` (if any) at once; its future."""
        batch, self._soon = self._soon, []
        commands = [held[0] for held in batch]
        if command:
            commands.append(command)
        try:
            futures = replies.send_all(commands)
        except (_Lost, CountersUnavailable) as exc:
            for _, failed, _ in batch:
                failed(exc)
            raise
        for future, held in zip(futures, batch, strict=False):
            self._unanswered.add(future)
            future.add_done_callback(functools.partial(self._answered, held))
        return futures[-1]

    def _answered(
        self, held: tuple[bytes, Failed, bytes | None], future: asyncio.Future[Any]
    ) -> None:
        self._unanswered.discard(future)
        if future.cancelled() or (exc := future.exception()) is None:
            return
        command, failed, reload = held
        if isinstance(exc, NoScriptError) and reload is not None and not self._closed:
            # Redis lost its scripts (flushed, or a new server behind the same address).
            if not self._soon:
                asyncio.get_running_loop().call_soon(self._send_soon)
            self._soon += [(reload, failed, None), (command, failed, None)]
            return
        failed(exc)

    async def _send_later(self, batch: list[tuple[bytes, Failed, bytes | None]]) -> None:
        """The connection is down: open it again first."""
        for command, failed, _ in batch:
            try:
                await self.call(command)
            except Exception as exc:
                failed(exc)

    async def close(self) -> None:
        """Send what `send_soon` holds, wait (up to the timeout) for those replies, close."""
        self._send_soon()
        pending = [*self._unanswered, *self._tasks]
        if pending:
            await asyncio.wait(pending, timeout=self._timeout)
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._replies is not None:
            self._replies.abort(CountersUnavailable("redis: connection closed"))
            self._replies = None

    async def _connection(self) -> _Replies:
        if self._closed:
            raise CountersUnavailable("redis: connection closed")
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None

    async def _connect(self) -> _Replies:
        loop = asyncio.get_running_loop()
        options = self._options
        replies = _Replies(self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                if "path" in options:
                    await loop.create_unix_connection(lambda: replies, options["path"])
                else:
                    await loop.create_connection(
                        lambda: replies,
                        options.get("host", "localhost"),
                        options.get("port", 6379),
                        ssl=_tls(options),
                    )
                setup = _handshake(options) + self._setup
                if setup:
                    for future in [replies.send(c) for c in setup]:
                        await future
        except (OSError, TimeoutError, _Lost) as exc:
            replies.abort(CountersUnavailable("redis: connect failed"))
            raise CountersUnavailable(f"redis: cannot connect ({type(exc).__name__})") from None
        except ResponseError as exc:  # wrong password, unknown db
            replies.abort(CountersUnavailable("redis: connect failed"))
            raise CountersUnavailable(f"redis: {str(exc).split(' ')[0]} at connect") from None
        self._replies = replies
        return replies


def _handshake(options: dict[str, Any]) -> list[bytes]:
    commands = []
    if options.get("password") is not None:
        user = options.get("username")
        auth = ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
        commands.append(pack(*auth))
    if options.get("db"):
        commands.append(pack("SELECT", options["db"]))
    if options.get("client_name"):
        commands.append(pack("CLIENT", "SETNAME", options["client_name"]))
    return commands


def _tls(options: dict[str, Any]) -> ssl.SSLContext | None:
    if options.get("connection_class") is None or "path" in options:
        return None
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
