"""Changing and stopping a running gateway without losing requests: config reload (admin
API, SIGHUP, file change), refusal of an invalid config, rollback, and SIGTERM while
streams are open."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.access_gateway import MASTER, AdminClient, start_gateway
from tests.integration.conftest import Mock
from tests.servers import Process, modelway_command


def ops_config(mock: Mock, state: Path, answer: str, **server: Any) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "server": {"watch_config_seconds": 0, **server},
        "auth": {"master_key": MASTER},
        "models": [
            {
                "name": "g",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "upstream-gpt",
                        "base_url": f"{mock.url}/v1",
                        "headers": {"x-mock-content": answer},
                    }
                ],
            }
        ],
    }


def write(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def answer(gateway: Process, client: httpx.Client | None = None) -> str:
    body = {"model": "g", "messages": [{"role": "user", "content": "who are you?"}]}
    headers = {"authorization": f"Bearer {MASTER}"}
    poster = client or httpx
    response = poster.post(
        gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def wait_for(gateway: Process, expected: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while answer(gateway) != expected:
        assert time.monotonic() < deadline, f"still not answering {expected!r}"
        time.sleep(0.1)


def test_a_reload_under_load_loses_no_request_and_takes_effect(
    upstream: Mock, tmp_path: Path
) -> None:
    start_config = ops_config(upstream, tmp_path / "state", "from-a")
    gateway = start_gateway(tmp_path, start_config)
    admin = AdminClient(gateway.url)
    try:
        before = admin.ok("GET", "/admin/config")
        stop = threading.Event()
        seen: list[tuple[float, str]] = []
        failures: list[str] = []

        def load() -> None:
            with httpx.Client() as client:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        seen.append((started, answer(gateway, client)))
                    except (AssertionError, httpx.HTTPError) as exc:
                        failures.append(repr(exc))

        # A load test streams through the reload too (its own client, its own report).
        report = tmp_path / "loadtest.json"
        loadtest = subprocess.Popen(
            modelway_command(
                "loadtest", gateway.url, "--model", "g", "--concurrency", "4",
                "--duration", "3", "--stream", "--max-tokens", "16",
                "--api-key", MASTER, "--json", str(report), "--no-progress",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        write(tmp_path, ops_config(upstream, tmp_path / "state", "from-b"))
        reloaded = admin.ok("POST", "/admin/config/reload")
        swapped_at = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for worker in workers:
            worker.join()
        assert loadtest.wait(timeout=60) == 0
        figures = json.loads(report.read_text())
        assert figures["requests"] > 0 and figures["failed"] == 0

        assert failures == []
        assert {text for t, text in seen if t < swapped_at - 0.5} == {"from-a"}
        assert {text for t, text in seen if t > swapped_at} == {"from-b"}
        assert reloaded["changed"] and reloaded["version"] != before["version"]
        after = admin.ok("GET", "/admin/config")
        assert after["version"] == reloaded["version"]
        assert [v["version"] for v in after["history"]][-2:] == [
            before["version"],
            reloaded["version"],
        ]
        # Request log lines name the version that served them.
        versions = {line.get("config_version") for line in gateway.log_lines()}
        assert {before["version"], reloaded["version"]} <= versions
        metrics = httpx.get(gateway.url + "/metrics").text
        assert f'modelway_config_info{{version="{reloaded["version"]}"}} 1.0' in metrics
        audit = admin.ok("GET", "/admin/audit")["data"]
        assert any(entry["action"] == "config.reload" for entry in audit)

        # Roll back with the CLI: the old version serves again and is back in the file.
        done = subprocess.run(
            modelway_command("config", "rollback", before["version"], "--url", gateway.url),
            env={"MODELWAY_ADMIN_KEY": MASTER, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert answer(gateway) == "from-a"
        assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == start_config
    finally:
        gateway.stop()


def test_an_invalid_config_is_refused_and_the_old_one_keeps_serving(
    upstream: Mock, tmp_path: Path
) -> None:
    gateway = start_gateway(tmp_path, ops_config(upstream, tmp_path / "state", "steady"))
    admin = AdminClient(gateway.url)
    try:
        version = admin.ok("GET", "/admin/config")["version"]
        broken = ops_config(upstream, tmp_path / "state", "never")
        broken["models"][0]["deployments"][0]["surprise"] = True
        broken["models"].append({"name": "g", "deployments": []})
        write(tmp_path, broken)
        refused = admin.http.post("/admin/config/reload")
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "invalid_config"
        assert "surprise: unknown field" in error["message"]
        assert answer(gateway) == "steady"
        assert admin.ok("GET", "/admin/config")["version"] == version
        gateway.popen.send_signal(signal.SIGHUP)  # the same file: refused again, still up
        time.sleep(0.5)
        assert answer(gateway) == "steady" and gateway.popen.poll() is None
    finally:
        gateway.stop()


def test_sighup_and_a_changed_file_reload(upstream: Mock, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, ops_config(upstream, tmp_path / "state", "one"))
    watched = tmp_path / "watched"
    watching = start_gateway(
        watched, ops_config(upstream, watched / "state", "one", watch_config_seconds=0.2)
    )
    try:
        write(tmp_path, ops_config(upstream, tmp_path / "state", "two"))
        gateway.popen.send_signal(signal.SIGHUP)
        wait_for(gateway, "two")
        write(watched, ops_config(upstream, watched / "state", "two", watch_config_seconds=0.2))
        wait_for(watching, "two")
    finally:
        gateway.stop()
        watching.stop()


def test_sigterm_lets_twenty_open_streams_finish(upstream: Mock, tmp_path: Path) -> None:
    config = ops_config(upstream, tmp_path / "state", "unused", shutdown_grace_seconds=30)
    config["models"][0]["deployments"][0]["headers"] = {
        "x-mock-tokens": "40",
        "x-mock-tokens-per-second": "20",  # two seconds per stream
    }
    gateway = start_gateway(tmp_path, config)
    started = threading.Barrier(21)
    results: list[bytes] = []

    def stream() -> None:
        body = {
            "model": "g",
            "stream": True,
            "messages": [{"role": "user", "content": "take your time"}],
        }
        headers = {"authorization": f"Bearer {MASTER}"}
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as response:
            chunks = response.iter_bytes()
            first = next(chunks)
            started.wait()
            results.append(first + b"".join(chunks))

    threads = [threading.Thread(target=stream) for _ in range(20)]
    try:
        for thread in threads:
            thread.start()
        started.wait(timeout=30)
        gateway.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.HTTPError):  # no new connections while draining
            httpx.get(gateway.url + "/health/ready", timeout=2).raise_for_status()
        for thread in threads:
            thread.join(timeout=60)
        assert gateway.popen.wait(timeout=60) == 0
    finally:
        gateway.stop()
    assert len(results) == 20
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in results)
    log = gateway.log_path.read_text()
    assert "Traceback" not in log and '"signal":"SIGTERM"' in log


def test_in_memory_limits_survive_a_reload(upstream: Mock, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, ops_config(upstream, tmp_path / "state", "before"))
    admin = AdminClient(gateway.url)
    try:
        key = admin.key(limits={"rpm": 2})["key"]
        time.sleep(0.6)
        body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {key}"}
        url = gateway.url + "/v1/chat/completions"
        assert [httpx.post(url, json=body, headers=headers).status_code for _ in range(2)] == [
            200,
            200,
        ]
        write(tmp_path, ops_config(upstream, tmp_path / "state", "after"))
        admin.ok("POST", "/admin/config/reload")
        time.sleep(0.5)  # the old runtime is retired (nothing was in flight)
        refused = httpx.post(url, json=body, headers=headers)
        assert refused.status_code == 429  # the minute's window came along
    finally:
        gateway.stop()
