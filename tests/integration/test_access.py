"""Keys, teams, roles and the admin API, against a real gateway on SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.access_gateway import (
    MASTER,
    AdminClient,
    access_config,
    chat,
    start_gateway,
)
from tests.integration.conftest import Mock
from tests.servers import Process, modelway_command
from tests.services import run_sql, scratch_database


class Backend:
    """Where the records live: a SQLite file, or a scratch PostgreSQL database."""

    def __init__(self, kind: str, folder: Path, url: str | None) -> None:
        self.kind, self.folder, self.url = kind, folder, url

    def settings(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"state_dir": str(self.folder / "state")}
        if self.url is not None:
            extra["database_url"] = self.url
        return extra

    def execute(self, statement: str) -> None:
        if self.url is not None:
            run_sql(self.url, statement)
            return
        db = sqlite3.connect(self.folder / "state" / "modelway.db")
        try:
            db.execute(statement)
            db.commit()
        finally:
            db.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    folder = tmp_path_factory.mktemp(f"access-{request.param}")
    if request.param == "sqlite":
        yield Backend("sqlite", folder, None)
        return
    with scratch_database() as url:
        yield Backend("postgresql", folder, url)


@pytest.fixture(scope="module")
def gateway(upstream: Mock, backend: Backend) -> Iterator[Process]:
    config = access_config(upstream.url, **backend.settings())
    proc = start_gateway(backend.folder, config)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def admin(gateway: Process) -> AdminClient:
    return AdminClient(gateway.url)


def test_without_a_key_or_with_a_wrong_one_is_401(gateway: Process) -> None:
    missing = chat(gateway.url, None)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = chat(gateway.url, "mw-not-a-real-key")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert "mw-not-a-real-key" not in wrong.text


def test_key_lifecycle_with_the_openai_sdk(gateway: Process, admin: AdminClient) -> None:
    team = admin.team("lifecycle", tags={"cost_center": "cc-1"})
    created = admin.key(name="app", team="lifecycle", models=["mock-gpt*"])
    secret = created["key"]
    assert secret.startswith("mw-") and len(secret) > 40
    assert created["prefix"] == secret[:9] + "..."
    assert created["team_id"] == team["id"]

    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    answer = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content

    # The secret is shown once: reading the key back never returns it, nor its hash.
    shown = admin.ok("GET", f"/admin/keys/{created['id']}")
    assert "key" not in shown and secret not in str(shown) and "hash" not in str(shown)
    listed = admin.ok("GET", "/admin/keys", params={"team": "lifecycle"})["data"]
    assert [k["id"] for k in listed] == [created["id"]]

    # A model outside the key's patterns is 403.
    other = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        other.chat.completions.create(
            model="long-gpt", messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.code == "model_not_allowed"

    # Anthropic-style clients send the key as x-api-key.
    via_header = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "mock-gpt-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": secret},
    )
    assert via_header.status_code == 200

    # Rotation: a new secret, the old one stops at once on this replica.
    rotated = admin.ok("POST", f"/admin/keys/{created['id']}/rotate")
    assert rotated["id"] == created["id"] and rotated["key"] != secret
    assert chat(gateway.url, secret).status_code == 401
    assert chat(gateway.url, rotated["key"]).status_code == 200

    # Revocation.
    admin.ok("DELETE", f"/admin/keys/{created['id']}")
    assert chat(gateway.url, rotated["key"]).status_code == 401
    assert admin.ok("GET", "/admin/keys", params={"team": "lifecycle"})["data"] == []


def test_an_expired_key_is_401(gateway: Process, admin: AdminClient) -> None:
    key = admin.key(expires_at="2020-01-01T00:00:00Z")
    refused = chat(gateway.url, key["key"])
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "expired_api_key"


def test_team_defaults_reach_its_keys_and_a_key_overrides_them(
    gateway: Process, admin: AdminClient
) -> None:
    admin.team("defaults", models=["mock-gpt-mini"])
    inherits = admin.key(team="defaults")["key"]
    overrides = admin.key(team="defaults", models=["mock-gpt"])["key"]
    assert chat(gateway.url, inherits, "mock-gpt-mini").status_code == 200
    assert chat(gateway.url, inherits, "mock-gpt").status_code == 403
    assert chat(gateway.url, overrides, "mock-gpt").status_code == 200
    assert chat(gateway.url, overrides, "mock-gpt-mini").status_code == 403


def test_roles_on_the_admin_api(gateway: Process, admin: AdminClient) -> None:
    viewer = AdminClient(gateway.url, admin.key(role="viewer")["key"])
    user = AdminClient(gateway.url, admin.key(role="user")["key"])
    other_admin = AdminClient(gateway.url, admin.key(role="admin")["key"])
    assert viewer.http.get("/admin/keys").status_code == 200
    assert viewer.http.get("/admin/spend").status_code == 200
    refused = viewer.http.post("/admin/keys", json={})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
    assert user.http.get("/admin/keys").status_code == 403
    assert other_admin.http.post("/admin/teams", json={"name": "by-admin-key"}).status_code == 201
    anonymous = httpx.get(gateway.url + "/admin/keys")
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/keys", {"role": "owner"}, "role"),
        ("/admin/keys", {"limits": {"rpm": 0}}, "limits.rpm"),
        ("/admin/keys", {"budgets": [{"limit_usd": -1}]}, "budgets[0].limit_usd"),
        ("/admin/keys", {"expires_at": "next tuesday"}, "expires_at"),
        ("/admin/keys", {"colour": "blue"}, "colour"),
        ("/admin/teams", {}, "name"),
        ("/admin/teams", {"name": "t", "data_class": "secret"}, "data_class"),
    ],
)
def test_malformed_admin_requests_name_the_field(
    admin: AdminClient, path: str, body: dict[str, Any], param: str
) -> None:
    response = admin.http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_team_and_key_are_404_and_duplicates_409(admin: AdminClient) -> None:
    assert admin.http.post("/admin/keys", json={"team": "nope"}).status_code == 404
    assert admin.http.get("/admin/keys/key_missing").status_code == 404
    admin.team("twice")
    again = admin.http.post("/admin/teams", json={"name": "twice"})
    assert again.status_code == 409


def test_injection_in_fields_is_stored_as_plain_text(admin: AdminClient) -> None:
    nasty = "x'); DROP TABLE api_keys; --\r\nX-Injected: yes"
    team = admin.team(nasty, tags={"note": "' OR 1=1 --"})
    key = admin.key(team=team["id"], name=nasty)
    assert admin.ok("GET", f"/admin/keys/{key['id']}")["name"] == nasty
    assert admin.ok("GET", f"/admin/teams/{team['id']}")["tags"] == {"note": "' OR 1=1 --"}
    assert len(admin.ok("GET", "/admin/keys")["data"]) >= 1


def test_a_team_with_live_keys_cannot_be_deleted(admin: AdminClient) -> None:
    team = admin.team("short-lived")
    key = admin.key(team="short-lived")
    assert admin.http.delete(f"/admin/teams/{team['id']}").status_code == 409
    admin.ok("DELETE", f"/admin/keys/{key['id']}")
    admin.ok("DELETE", f"/admin/teams/{team['id']}")
    assert admin.http.get(f"/admin/teams/{team['id']}").status_code == 404
    admin.team("short-lived")  # the name is free again


def test_admin_actions_are_audited_without_secrets(admin: AdminClient) -> None:
    key = admin.key(name="audited")
    admin.ok("PATCH", f"/admin/keys/{key['id']}", json={"name": "renamed"})
    entries = admin.ok("GET", "/admin/audit", params={"target": key["id"]})["data"]
    assert [e["action"] for e in entries] == ["key.create", "key.update"]
    assert entries[1]["before"]["name"] == "audited" and entries[1]["after"]["name"] == "renamed"
    assert all(e["actor"] == "master" for e in entries)
    everything = str(admin.ok("GET", "/admin/audit", params={"limit": 1000}))
    assert key["key"] not in everything and "key_hash" not in everything


def _cli(gateway: Process, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        modelway_command(*args, "--url", gateway.url, "--key", MASTER),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_manages_keys_through_the_admin_api(gateway: Process) -> None:
    made = _cli(gateway, "teams", "create", "cli-team", "--key-rpm", "100", "--tag", "env=dev")
    assert made.returncode == 0, made.stderr
    created = _cli(
        gateway, "keys", "create", "--team", "cli-team", "--name", "cli", "--expires", "30d"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert chat(gateway.url, key["key"]).status_code == 200
    listed = json.loads(_cli(gateway, "keys", "list", "--team", "cli-team").stdout)
    assert [k["id"] for k in listed["data"]] == [key["id"]]
    assert _cli(gateway, "keys", "revoke", key["id"]).returncode == 0
    assert chat(gateway.url, key["key"]).status_code == 401
    missing = _cli(gateway, "keys", "show", "key_nope")
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_audit_verify_catches_a_changed_and_a_deleted_row(
    gateway: Process, admin: AdminClient, backend: Backend
) -> None:
    for i in range(3):
        admin.key(name=f"chain-{i}")
    assert _cli(gateway, "audit", "verify").returncode == 0
    original = admin.ok("GET", "/admin/audit", params={"after": 1, "limit": 1})["data"][0]
    backend.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
    changed = _cli(gateway, "audit", "verify")
    assert changed.returncode == 1 and "row 2: content changed" in changed.stderr
    backend.execute(f"UPDATE audit_log SET actor = '{original['actor']}' WHERE seq = 2")
    assert _cli(gateway, "audit", "verify").returncode == 0
    backend.execute("DELETE FROM audit_log WHERE seq = 3")
    deleted = _cli(gateway, "audit", "verify")
    assert deleted.returncode == 1 and "row 3 missing" in deleted.stderr


def test_revocation_reaches_another_replica_within_a_second(
    upstream: Mock, backend: Backend, tmp_path: Path
) -> None:
    config = access_config(upstream.url, **backend.settings())
    first = start_gateway(tmp_path / "a", config)
    second = start_gateway(tmp_path / "b", config)
    try:
        key = AdminClient(first.url).key(name="replicated")
        deadline = time.monotonic() + 5
        while chat(second.url, key["key"]).status_code != 200:  # the create reaches it too
            assert time.monotonic() < deadline
            time.sleep(0.05)
        AdminClient(first.url).ok("DELETE", f"/admin/keys/{key['id']}")
        revoked_at = time.monotonic()
        while chat(second.url, key["key"]).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "the other replica still accepts the key"
            time.sleep(0.02)
    finally:
        first.stop()
        second.stop()


def test_a_confidential_key_only_reaches_private_deployments(
    gateway: Process, admin: AdminClient
) -> None:
    key = admin.key(data_class="confidential", name="secret-project")
    refused = chat(gateway.url, key["key"])  # mock-gpt has no deployment tagged private
    assert refused.status_code == 503
    assert "confidential" in refused.json()["error"]["message"]
    line = gateway.request_log(refused.headers["x-request-id"])
    assert line["key_id"] == key["id"] and line["status"] == 503


def test_db_upgrade_migrates_a_new_database(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "models: [{name: m, deployments: [{provider: openai, model: m}]}]\n"
    )
    done = subprocess.run(
        modelway_command("db", "upgrade", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(tmp_path / "state" / "modelway.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert {"teams", "api_keys", "audit_log", "ledger", "alembic_version"} <= tables
