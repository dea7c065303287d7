"""Liveness (the process answers), readiness (every model group can be served) and the
embedded engines' live figures."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelway.api.request_body import request_id
from modelway.app import Runtime


async def live(request: Request) -> Response:
    return Response(
        b'{"status":"ok"}',
        media_type="application/json",
        headers={"x-request-id": request_id(request)},
    )


async def ready(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if getattr(request.app.state, "draining", False):
        body: dict[str, object] = {"status": "draining"}
        return Response(
            orjson.dumps(body),
            status_code=503,
            media_type="application/json",
            headers={"x-request-id": request_id(request)},
        )
    models = await runtime.readiness()
    ok = all(models.values())
    body = {"status": "ready" if ok else "not_ready", "models": models}
    return Response(
        orjson.dumps(body),
        status_code=200 if ok else 503,
        media_type="application/json",
        headers={"x-request-id": request_id(request)},
    )


async def engine_stats(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    body = {"deployments": runtime.engine_stats()}
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"x-request-id": request_id(request)},
    )


routes = [
    Route("/engine/stats", engine_stats, methods=["GET"]),
    Route("/health/live", live, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/health", live, methods=["GET"]),
]
