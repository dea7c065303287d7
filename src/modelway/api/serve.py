"""Running the gateway: load the runtime, then serve HTTP with uvicorn until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
from pathlib import Path
from types import FrameType

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from starlette.applications import Starlette

from modelway.api.heap import freeze_long_lived
from modelway.api.reloader import Reloader, ReloadRefused, ReloadRules
from modelway.api.server import build_app
from modelway.app import build_runtime
from modelway.config import Config
from modelway.config_versions import ConfigVersions, config_hash
from modelway.observability.logging import configure_logging, get_logger
from modelway.observability.metrics import multiprocess_dir
from modelway.protocol.errors import GatewayError


def run(
    config: Config,
    host: str,
    port: int,
    config_path: str | None = None,
    sock: socket.socket | None = None,
    rules: ReloadRules | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM, on uvloop when it is installed; the exit status.
    ``sock``: a socket bound by a parent process (``--workers``)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, host, port, config_path, sock, rules))
    result: int = uvloop.run(serve(config, host, port, config_path, sock, rules))
    return result


class _Server(uvicorn.Server):
    """uvicorn's server, told to drain first: on SIGINT/SIGTERM readiness turns false at
    once, then uvicorn stops accepting and waits for in-flight requests and streams."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.draining = True
        super().handle_exit(sig, frame)


async def serve(
    config: Config,
    host: str,
    port: int,
    config_path: str | None = None,
    sock: socket.socket | None = None,
    rules: ReloadRules | None = None,
) -> int:
    log_output = configure_logging(config.logging.level)
    flusher = asyncio.create_task(log_output.flush_periodically())
    log = get_logger("modelway.server")
    path = Path(config_path) if config_path else None
    text = path.read_text(encoding="utf-8") if path is not None else None
    runtime = build_runtime(config, version=config_hash(text) if text else "default")
    try:
        await runtime.start()
    except GatewayError as exc:
        log.error("startup_failed", error=exc.message)
        await runtime.close()
        log_output.flush_now()
        return 1
    app = build_app(runtime, manage_runtime=False)
    grace = config.server.shutdown_grace_seconds
    versions = ConfigVersions(config.state_path() / "config-versions")
    reloader = Reloader(app, path, text, versions, grace, rules)
    app.state.reloader = reloader
    freeze_long_lived()
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, math.ceil(grace)),
            # Longer than the idle timeout of common load balancers (60 s), so a pooled
            # client connection is not closed under a request being sent on it.
            timeout_keep_alive=75,
        ),
        app,
    )
    log.info(
        "starting",
        url=f"http://{host}:{port}",
        models=sorted(runtime.router.groups),
        config=config.summary(),
    )
    stops = _record_stop_signals()
    _reload_on_sighup(reloader)
    if config.server.watch_config_seconds > 0:
        reloader.watch(config.server.watch_config_seconds)
    try:
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        # uvicorn re-raises the signal that stopped it once it is done; the handlers above
        # take it, so closing (in-flight records written, spools flushed) is not cut short.
        await reloader.close()
        await reloader.runtime.close()
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        if stops:
            log.info("stopped", signal=signal.Signals(stops[0]).name)
        flusher.cancel()
        log_output.flush_now()
    return 0 if server.started else 1


def _reload_on_sighup(reloader: Reloader) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        with contextlib.suppress(ReloadRefused):  # logged; the running config keeps serving
            await reloader.reload("sighup")

    def start() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, start)


def _record_stop_signals() -> list[int]:
    received: list[int] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)
    return received
