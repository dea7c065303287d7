"""`modelway serve --workers N`: processes that share limits through Redis, and a refusal
where sharing would need Redis and there is none."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.integration.access_gateway import MASTER, AdminClient, access_config
from tests.integration.conftest import Mock
from tests.integration.test_metrics import scrape, value
from tests.servers import free_port, modelway_command, start
from tests.services import redis_url


def worker_pids(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_two_workers_share_a_rate_limit_through_redis(upstream: Mock, tmp_path: Path) -> None:
    config = access_config(upstream.url, state_dir=str(tmp_path / "state"), redis_url=redis_url())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    args = ["serve", "--config", str(path), "--port", str(port), "--workers", "2"]
    gateway = start(args, tmp_path / "gateway.log", port, "/health/live")
    try:
        assert len(worker_pids(gateway.popen.pid)) == 2
        key = AdminClient(gateway.url).key(limits={"rpm": 5})["key"]
        time.sleep(1.5)  # both workers have the new key
        body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
        statuses = [
            # A new connection each time: the kernel spreads them over both workers.
            httpx.post(
                gateway.url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
            ).status_code
            for _ in range(12)
        ]
        assert statuses.count(200) == 5 and statuses.count(429) == 7
        # One scrape sees the requests of both workers.
        samples = scrape(gateway.url)
        assert value(samples, "modelway_rate_limit_rejections_total", limit="rpm") == 7
        assert value(samples, "modelway_requests_total", model="mock-gpt") == 12
        gateway.popen.send_signal(signal.SIGTERM)
        assert gateway.popen.wait(timeout=60) == 0
    finally:
        gateway.stop()


def test_workers_without_redis_refuse_to_multiply_limits(upstream: Mock, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(access_config(upstream.url, state_dir=str(tmp_path))))
    done = subprocess.run(
        modelway_command("serve", "--config", str(path), "--port", "0", "--workers", "2"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to start 2 workers without redis_url" in done.stderr
    assert MASTER not in done.stderr
