"""A fast mock LLM upstream speaking the OpenAI and Anthropic protocols, with injectable faults.

Used by the gateway's tests, benchmarks and chaos tests (`modelway mock-upstream`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import orjson
from aiohttp import web

from modelway.testing import mock_anthropic, mock_openai
from modelway.testing.mock_serving import STATE_KEY, error_response, json_response
from modelway.testing.mock_state import MockOptions, MockState, updated_options

__all__ = [
    "MockOptions",
    "RunningMock",
    "build_mock_app",
    "run_mock_upstream",
    "start_mock_upstream",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Longest suffix first: "/chat/completions" also ends with "/completions".
_POST_SUFFIXES: tuple[tuple[str, Handler], ...] = (
    ("/chat/completions", mock_openai.chat_completions),
    ("/completions", mock_openai.completions),
    ("/embeddings", mock_openai.embeddings),
    ("/messages", mock_anthropic.messages),
)
_MAX_BODY_BYTES = 64 * 1024 * 1024
_SHUTDOWN_TIMEOUT_S = 0.5


async def _health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].stats.snapshot())


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].reset_stats()
    return json_response({"status": "ok"})


async def _config(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    try:
        changes = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        changes = None
    if not isinstance(changes, dict):
        return error_response("openai", 400, "The body must be a JSON object of MockOptions.")
    try:
        options = updated_options(state.options, changes)
    except (ValueError, TypeError) as exc:
        return error_response("openai", 400, str(exc))
    state.set_options(options, reseed="seed" in changes)
    return json_response(dataclasses.asdict(options))


async def _by_suffix(request: web.Request) -> web.StreamResponse:
    """Serve API routes under any prefix, e.g. Azure's /openai/deployments/{name}/..."""
    path = request.path.rstrip("/")
    if request.method == "POST":
        for suffix, handler in _POST_SUFFIXES:
            if path.endswith(suffix):
                return await handler(request)
    elif request.method == "GET" and path.endswith("/models"):
        return await mock_openai.models(request)
    return error_response("openai", 404, f"Unknown route: {request.method} {request.path}")


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].closing = True


def build_mock_app(options: MockOptions) -> web.Application:
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[STATE_KEY] = MockState(options)
    router = app.router
    router.add_post("/v1/chat/completions", mock_openai.chat_completions)
    router.add_post("/v1/completions", mock_openai.completions)
    router.add_post("/v1/embeddings", mock_openai.embeddings)
    router.add_post("/v1/messages", mock_anthropic.messages)
    router.add_get("/v1/models", mock_openai.models, allow_head=False)
    router.add_get("/health", _health, allow_head=False)
    router.add_get("/_mock/stats", _stats, allow_head=False)
    router.add_post("/_mock/reset", _reset)
    router.add_post("/_mock/config", _config)
    router.add_route("*", "/{tail:.*}", _by_suffix)
    app.on_shutdown.append(_on_shutdown)
    return app


@dataclass
class RunningMock:
    """A mock upstream serving in the current event loop; `close()` stops it."""

    url: str
    port: int
    app: web.Application
    runner: web.AppRunner

    @property
    def state(self) -> MockState:
        return self.app[STATE_KEY]

    @property
    def options(self) -> MockOptions:
        return self.state.options

    async def close(self) -> None:
        # Lets hanging handlers finish before the runner waits for them.
        self.state.closing = True
        await self.runner.cleanup()

    async def __aenter__(self) -> RunningMock:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_mock_upstream(
    options: MockOptions, host: str = "127.0.0.1", port: int = 0
) -> RunningMock:
    app = build_mock_app(options)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    url_host = f"[{host}]" if ":" in host else host
    return RunningMock(
        url=f"http://{url_host}:{bound_port}", port=bound_port, app=app, runner=runner
    )


async def _serve_until_signal(options: MockOptions, host: str, port: int) -> None:
    mock = await start_mock_upstream(options, host, port)
    print(f"mock upstream listening on {mock.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await mock.close()


def run_mock_upstream(options: MockOptions, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (blocking); uses uvloop when it is installed."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve_until_signal(options, host, port))
