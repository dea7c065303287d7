"""Starting real modelway processes (gateway, mock upstream) on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    url: str
    port: int
    log_path: Path
    popen: subprocess.Popen[bytes]

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines the process wrote so far (non-JSON lines are skipped)."""
        lines = []
        for raw in self.log_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                lines.append(orjson.loads(raw))
        return lines

    def request_log(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The log line of one request, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if line.get("event") == "request" and line.get("request_id") == request_id:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line for request {request_id}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def modelway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelway", *args]


def start(
    args: list[str],
    log_path: Path,
    port: int,
    health: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> Process:
    log = log_path.open("wb")
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
    # Each process keeps its SQLite file and spool beside its log unless a test says otherwise.
    env.setdefault("MODELWAY_STATE_DIR", str(log_path.parent / f"state-{port}"))
    popen = subprocess.Popen(modelway_command(*args), stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            raise RuntimeError(f"{args[0]} exited with {popen.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(url + health, timeout=1).status_code < 500:
                return Process(url=url, port=port, log_path=log_path, popen=popen)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            popen.kill()
            raise RuntimeError(f"{args[0]} did not start: {log_path.read_text()}")
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    args: list[str], log_path: Path, port: int, health: str, env: dict[str, str] | None = None
) -> Iterator[Process]:
    proc = start(args, log_path, port, health, env=env)
    try:
        yield proc
    finally:
        proc.stop()
