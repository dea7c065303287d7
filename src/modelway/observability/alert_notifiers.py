"""Where alerts go: a JSON webhook, a Slack-compatible webhook, the log; and the outbox
that delivers to them off the caller's path.

A notifier failure is logged with the notifier's type, never its URL or headers (webhook
URLs usually embed a token), and is never raised to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import orjson

from modelway.config_alerts import (
    LogNotifierConfig,
    NotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from modelway.observability.alert_types import Alert
from modelway.observability.logging import get_logger

_log = get_logger("modelway.alerts")
MAX_PENDING = 1000  # per notifier; beyond it, notifications are dropped (and logged)


class Notifier(Protocol):
    kind: str  # logged instead of the destination

    async def send(self, alert: Alert) -> None: ...

    async def aclose(self) -> None: ...


class NotificationFailed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class WebhookNotifier:
    """POSTs ``{"status": "firing"|"resolved", "alert": {...}}`` as JSON."""

    kind = "webhook"

    def __init__(
        self, url: str, headers: Mapping[str, str] | None = None, timeout_seconds: float = 5.0
    ) -> None:
        self._url = url
        self._headers = {"content-type": "application/json", **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {"status": alert.state, "alert": alert.as_dict()}

    async def send(self, alert: Alert) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = orjson.dumps(self.payload(alert))
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            if response.status >= 300:
                raise NotificationFailed(response.status)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SlackNotifier(WebhookNotifier):
    """A Slack incoming webhook (or a compatible one): ``{"text": "..."}``."""

    kind = "slack"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        super().__init__(url, None, timeout_seconds)

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {"text": slack_text(alert)}


def slack_text(alert: Alert) -> str:
    if alert.state == "firing":
        icon = ":rotating_light:" if alert.severity == "critical" else ":warning:"
        head = f"{icon} *[FIRING: {alert.severity}]*"
    else:
        head = ":white_check_mark: *[RESOLVED]*"
    subject = " ".join([alert.rule, *(f"{k}={v}" for k, v in alert.labels.items())])
    return f"{head} {subject}\n{alert.summary}"


class LogNotifier:
    """The structured log: event ``alert``, a warning when firing, info when resolved."""

    kind = "log"

    async def send(self, alert: Alert) -> None:
        emit = _log.warning if alert.state == "firing" else _log.info
        emit(
            "alert",
            status=alert.state,
            key=alert.key,
            rule=alert.rule,
            severity=alert.severity,
            labels=alert.labels,
            summary=alert.summary,
            value=alert.value,
            threshold=alert.threshold,
        )

    async def aclose(self) -> None:
        pass


def build_notifiers(configs: Sequence[NotifierConfig]) -> list[Notifier]:
    """The log notifier (always on), then one notifier per configured destination."""
    notifiers: list[Notifier] = [LogNotifier()]
    for config in configs:
        match config:
            case WebhookNotifierConfig():
                headers = {k: v.get_secret_value() for k, v in config.headers.items()}
                url = config.url.get_secret_value()
                notifiers.append(WebhookNotifier(url, headers, config.timeout_seconds))
            case SlackNotifierConfig():
                url = config.url.get_secret_value()
                notifiers.append(SlackNotifier(url, config.timeout_seconds))
            case LogNotifierConfig():
                pass  # already there
    return notifiers


class Outbox:
    """One queue and one worker task per notifier: a slow webhook delays no other
    notifier, and each notifier gets an alert's ``firing`` before its ``resolved``."""

    def __init__(self, notifiers: Sequence[Notifier], clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lanes = [(n, asyncio.Queue[tuple[Alert, Alert]](MAX_PENDING)) for n in notifiers]
        self._workers: list[asyncio.Task[None]] = []

    def put(self, alert: Alert) -> None:
        """Queues a snapshot of ``alert`` for every notifier; never blocks."""
        snapshot = alert.snapshot()
        for notifier, queue in self._lanes:
            try:
                queue.put_nowait((alert, snapshot))
            except asyncio.QueueFull:
                _log.warning("alert notification dropped", notifier=notifier.kind, key=alert.key)
        self._start()

    def _start(self) -> None:
        if self._workers:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the next put() or drain() in one starts the workers
        self._workers = [
            asyncio.create_task(self._deliver(n, q), name=f"alerts-{n.kind}")
            for n, q in self._lanes
        ]

    async def _deliver(self, notifier: Notifier, queue: asyncio.Queue[tuple[Alert, Alert]]) -> None:
        while True:
            alert, snapshot = await queue.get()
            try:
                await notifier.send(snapshot)
                alert.last_notified = self._clock()
            except Exception as exc:  # a notifier must never stop the others or the engine
                _log.warning(
                    "alert notification failed",
                    notifier=notifier.kind,
                    key=snapshot.key,
                    status=snapshot.state,
                    error=type(exc).__name__,
                    http_status=getattr(exc, "status", None),
                )
            finally:
                queue.task_done()

    async def drain(self) -> None:
        """Waits until every queued notification was delivered or failed."""
        self._start()
        for _, queue in self._lanes:
            await queue.join()

    async def close(self, grace_seconds: float) -> None:
        """Delivers what is queued (for up to ``grace_seconds``), then stops and closes all."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), grace_seconds)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for notifier, _ in self._lanes:
            await notifier.aclose()
