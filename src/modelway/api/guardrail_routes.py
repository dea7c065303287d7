"""``POST /v1/guardrails/check``: run a guardrail policy on a text without calling a
model, for applications' own pipelines."""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelway.api.request_body import parse_as, read_json, request_id
from modelway.api.responses import error_response
from modelway.app import Runtime
from modelway.guardrails.anonymizer import Placeholders
from modelway.guardrails.input_policy import InputChecks, Verdict
from modelway.pipeline.authenticate import presented_key
from modelway.protocol.errors import AuthFailed, GatewayError, NotFound


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000)
    policy: str | None = Field(None, description="A policy name; the default when unset.")
    direction: Literal["input"] = "input"


async def check(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    rid = request_id(request)
    try:
        principal = None
        if runtime.services.master_key is not None:
            key = presented_key({k.lower(): v for k, v in request.headers.items()})
            if key is None:
                raise AuthFailed("no API key: send 'Authorization: Bearer <key>'")
            principal = runtime.services.keys.resolve(key)
        body = parse_as(CheckRequest, await read_json(request, 2 * 1024 * 1024))
        guard = runtime.guardrails
        wanted = body.policy or (principal.guardrail_policy if principal is not None else None)
        policy = guard.named(wanted) if guard is not None else None
        if policy is None:
            raise NotFound(
                f"no guardrail policy named '{wanted or 'default'}'",
                param="policy",
                code="policy_not_found",
            )
        assert guard is not None
        verdict, placeholders = Verdict(), Placeholders()
        text = InputChecks(policy.input, guard.detectors).text(body.text, verdict, placeholders)
    except GatewayError as exc:
        return error_response(exc, rid)
    answer = {
        "object": "guardrail.check",
        "blocked": verdict.blocked is not None,
        "reason": verdict.blocked,
        "confidential": verdict.confidential,
        "actions": verdict.actions,
        "injection": {"score": round(verdict.injection_score, 4), "rules": verdict.injection_rules},
        "text": text,
    }
    return Response(
        orjson.dumps(answer), media_type="application/json", headers={"x-request-id": rid}
    )


routes = [
    Route("/v1/guardrails/check", check, methods=["POST"]),
    Route("/guardrails/check", check, methods=["POST"]),
]
