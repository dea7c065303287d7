"""The admin API: keys, teams, spend and the audit log, for the master key or an
``admin`` key (``viewer`` keys may read)."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelway.access.admin_models import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate
from modelway.access.principal import Principal
from modelway.accounting.pricing import format_usd
from modelway.api.request_body import parse_as, read_json, request_id
from modelway.api.responses import error_response
from modelway.app import Runtime
from modelway.observability.logging import get_logger
from modelway.pipeline.authenticate import presented_key
from modelway.protocol.errors import (
    AuthFailed,
    BadRequest,
    GatewayError,
    InternalError,
    PermissionDenied,
    Unavailable,
)
from modelway.store.database import is_unreachable

_log = get_logger("modelway.admin")
_BODY_LIMIT = 256 * 1024
GROUPS = ("key", "team", "model", "tag", "day", "deployment")
Handler = Callable[[Request, Runtime, Principal], Awaitable[Any]]


def admin_endpoint(handler: Handler, *, write: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        rid = request_id(request)
        try:
            principal = _caller(request, runtime, write)
            result = await handler(request, runtime, principal)
        except GatewayError as exc:
            return error_response(exc, rid)
        except Exception as exc:
            if is_unreachable(exc):
                _log.error("admin_database_unreachable", request_id=rid, error=type(exc).__name__)
                return error_response(
                    Unavailable("the database is unreachable; try again", retry_after=5), rid
                )
            _log.exception("admin_failed", request_id=rid)
            return error_response(InternalError("the admin request failed"), rid)
        if isinstance(result, Response):
            return result
        status = 201 if request.method == "POST" and write else 200
        return Response(
            orjson.dumps(result),
            status_code=status,
            media_type="application/json",
            headers={"x-request-id": rid},
        )

    return endpoint


def _caller(request: Request, runtime: Runtime, write: bool) -> Principal:
    services = runtime.services
    if services.master_key is None:
        raise PermissionDenied(
            "the admin API is off: set auth.master_key in the config to turn it on",
            code="admin_disabled",
        )
    key = presented_key({k.lower(): v for k, v in request.headers.items()})
    if key is None:
        raise AuthFailed("no API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    principal = services.keys.resolve(key)
    if principal.role == "admin" or (principal.role == "viewer" and not write):
        return principal
    raise PermissionDenied(f"a '{principal.role}' key may not do this", code="insufficient_role")


async def read_admin_body(request: Request) -> Any:
    return await read_json(request, _BODY_LIMIT)


# -- keys
async def create_key(request: Request, runtime: Runtime, who: Principal) -> Any:
    body = parse_as(KeyCreate, await read_admin_body(request))
    return await runtime.services.admin.create_key(who.key_id, body)


async def list_keys(request: Request, runtime: Runtime, who: Principal) -> Any:
    team = request.query_params.get("team")
    revoked = request.query_params.get("include_revoked", "false").lower() in ("1", "true")
    return {"object": "list", "data": await runtime.services.admin.keys(team, revoked)}


async def get_key(request: Request, runtime: Runtime, who: Principal) -> Any:
    return await runtime.services.admin.key(request.path_params["key_id"])


async def update_key(request: Request, runtime: Runtime, who: Principal) -> Any:
    body = parse_as(KeyUpdate, await read_admin_body(request))
    return await runtime.services.admin.update_key(who.key_id, request.path_params["key_id"], body)


async def revoke_key(request: Request, runtime: Runtime, who: Principal) -> Any:
    return await runtime.services.admin.revoke_key(who.key_id, request.path_params["key_id"])


async def rotate_key(request: Request, runtime: Runtime, who: Principal) -> Any:
    return await runtime.services.admin.rotate_key(who.key_id, request.path_params["key_id"])


# -- teams
async def create_team(request: Request, runtime: Runtime, who: Principal) -> Any:
    body = parse_as(TeamCreate, await read_admin_body(request))
    return await runtime.services.admin.create_team(who.key_id, body)


async def list_teams(request: Request, runtime: Runtime, who: Principal) -> Any:
    return {"object": "list", "data": await runtime.services.admin.teams()}


async def get_team(request: Request, runtime: Runtime, who: Principal) -> Any:
    return await runtime.services.admin.team(request.path_params["team_id"])


async def update_team(request: Request, runtime: Runtime, who: Principal) -> Any:
    body = parse_as(TeamUpdate, await read_admin_body(request))
    team = request.path_params["team_id"]
    return await runtime.services.admin.update_team(who.key_id, team, body)


async def delete_team(request: Request, runtime: Runtime, who: Principal) -> Any:
    return await runtime.services.admin.delete_team(who.key_id, request.path_params["team_id"])


# -- spend and audit
async def spend(request: Request, runtime: Runtime, who: Principal) -> Any:
    params = request.query_params
    group_by = params.get("group_by", "key")
    if group_by not in GROUPS:
        raise BadRequest(f"group_by must be one of: {', '.join(GROUPS)}", param="group_by")
    tag = params.get("tag")
    if group_by == "tag" and not tag:
        raise BadRequest("group_by=tag needs tag=<name>", param="tag")
    since, until = _when(params.get("since"), "since"), _when(params.get("until"), "until")
    await runtime.services.writer.flush()  # this replica's rows, up to now
    rows = await runtime.services.ledger.spend(group_by, since=since, until=until, tag=tag)  # type: ignore[arg-type]
    for row in rows:
        row["cost_usd"] = format_usd(row["cost_nano_usd"])
        row["saved_usd"] = format_usd(row["saved_nano_usd"])
    wants_csv = params.get("format") == "csv" or "text/csv" in request.headers.get("accept", "")
    if wants_csv:
        return _csv(group_by, rows, request_id(request))
    total = sum(r["cost_nano_usd"] for r in rows)
    return {
        "object": "spend",
        "group_by": group_by,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "data": rows,
        "total_cost_usd": format_usd(total),
        "total_saved_usd": format_usd(sum(r["saved_nano_usd"] for r in rows)),
        "total_requests": sum(r["requests"] for r in rows),
    }


def _when(value: str | None, param: str) -> datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{param} must be a date (2026-12-01) or an ISO 8601 time", param=param
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _csv(group_by: str, rows: list[dict[str, Any]], rid: str) -> Response:
    out = io.StringIO()
    columns = [
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_usd",
        "cache_hits",
        "saved_usd",
    ]
    writer = csv.writer(out)
    writer.writerow([group_by, *columns])
    for row in rows:
        writer.writerow([_cell(row["group"]), *(row[c] for c in columns)])
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"x-request-id": rid, "content-disposition": "attachment; filename=spend.csv"},
    )


def _cell(value: str | None) -> str:
    # Spreadsheets run cells that start with these as formulas (CSV injection).
    text = "" if value is None else value
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def audit(request: Request, runtime: Runtime, who: Principal) -> Any:
    params = request.query_params
    try:
        after = int(params.get("after", "0"))
        limit = min(int(params.get("limit", "100")), 1000)
    except ValueError:
        raise BadRequest("after and limit must be integers", param="limit") from None
    entries = await runtime.services.admin.audit_entries(after, limit, params.get("target"))
    return {"object": "list", "data": entries}


async def audit_verify(request: Request, runtime: Runtime, who: Principal) -> Any:
    result = await runtime.services.admin.audit.verify()
    return {"ok": result.ok, "checked": result.checked, "problems": result.problems}


async def alerts(request: Request, runtime: Runtime, who: Principal) -> Any:
    engine = runtime.alerts
    if engine is None:
        return {"enabled": False, "active": [], "recent": []}
    return {"enabled": True, **engine.as_json()}


routes = [
    Route("/admin/keys", admin_endpoint(create_key, write=True), methods=["POST"]),
    Route("/admin/keys", admin_endpoint(list_keys, write=False), methods=["GET"]),
    Route("/admin/keys/{key_id}", admin_endpoint(get_key, write=False), methods=["GET"]),
    Route("/admin/keys/{key_id}", admin_endpoint(update_key, write=True), methods=["PATCH"]),
    Route("/admin/keys/{key_id}", admin_endpoint(revoke_key, write=True), methods=["DELETE"]),
    Route("/admin/keys/{key_id}/rotate", admin_endpoint(rotate_key, write=True), methods=["POST"]),
    Route("/admin/teams", admin_endpoint(create_team, write=True), methods=["POST"]),
    Route("/admin/teams", admin_endpoint(list_teams, write=False), methods=["GET"]),
    Route("/admin/teams/{team_id}", admin_endpoint(get_team, write=False), methods=["GET"]),
    Route("/admin/teams/{team_id}", admin_endpoint(update_team, write=True), methods=["PATCH"]),
    Route("/admin/teams/{team_id}", admin_endpoint(delete_team, write=True), methods=["DELETE"]),
    Route("/admin/spend", admin_endpoint(spend, write=False), methods=["GET"]),
    Route("/admin/audit", admin_endpoint(audit, write=False), methods=["GET"]),
    Route("/admin/audit/verify", admin_endpoint(audit_verify, write=False), methods=["GET"]),
    Route("/admin/alerts", admin_endpoint(alerts, write=False), methods=["GET"]),
]
