"""The counters' pipelined Redis connection: order, held commands, failures, URL forms."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ResponseError

from modelway.store.counters import CountersUnavailable
from modelway.store.redis_wire import RedisWire, _tls, pack
from tests.services import redis_url


@pytest.fixture
async def key() -> AsyncIterator[str]:
    """A key of this test alone, deleted afterwards."""
    url = redis_url()
    name = f"modelway-test:{uuid.uuid4().hex}"
    yield name
    client = aioredis.Redis.from_url(url)
    await client.delete(name)
    await client.aclose()


async def test_concurrent_calls_get_their_own_replies(key: str) -> None:
    wire = RedisWire(redis_url(), timeout=2)
    replies = await asyncio.gather(*(wire.call(pack("INCRBY", key, n)) for n in range(1, 201)))
    # One connection, replies in order: the running totals, each to its own caller.
    assert sorted(replies) == replies and replies[-1] == sum(range(1, 201))
    await wire.close()


async def test_held_commands_go_first_and_report_failures(key: str) -> None:
    wire = RedisWire(redis_url(), timeout=2)
    failures: list[BaseException] = []
    await wire.call(pack("SET", key, "5"))
    wire.send_soon(pack("INCRBY", key, 2), failures.append)
    wire.send_soon(pack("HSET", key, "f", "v"), failures.append)  # wrong type: an error reply
    assert await wire.call(pack("GET", key)) == b"7"  # sent after the held ones
    await asyncio.sleep(0)
    assert len(failures) == 1 and isinstance(failures[0], ResponseError)
    assert "WRONGTYPE" in str(failures[0])
    await wire.close()


async def test_close_sends_and_waits_for_what_is_held(key: str) -> None:
    wire = RedisWire(redis_url(), timeout=2)
    await wire.call(pack("PING"))
    wire.send_soon(pack("SET", key, "held"), lambda exc: pytest.fail(repr(exc)))
    await wire.close()
    client = aioredis.Redis.from_url(redis_url())
    assert await client.get(key) == b"held"
    await client.aclose()
    with pytest.raises(CountersUnavailable):
        await wire.call(pack("PING"))


async def test_held_commands_survive_a_dropped_connection(key: str) -> None:
    name = f"wire-{uuid.uuid4().hex[:8]}"
    wire = RedisWire(f"{redis_url()}?client_name={name}", timeout=2)
    await wire.call(pack("PING"))
    admin = aioredis.Redis.from_url(redis_url())
    ours = [c["id"] for c in await admin.client_list() if c["name"] == name]
    await admin.client_kill_filter(_id=ours[0])
    await asyncio.sleep(0.05)  # the close reaches the connection
    wire.send_soon(pack("SET", key, "again"), lambda exc: pytest.fail(repr(exc)))
    await wire.close()
    assert await admin.get(key) == b"again"
    await admin.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Path]:
    """A Redis of this test's own on a unix socket, with a password."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed: cannot start a private Redis")
    path = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--unixsocket",
            str(path),
            "--requirepass",
            "s3cret-pw",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the private redis-server did not start")
        time.sleep(0.02)
    yield path
    proc.terminate()
    proc.wait(10)


async def test_unix_socket_with_password_and_database(private_redis: Path) -> None:
    wire = RedisWire(f"unix://:s3cret-pw@{private_redis}?db=3", timeout=2)
    await wire.call(pack("SET", "k", "v"))
    probe = aioredis.Redis(unix_socket_path=str(private_redis), password="s3cret-pw", db=3)
    assert await probe.get("k") == b"v"
    await probe.aclose()
    await wire.close()


async def test_wrong_password_is_unavailable_without_echoing_it(private_redis: Path) -> None:
    wire = RedisWire(f"unix://:not-the-pw@{private_redis}", timeout=2)
    with pytest.raises(CountersUnavailable) as caught:
        await wire.call(pack("PING"))
    assert "not-the-pw" not in str(caught.value) and "WRONGPASS" in str(caught.value)
    await wire.close()


async def test_a_server_that_stops_answering_fails_every_waiting_call() -> None:
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    hold.listen()
    port = hold.getsockname()[1]
    wire = RedisWire(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        calls = [asyncio.ensure_future(wire.call(pack("PING"))) for _ in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        assert all(isinstance(r, CountersUnavailable) for r in results)
    finally:
        await wire.close()
        hold.close()


def test_tls_settings_come_from_the_url() -> None:
    assert _tls(dict(parse_url("redis://h:6379/0"))) is None
    strict = _tls(dict(parse_url("rediss://h:6380/0")))
    assert strict is not None and strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    relaxed = _tls(dict(parse_url("rediss://h:6380/0?ssl_cert_reqs=none")))
    assert relaxed is not None and relaxed.verify_mode == ssl.CERT_NONE
    assert _tls(dict(parse_url("unix:///tmp/r.sock"))) is None
