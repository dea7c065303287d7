"""The ASGI application: routers attached, errors shaped, the runtime started and stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelway.api import (
    admin_routes,
    config_routes,
    guardrail_routes,
    health_routes,
    metrics_routes,
    openai_routes,
)
from modelway.api.request_body import request_id
from modelway.api.responses import error_response
from modelway.app import Runtime
from modelway.protocol.errors import BadRequest, GatewayError, MethodNotAllowed, NotFound


def build_app(runtime: Runtime, *, manage_runtime: bool = True) -> Starlette:
    """The app; with ``manage_runtime`` its lifespan starts and closes the runtime
    (the CLI starts it itself, so that a model that fails to load stops start-up)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.close()

    app = Starlette(
        routes=[
            *guardrail_routes.routes,
            *openai_routes.routes,
            *health_routes.routes,
            *admin_routes.routes,
            *config_routes.routes,
            *metrics_routes.routes,
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: GatewayError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    elif exc.status_code == 404:
        error = NotFound(f"no route {request.method} {request.url.path}")
    else:
        error = BadRequest(str(exc.detail))
    return error_response(error, request_id(request))
