"""Running the gateway: load the runtime, then serve HTTP with uvicorn until stopped."""

from __future__ import annotations

import asyncio

import uvicorn

from modelway.api.server import build_app
from modelway.app import build_runtime
from modelway.config import Config
from modelway.observability.logging import configure_logging, get_logger
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
    configure_logging(config.logging.level)
    log = get_logger("modelway.server")
    runtime = build_runtime(config)
    try:
        await runtime.start()
    except GatewayError as exc:
        log.error("startup_failed", error=exc.message)
        await runtime.close()
        return 1
    app = build_app(runtime, manage_runtime=False)
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
            timeout_graceful_shutdown=30,
        )
    )
    log.info(
        "starting",
        url=f"http://{host}:{port}",
        models=sorted(runtime.router.groups),
        config=config.summary(),
    )
    try:
        await server.serve()
    finally:
        await runtime.close()
    return 0 if server.started else 1
