"""The config admin API: the version being served and the kept ones, reload, rollback.
Admin role for changes, viewer to read; every reload and rollback is audited."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from modelway.access.principal import Principal
from modelway.api.admin_routes import admin_endpoint, read_admin_body
from modelway.api.reloader import Reloader, ReloadRefused, ReloadResult
from modelway.app import Runtime
from modelway.protocol.errors import BadRequest, Unavailable


def _reloader(request: Request) -> Reloader:
    reloader: Reloader | None = getattr(request.app.state, "reloader", None)
    if reloader is None:
        raise Unavailable("config reload is not available in this process")
    return reloader


async def show(request: Request, runtime: Runtime, who: Principal) -> Any:
    reloader = getattr(request.app.state, "reloader", None)
    history = [v.as_dict() for v in reloader.history()] if reloader is not None else []
    return {
        "object": "config",
        "version": runtime.version,
        "loaded_at": reloader.current.loaded_at if reloader and reloader.current else None,
        "model_groups": sorted(runtime.router.groups),
        "history": history,
    }


async def reload(request: Request, runtime: Runtime, who: Principal) -> Any:
    result = await _run(request, who, "config.reload", None)
    return _view(result)


async def rollback(request: Request, runtime: Runtime, who: Principal) -> Any:
    body = await read_admin_body(request)
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str) or not version:
        raise BadRequest('send {"version": "<a kept version>"}', param="version")
    return _view(await _run(request, who, "config.rollback", version))


async def _run(request: Request, who: Principal, action: str, version: str | None) -> ReloadResult:
    reloader = _reloader(request)
    before = reloader.current.version if reloader.current else None
    try:
        result = await (reloader.rollback(version) if version else reloader.reload("admin"))
    except ReloadRefused as exc:
        raise BadRequest(
            "the new config was refused; the running one keeps serving: " + "; ".join(exc.problems),
            code="invalid_config",
        ) from None
    if result.changed:
        await reloader.runtime.services.admin.record(
            who.key_id, action, "config", {"version": before}, {"version": result.version.version}
        )
    return result


def _view(result: ReloadResult) -> dict[str, Any]:
    return {
        "object": "config.reload",
        "changed": result.changed,
        **result.version.as_dict(),
        "restart_needed": result.restart_needed,
        "persisted": result.persisted,
    }


routes = [
    Route("/admin/config", admin_endpoint(show, write=False), methods=["GET"]),
    Route("/admin/config/reload", admin_endpoint(reload, write=True), methods=["POST"]),
    Route("/admin/config/rollback", admin_endpoint(rollback, write=True), methods=["POST"]),
]
