"""`modelway doctor`: each check passes against working things, fails on broken ones, and
changes nothing (an unmigrated database stays unmigrated)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.integration.access_gateway import start_gateway
from tests.integration.conftest import Mock
from tests.servers import free_port, modelway_command
from tests.services import postgres_url, redis_url, run_sql, scratch_database


def doctor(
    tmp_path: Path, config: dict[str, Any] | None, *args: str
) -> subprocess.CompletedProcess[str]:
    extra: list[str] = []
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        extra = ["--config", str(path)]
    env = {**os.environ, "MODELWAY_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        modelway_command("doctor", *extra, "--timeout", "5", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def rows(output: str) -> dict[str, list[tuple[str, str]]]:
    """The table as check -> [(status, detail)], read by the header's column offsets."""
    lines = output.splitlines()
    check_at, detail_at = lines[0].index("CHECK"), lines[0].index("DETAIL")
    found: dict[str, list[tuple[str, str]]] = {}
    for line in lines[1:]:
        if line[:4] in ("PASS", "WARN", "FAIL"):
            check = line[check_at:detail_at].strip()
            found.setdefault(check, []).append((line[:4], line[detail_at:]))
    return found


def good_config(mock_url: str, **top: Any) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "gpt",
                "deployments": [
                    {
                        "id": "mock-openai",
                        "provider": "openai",
                        "model": "doctor-gpt",
                        "base_url": f"{mock_url}/v1",
                    }
                ],
            },
            {
                "name": "claude",
                "deployments": [
                    {
                        "id": "mock-anthropic",
                        "provider": "anthropic",
                        "model": "doctor-claude",
                        "base_url": mock_url,
                        "api_key": "sk-ant-test-secret",
                    }
                ],
            },
        ],
        **top,
    }


def test_good_config_passes(tmp_path: Path, upstream: Mock) -> None:
    before = upstream.stats()["by_model"]
    result = doctor(tmp_path, good_config(upstream.url))
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert table["deployment mock-openai"][0][0] == "PASS"
    assert table["deployment mock-anthropic"][0][0] == "PASS"
    assert table["auth"][0][0] == "WARN"  # no master key, loopback only
    assert table["database"][0][0] == "WARN"  # no SQLite file yet: serve would create it
    assert table["redis"][0][0] == "PASS"
    after = upstream.stats()["by_model"]
    # One real 1-token chat each.
    assert after.get("doctor-gpt", 0) - before.get("doctor-gpt", 0) == 1
    assert after.get("doctor-claude", 0) - before.get("doctor-claude", 0) == 1
    last = [
        r
        for r in upstream.stats()["last_requests"]
        if r["body"] and r["body"].get("model") == "doctor-gpt"
    ]
    assert last[-1]["body"]["max_tokens"] == 1


def test_a_deployment_on_a_closed_port_fails(tmp_path: Path, upstream: Mock) -> None:
    config = good_config(upstream.url)
    dead = {
        "id": "dead-one",
        "provider": "openai",
        "model": "x",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "connect_timeout_seconds": 1,
    }
    config["models"][0]["deployments"].append(dead)
    result = doctor(tmp_path, config)
    assert result.returncode == 1
    table = rows(result.stdout)
    assert table["deployment dead-one"][0][0] == "FAIL"
    assert table["deployment mock-openai"][0][0] == "PASS"
    assert "1 failed" in result.stdout


def test_migrated_sqlite_passes_and_an_empty_one_fails_untouched(
    tmp_path: Path, upstream: Mock
) -> None:
    migrated = tmp_path / "migrated.db"
    config = good_config(upstream.url, database_url=f"sqlite:///{migrated}")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    upgrade = subprocess.run(
        modelway_command("db", "upgrade", "--config", str(tmp_path / "c.yaml")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    result = doctor(tmp_path, config)
    assert result.returncode == 0, result.stdout
    assert rows(result.stdout)["database migrations"][0][0] == "PASS"

    empty = tmp_path / "empty.db"
    empty.touch()
    result = doctor(tmp_path, good_config(upstream.url, database_url=f"sqlite:///{empty}"))
    assert result.returncode == 1
    status, detail = rows(result.stdout)["database migrations"][0]
    assert status == "FAIL" and "never migrated" in detail
    assert empty.stat().st_size == 0  # not migrated, not even opened for writing
    assert not list(tmp_path.glob("empty.db-*"))


def test_unmigrated_postgres_fails_and_stays_unmigrated(tmp_path: Path, upstream: Mock) -> None:
    postgres_url()  # skips without a server
    with scratch_database() as url:
        result = doctor(tmp_path, good_config(upstream.url, database_url=url))
        assert result.returncode == 1
        table = rows(result.stdout)
        assert table["database"][0][0] == "PASS"
        assert table["database migrations"][0][0] == "FAIL"
        assert table["database clock"][0][0] == "PASS"
        run_sql(
            url,
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = "
            "'public') THEN RAISE EXCEPTION 'doctor created tables'; END IF; END $$",
        )


def test_unreachable_redis_fails(tmp_path: Path, upstream: Mock) -> None:
    config = good_config(upstream.url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    result = doctor(tmp_path, config)
    assert result.returncode == 1
    assert rows(result.stdout)["redis"][0][0] == "FAIL"


def test_reachable_redis_passes_with_its_clock(tmp_path: Path, upstream: Mock) -> None:
    result = doctor(tmp_path, good_config(upstream.url, redis_url=redis_url()))
    assert result.returncode == 0, result.stdout
    table = rows(result.stdout)
    assert table["redis"][0][0] == "PASS"
    assert table["redis clock"][0][0] == "PASS"


def test_invalid_config_lists_its_problems(tmp_path: Path) -> None:
    result = doctor(tmp_path, {"models": [{"name": "a", "deployments": [{"provider": "nope"}]}]})
    assert result.returncode == 1
    assert rows(result.stdout)["config"][0][0] == "FAIL"
    assert "provider must be one of" in result.stdout


def test_public_host_without_master_key_fails(tmp_path: Path, upstream: Mock) -> None:
    config = good_config(upstream.url, server={"host": "0.0.0.0"})
    result = doctor(tmp_path, config)
    assert result.returncode == 1
    assert rows(result.stdout)["auth"][0][0] == "FAIL"


def test_a_running_gateway_is_ready_and_serves_metrics(tmp_path: Path, upstream: Mock) -> None:
    config = good_config(upstream.url)
    gateway = start_gateway(tmp_path / "gw", config)
    try:
        result = doctor(tmp_path, config, "--url", gateway.url)
    finally:
        gateway.stop()
    assert result.returncode == 0, result.stdout
    table = rows(result.stdout)
    assert table["gateway ready"][0][0] == "PASS"
    assert table["gateway metrics"][0][0] == "PASS"
    dead = doctor(tmp_path, None, "--url", gateway.url)  # stopped now
    assert dead.returncode == 1
    assert rows(dead.stdout)["gateway"][0][0] == "FAIL"
