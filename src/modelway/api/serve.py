"""Running the gateway: load the runtime, then serve HTTP with uvicorn until stopped."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import uvicorn
from prometheus_client.multiprocess import mark_process_dead

from modelway.api.server import build_app
from modelway.app import build_runtime
from modelway.config import Config
from modelway.observability.logging import configure_logging, get_logger
from modelway.observability.metrics import multiprocess_dir
from modelway.protocol.errors import GatewayError


def run(config: Config, host: str, port: int) -> int:
    """Serve until SIGINT/SIGTERM, on uvloop when it is installed; the exit status."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, host, port))
    result: int = uvloop.run(serve(config, host, port))
    return result


async def serve(config: Config, host: str, port: int) -> int:
    log_output = configure_logging(config.logging.level)
    flusher = asyncio.create_task(log_output.flush_periodically())
    log = get_logger("modelway.server")
    runtime = build_runtime(config)
    try:
        await runtime.start()
    except GatewayError as exc:
        log.error("startup_failed", error=exc.message)
        await runtime.close()
        log_output.flush_now()
        return 1
    app = build_app(runtime, manage_runtime=False)
    # Everything loaded so far lives for the whole process: keep it out of the cyclic
    # collector's scans, whose full passes otherwise show up as latency spikes.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    server = uvicorn.Server(
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
            timeout_graceful_shutdown=30,
            # Longer than the idle timeout of common load balancers (60 s), so a pooled
            # client connection is not closed under a request being sent on it.
            timeout_keep_alive=75,
        )
    )
    log.info(
        "starting",
        url=f"http://{host}:{port}",
        models=sorted(runtime.router.groups),
        config=config.summary(),
    )
    stops = _record_stop_signals()
    try:
        await server.serve()
    finally:
        # uvicorn re-raises the signal that stopped it once it is done; the handlers above
        # take it, so closing (in-flight records written, spools flushed) is not cut short.
        await runtime.close()
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        if stops:
            log.info("stopped", signal=signal.Signals(stops[0]).name)
        flusher.cancel()
        log_output.flush_now()
    return 0 if server.started else 1


def _record_stop_signals() -> list[int]:
    received: list[int] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)
    return received
