"""``GET /metrics``: Prometheus text format, or OpenMetrics when the scraper asks for it."""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelway.app import Runtime


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    runtime.sample_gauges()
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encode(runtime.metrics.collect_registry())
    return Response(body, headers={"content-type": content_type})


routes = [Route("/metrics", metrics, methods=["GET"])]
