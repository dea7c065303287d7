"""Alert notifications delivered to a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from modelway.config_alerts import AlertsConfig
from modelway.observability.alerts import AlertEngine, QueueState
from tests.servers import free_port

MODEL = "gpt-4o"


class Receiver:
    """A webhook receiver: ``/hook`` and ``/slack`` keep what they get, ``/hang`` never
    answers, ``/fail`` answers 500."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[Any]] = {"hook": [], "slack": []}
        self.headers: list[dict[str, str]] = []
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""

    async def keep(self, request: web.Request) -> web.Response:
        self.bodies[request.match_info["name"]].append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=204)

    async def hang(self, request: web.Request) -> web.Response:
        self.hanging.set()
        await self.release.wait()
        return web.Response(status=204)

    async def fail(self, request: web.Request) -> web.Response:
        return web.Response(status=500)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()
    app = web.Application()
    app.router.add_post("/hang", box.hang)
    app.router.add_post("/fail", box.fail)
    app.router.add_post("/{name}", box.keep)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    box.url = f"http://{host}:{port}"
    yield box
    box.release.set()
    await runner.cleanup()


Queue = list[QueueState]
Make = Callable[..., tuple[AlertEngine, Queue]]


@pytest.fixture
async def make_engine() -> AsyncIterator[Make]:
    """Engines that read their one queue's state from a list the test edits."""
    made: list[AlertEngine] = []

    def make(notifiers: list[dict[str, Any]], **settings: Any) -> tuple[AlertEngine, Queue]:
        queue: Queue = []
        config = AlertsConfig.model_validate({"notifiers": notifiers, **settings})
        engine = AlertEngine(config, queues=lambda: queue)
        made.append(engine)
        return engine, queue

    yield make
    for engine in made:
        await engine.close(grace_seconds=1)


def saturate(queue: Queue, depth: int) -> None:
    queue[:] = [QueueState(MODEL, depth, 10)]


async def wait_until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_webhook_gets_firing_and_resolved_exactly_once(
    receiver: Receiver, make_engine: Make
) -> None:
    hook = {"type": "webhook", "url": receiver.url + "/hook", "headers": {"X-Token": "s3cret"}}
    engine, queue = make_engine([hook])
    saturate(queue, 10)
    await engine.evaluate()
    await engine.evaluate()  # still firing: not sent again
    saturate(queue, 0)
    await engine.evaluate()
    await engine.evaluate()
    await engine.drain()
    bodies = receiver.bodies["hook"]
    assert [(b["status"], b["alert"]["key"]) for b in bodies] == [
        ("firing", "queue:gpt-4o"),
        ("resolved", "queue:gpt-4o"),
    ]
    alert = bodies[0]["alert"]
    assert alert["rule"] == "queue" and alert["labels"] == {"model": MODEL}
    assert alert["value"] == 1.0 and alert["threshold"] == 0.8 and alert["resolved_at"] is None
    assert bodies[1]["alert"]["resolved_at"] is not None
    assert all(h["X-Token"] == "s3cret" for h in receiver.headers)
    assert engine.recent()[0].last_notified is not None


async def test_slack_message_format(receiver: Receiver, make_engine: Make) -> None:
    engine, queue = make_engine([{"type": "slack", "url": receiver.url + "/slack"}])
    saturate(queue, 10)
    await engine.evaluate()
    saturate(queue, 0)
    await engine.evaluate()
    await engine.drain()
    firing, resolved = (body["text"] for body in receiver.bodies["slack"])
    assert firing.startswith(":warning: *[FIRING: warning]* queue model=gpt-4o\n")
    assert "10 of 10 queue places taken" in firing
    assert resolved.startswith(":white_check_mark: *[RESOLVED]* queue model=gpt-4o\n")
    assert set(receiver.bodies["slack"][0]) == {"text"}


async def test_a_dead_webhook_neither_raises_nor_stops_the_others(
    receiver: Receiver, make_engine: Make
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/services/T0/B0/tok3n"
    engine, queue = make_engine(
        [
            {"type": "webhook", "url": dead, "timeout_seconds": 2},
            {"type": "webhook", "url": receiver.url + "/fail"},
            {"type": "webhook", "url": receiver.url + "/hook"},
        ]
    )
    saturate(queue, 10)
    with capture_logs() as logs:
        [alert] = await engine.evaluate()
        await engine.drain()
    assert alert.key == "queue:gpt-4o" and engine.active()[0].key == "queue:gpt-4o"
    assert len(receiver.bodies["hook"]) == 1
    failures = [e for e in logs if e["event"] == "alert notification failed"]
    assert {e["error"] for e in failures} == {"ClientConnectorError", "NotificationFailed"}
    assert {e.get("http_status") for e in failures} == {None, 500}
    assert all(e["notifier"] == "webhook" for e in failures)
    assert "tok3n" not in repr(logs) and receiver.url not in repr(logs)
    assert any(e["event"] == "alert" and e["status"] == "firing" for e in logs)  # always logged


async def test_a_hanging_webhook_does_not_block_evaluation(
    receiver: Receiver, make_engine: Make
) -> None:
    engine, queue = make_engine(
        [
            {"type": "webhook", "url": receiver.url + "/hang", "timeout_seconds": 0.5},
            {"type": "webhook", "url": receiver.url + "/hook"},
        ]
    )
    saturate(queue, 10)
    await engine.evaluate()
    await receiver.hanging.wait()
    saturate(queue, 0)
    assert [a.state for a in await engine.evaluate()] == ["resolved"]  # while one hangs
    await wait_until(lambda: len(receiver.bodies["hook"]) == 2, "the other webhook got both")
    with capture_logs() as logs:
        await engine.drain()  # the hanging send times out, is logged, is not raised
    assert any(e.get("error") == "TimeoutError" for e in logs)


async def test_the_background_loop_evaluates_and_close_stops_it(
    receiver: Receiver, make_engine: Make
) -> None:
    engine, queue = make_engine(
        [{"type": "webhook", "url": receiver.url + "/hook"}], evaluate_seconds=0.02
    )
    saturate(queue, 10)
    engine.start()
    await wait_until(lambda: len(receiver.bodies["hook"]) == 1, "the loop fired")
    saturate(queue, 0)
    await wait_until(lambda: len(receiver.bodies["hook"]) == 2, "the loop resolved")
    await engine.close()
    saturate(queue, 10)
    await asyncio.sleep(0.1)
    assert len(receiver.bodies["hook"]) == 2


async def test_budget_alerts_are_sent_from_the_recorder(
    receiver: Receiver, make_engine: Make
) -> None:
    engine, _ = make_engine([{"type": "webhook", "url": receiver.url + "/hook"}])
    engine.record_budget("team", "acme", "month", 81.0, 100.0, "hard")  # queues the send
    assert receiver.bodies["hook"] == []
    await engine.drain()
    [body] = receiver.bodies["hook"]
    assert body["alert"]["key"] == "budget:team:acme:month:80"
    assert body["alert"]["labels"]["team"] == "acme"
