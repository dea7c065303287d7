"""Starting and stopping the processes a benchmark measures, and reading their figures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cores() -> tuple[set[int], set[int]]:
    """(the gateway's cores, the cores of everything else): apart when there are two."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[0]}, set(available[1:])


def start(args: list[str], port: int, cpus: set[int], log: Path) -> subprocess.Popen[bytes]:
    """Run ``python -m modelway ARGS`` on ``cpus`` and wait until it listens on ``port``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelway", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    os.sched_setaffinity(proc.pid, cpus)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
