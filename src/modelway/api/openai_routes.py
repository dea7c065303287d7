"""The OpenAI-compatible routes: parse, run the pipeline, encode."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelway.api.request_body import M, parse_as, read_json, request_id
from modelway.api.responses import error_response, json_response, sse_response
from modelway.app import Runtime
from modelway.observability.logging import get_logger
from modelway.pipeline.context import Operation, RequestContext
from modelway.protocol.errors import GatewayError, InternalError, ModelNotFound
from modelway.protocol.openai_chat import ChatRequest
from modelway.protocol.openai_completions import CompletionRequest
from modelway.protocol.openai_embeddings import EmbeddingRequest

_log = get_logger("modelway.api")
_requests = get_logger("modelway.request")


async def chat_completions(request: Request) -> Response:
    return await _handle(request, "chat", ChatRequest)


async def completions(request: Request) -> Response:
    return await _handle(request, "completion", CompletionRequest)


async def embeddings(request: Request) -> Response:
    return await _handle(request, "embedding", EmbeddingRequest)


async def list_models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return json_response(runtime.models(), {"x-request-id": request_id(request)})


async def retrieve_model(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    rid = request_id(request)
    wanted = request.path_params["model"]
    for card in runtime.models().data:
        if card.id == wanted:
            return json_response(card, {"x-request-id": rid})
    return error_response(ModelNotFound(f"the model '{wanted}' does not exist", param="model"), rid)


async def _handle(request: Request, operation: Operation, model: type[M]) -> Response:
    runtime: Runtime = request.app.state.runtime
    rid = request_id(request)
    try:
        body = await read_json(request, runtime.config.server.max_body_bytes)
        req = parse_as(model, body)
        # The runtime serving now: a reload may have swapped it while the body came in.
        runtime = request.app.state.runtime
    except GatewayError as exc:
        # Refused before the pipeline: the request log line is written here instead.
        _requests.warning(
            "request",
            request_id=rid,
            operation=operation,
            status=exc.status,
            error_type=exc.type,
        )
        return error_response(exc, rid)
    assert isinstance(req, ChatRequest | CompletionRequest | EmbeddingRequest)
    # Stages look headers up often; Starlette's Headers scans a list for each lookup.
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
    ctx = RequestContext(request_id=rid, operation=operation, request=req, headers=headers)
    try:
        result = await runtime.handle(ctx)
    except GatewayError as exc:
        return error_response(exc, rid, ctx.response_headers)
    except Exception:
        _log.exception("request_failed", request_id=rid)
        return error_response(InternalError("the gateway failed on this request"), rid)
    headers = {"x-request-id": rid, **ctx.response_headers}
    if isinstance(result, BaseModel):
        return json_response(result, headers)
    assert not isinstance(req, EmbeddingRequest)
    return sse_response(result, req.wants_usage_chunk, headers)


def _routes_at(prefix: str) -> list[Route]:
    return [
        Route(f"{prefix}/chat/completions", chat_completions, methods=["POST"]),
        Route(f"{prefix}/completions", completions, methods=["POST"]),
        Route(f"{prefix}/embeddings", embeddings, methods=["POST"]),
        Route(f"{prefix}/models", list_models, methods=["GET"]),
        Route(f"{prefix}/models/{{model:path}}", retrieve_model, methods=["GET"]),
    ]


# Clients configured with or without the /v1 suffix in their base URL both work.
routes = _routes_at("/v1") + _routes_at("")
