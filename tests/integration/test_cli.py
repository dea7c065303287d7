"""The command line: check, and serve's refusal to listen openly without authentication."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import httpx

from tests.servers import free_port, modelway_command, running


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**(env or os.environ)}
    env.setdefault("MODELWAY_STATE_DIR", tempfile.mkdtemp(prefix="modelway-cli-"))
    return subprocess.run(
        modelway_command(*args), capture_output=True, text=True, timeout=60, env=env
    )


def test_check_accepts_a_valid_config(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        "models:\n  - name: a\n    deployments:\n"
        "      - {provider: openai, model: m, base_url: 'http://127.0.0.1:9'}\n"
        "      - {provider: local}\n"
    )
    result = run("check", str(config))
    assert result.returncode == 0
    assert (
        result.stdout.strip()
        == f"{config}: ok, 1 model group(s), 2 deployment(s) (local: 1, openai: 1)"
    )


def test_check_lists_every_problem_with_its_path_and_no_secret(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "models:\n"
        "  - name: a\n    deployments:\n"
        "      - {provider: openai, model: m, api_key: sk-live-DO-NOT-PRINT}\n"
        "  - name: b\n    deployments:\n"
        "      - {provider: openai, model: m, api_key: sk-live-DO-NOT-PRINT, base_url: 'nope'}\n"
        "      - {provider: anthropic, model: c, max_tokens: 5}\n"
    )
    result = run("check", str(config))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{config}: invalid config"
    assert "  models[1].deployments[0].base_url: must be an http:// or https:// URL" in lines
    assert "  models[1].deployments[1].max_tokens: unknown field" in lines
    assert "DO-NOT-PRINT" not in result.stdout + result.stderr


def test_serve_refuses_a_public_address_without_auth() -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_serve_on_a_public_address_with_the_explicit_flag(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  - name: a\n    deployments:\n"
        "      - {provider: openai, model: m, base_url: 'http://127.0.0.1:9'}\n"
    )
    port = free_port()
    args = [
        "serve",
        "--config",
        str(config),
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--insecure-no-auth",
    ]
    with running(args, tmp_path / "log", port, "/health/live") as proc:
        assert httpx.get(proc.url + "/v1/models").json()["data"][0]["id"] == "a"


def test_serve_fails_at_start_up_on_a_corrupt_model(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"models:\n  - name: a\n    deployments:\n      - {{provider: local, path: '{bad}'}}\n"
    )
    result = run("serve", "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 1
    assert str(bad) in result.stdout + result.stderr


def test_serve_reports_an_unusable_database_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "database_url: postgresql://modelway:hunter2@127.0.0.1:1/nothing\n"
        "models: [{name: a, deployments: [{provider: openai, model: m}]}]\n"
    )
    result = run("serve", "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "cannot use the database postgresql+asyncpg://modelway:***@127.0.0.1:1/nothing" in output
    assert "Traceback" not in output and "hunter2" not in output
