"""The admin commands (keys, teams, spend, audit, config), which call a running gateway's admin
API, and `db upgrade`, which migrates the configured database directly."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_URL = "http://127.0.0.1:4000"


def add_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list, change, rotate and revoke API keys")
    kinds = keys.add_subparsers(metavar="ACTION", required=True)
    create = _admin_parser(kinds, "create", "create a key (its secret is shown once)")
    _key_options(create)
    create.set_defaults(run=lambda a: _call(a, "POST", "/admin/keys", _key_body(a)))
    listing = _admin_parser(kinds, "list", "list keys")
    listing.add_argument("--team")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(run=_list_keys)
    for action, method, help_text in (
        ("show", "GET", "show a key"),
        ("revoke", "DELETE", "revoke a key (on every replica within a second)"),
        ("rotate", "POST", "give a key a new secret; the old one stops working"),
    ):
        cmd = _admin_parser(kinds, action, help_text)
        cmd.add_argument("key_id")
        suffix = "/rotate" if action == "rotate" else ""
        cmd.set_defaults(
            run=lambda a, m=method, s=suffix: _call(a, m, f"/admin/keys/{_seg(a.key_id)}{s}")
        )
    update = _admin_parser(kinds, "update", "change a key's settings")
    update.add_argument("key_id")
    _key_options(update)
    update.set_defaults(
        run=lambda a: _call(a, "PATCH", f"/admin/keys/{_seg(a.key_id)}", _key_body(a))
    )

    teams = sub.add_parser("teams", help="create, list, change and delete teams")
    kinds = teams.add_subparsers(metavar="ACTION", required=True)
    create = _admin_parser(kinds, "create", "create a team")
    create.add_argument("name")
    _team_options(create)
    create.set_defaults(run=lambda a: _call(a, "POST", "/admin/teams", _team_body(a)))
    _admin_parser(kinds, "list", "list teams").set_defaults(
        run=lambda a: _call(a, "GET", "/admin/teams")
    )
    for action, method in (("show", "GET"), ("delete", "DELETE")):
        cmd = _admin_parser(kinds, action, f"{action} a team")
        cmd.add_argument("team")
        cmd.set_defaults(run=lambda a, m=method: _call(a, m, f"/admin/teams/{_seg(a.team)}"))
    update = _admin_parser(kinds, "update", "change a team's settings")
    update.add_argument("team")
    update.add_argument("--name", dest="new_name")
    _team_options(update)
    update.set_defaults(
        run=lambda a: _call(a, "PATCH", f"/admin/teams/{_seg(a.team)}", _team_body(a))
    )

    spend = _admin_parser(sub, "spend", "spend report from the ledger")
    spend.add_argument("--group-by", default="key", help="key, team, model, tag, day, deployment")
    spend.add_argument("--tag", help="with --group-by tag: the tag's name")
    spend.add_argument("--since", help="date (2026-12-01) or ISO time")
    spend.add_argument("--until", help="date or ISO time (exclusive)")
    spend.add_argument("--csv", action="store_true", help="print CSV instead of JSON")
    spend.set_defaults(run=_spend)

    audit = sub.add_parser("audit", help="read and verify the audit log")
    kinds = audit.add_subparsers(metavar="ACTION", required=True)
    listing = _admin_parser(kinds, "list", "list audit entries")
    listing.add_argument("--after", type=int, default=0)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(
        run=lambda a: _call(a, "GET", f"/admin/audit?after={a.after}&limit={a.limit}")
    )
    verify = _admin_parser(kinds, "verify", "check the audit log's hash chain")
    verify.set_defaults(run=_verify)

    config = sub.add_parser("config", help="the served config: versions, reload, rollback")
    kinds = config.add_subparsers(metavar="ACTION", required=True)
    _admin_parser(kinds, "show", "the version served and the kept ones").set_defaults(
        run=lambda a: _call(a, "GET", "/admin/config")
    )
    _admin_parser(kinds, "reload", "load the config file again (as SIGHUP does)").set_defaults(
        run=lambda a: _call(a, "POST", "/admin/config/reload")
    )
    rollback = _admin_parser(kinds, "rollback", "serve a kept version again")
    rollback.add_argument("version", help="a version from `modelway config show`")
    rollback.set_defaults(
        run=lambda a: _call(a, "POST", "/admin/config/rollback", {"version": a.version})
    )

    db = sub.add_parser("db", help="database maintenance")
    kinds = db.add_subparsers(metavar="ACTION", required=True)
    upgrade = kinds.add_parser(
        "upgrade", help="migrate the configured database to the newest schema"
    )
    upgrade.add_argument("--config", help="YAML config (default: SQLite in the state directory)")
    upgrade.set_defaults(run=_db_upgrade)


def _admin_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.add_argument(
        "--url", default=os.environ.get("MODELWAY_URL", DEFAULT_URL), help="the gateway's URL"
    )
    parser.add_argument(
        "--key",
        help="admin key (default: $MODELWAY_ADMIN_KEY, then $MODELWAY_MASTER_KEY)",
    )
    return parser


def _limit_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(f"--{prefix}rpm", type=int, help="requests per minute")
    parser.add_argument(f"--{prefix}tpm", type=int, help="tokens per minute")
    parser.add_argument(f"--{prefix}max-parallel", type=int, help="concurrent requests")
    parser.add_argument(f"--{prefix}budget", help="USD per period (e.g. 25 or 0.50)")
    parser.add_argument(f"--{prefix}budget-period", choices=["day", "week", "month", "total"])
    parser.add_argument(f"--{prefix}budget-mode", choices=["hard", "soft"])


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="comma-separated model names or patterns (gpt-4o*)")
    parser.add_argument("--priority", type=int, help="queue priority, -100 to 100 (higher first)")
    parser.add_argument("--data-class", choices=["public", "confidential"])
    parser.add_argument("--tag", action="append", default=[], help="key=value (repeatable)")


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--team", help="team id or name")
    parser.add_argument("--role", choices=["admin", "user", "viewer"])
    parser.add_argument("--expires", help="ISO time, or a duration: 30d, 12h, 90m")
    _common_options(parser)
    _limit_options(parser)


def _team_options(parser: argparse.ArgumentParser) -> None:
    _common_options(parser)
    parser.add_argument(
        "--queue-weight", type=float, help="the team's share when requests wait (default 1)"
    )
    _limit_options(parser)  # team-wide
    _limit_options(parser, "key-")  # the default of each key of the team


def _limits(a: argparse.Namespace, prefix: str = "") -> tuple[Any, Any]:
    def get(name: str) -> Any:
        return getattr(a, prefix + name)

    limits = {
        k: v
        for k, v in (
            ("rpm", get("rpm")),
            ("tpm", get("tpm")),
            ("max_parallel", get("max_parallel")),
        )
        if v is not None
    }
    budgets = None
    if get("budget") is not None:
        budget: dict[str, Any] = {"limit_usd": get("budget")}
        if get("budget_period"):
            budget["period"] = get("budget_period")
        if get("budget_mode"):
            budget["mode"] = get("budget_mode")
        budgets = [budget]
    return limits or None, budgets


def _common(a: argparse.Namespace, body: dict[str, Any]) -> None:
    if a.models is not None:
        body["models"] = [m.strip() for m in a.models.split(",") if m.strip()]
    if a.data_class is not None:
        body["data_class"] = a.data_class
    if a.priority is not None:
        body["priority"] = a.priority
    if getattr(a, "queue_weight", None) is not None:
        body["queue_weight"] = a.queue_weight
    if a.tag:
        body["tags"] = dict(t.split("=", 1) if "=" in t else (t, "") for t in a.tag)


def _key_body(a: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("name", "team", "role"):
        if getattr(a, name) is not None:
            body[name] = getattr(a, name)
    if a.expires is not None:
        body["expires_at"] = _expiry(a.expires)
    _common(a, body)
    limits, budgets = _limits(a)
    if limits:
        body["limits"] = limits
    if budgets:
        body["budgets"] = budgets
    return body


def _team_body(a: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    name = getattr(a, "name", None) or getattr(a, "new_name", None)
    if name:
        body["name"] = name
    _common(a, body)
    for prefix, limits_field, budgets_field in (
        ("", "limits", "budgets"),
        ("key_", "key_limits", "key_budgets"),
    ):
        limits, budgets = _limits(a, prefix)
        if limits:
            body[limits_field] = limits
        if budgets:
            body[budgets_field] = budgets
    return body


def _expiry(value: str) -> str:
    match = re.fullmatch(r"(\d+)([dhm])", value)
    if match is None:
        return value  # an ISO time; the gateway validates it
    amount, unit = int(match.group(1)), match.group(2)
    delta = {
        "d": timedelta(days=amount),
        "h": timedelta(hours=amount),
        "m": timedelta(minutes=amount),
    }
    return (datetime.now(UTC) + delta[unit]).isoformat()


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _list_keys(a: argparse.Namespace) -> int:
    query = {"include_revoked": "true" if a.all else "false"}
    if a.team:
        query["team"] = a.team
    return _call(a, "GET", "/admin/keys?" + urllib.parse.urlencode(query))


def _spend(a: argparse.Namespace) -> int:
    query = {"group_by": a.group_by}
    for name in ("tag", "since", "until"):
        if getattr(a, name):
            query[name] = getattr(a, name)
    if a.csv:
        query["format"] = "csv"
    return _call(a, "GET", "/admin/spend?" + urllib.parse.urlencode(query), raw=a.csv)


def _verify(a: argparse.Namespace) -> int:
    status, body = _request(a, "GET", "/admin/audit/verify")
    if status != 200:
        return _report_error(status, body)
    result = json.loads(body)
    if result["ok"]:
        print(f"audit log ok: {result['checked']} entries, chain intact")
        return 0
    print(f"audit log TAMPERED: {len(result['problems'])} problem(s)", file=sys.stderr)
    for problem in result["problems"]:
        print(f"  {problem}", file=sys.stderr)
    return 1


def _call(
    a: argparse.Namespace, method: str, path: str, body: Any = None, raw: bool = False
) -> int:
    status, data = _request(a, method, path, body)
    if status >= 400:
        return _report_error(status, data)
    if raw:
        sys.stdout.write(data.decode())
    else:
        print(json.dumps(json.loads(data), indent=2))
    return 0


def _request(a: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    key = a.key or os.environ.get("MODELWAY_ADMIN_KEY") or os.environ.get("MODELWAY_MASTER_KEY")
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(a.url.rstrip("/") + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        return 0, f"cannot reach {a.url}: {exc.reason}".encode()


def _report_error(status: int, body: bytes) -> int:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace")
    print(f"error{f' ({status})' if status else ''}: {message}", file=sys.stderr)
    return 1


def _db_upgrade(a: argparse.Namespace) -> int:
    import asyncio

    from modelway.cli import _load
    from modelway.config import default_config
    from modelway.store.database import async_url, create_engine, upgrade

    config = _load(a.config) if a.config else default_config()
    if config is None:
        return 1
    url = config.database_url.get_secret_value() if config.database_url else None

    async def migrate() -> None:
        engine = create_engine(async_url(url, config.state_path()))
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    print("database is at the newest schema")
    return 0
