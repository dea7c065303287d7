"""Several gateway processes on one port: ``modelway serve --workers N``.

The parent binds the socket once and starts N worker processes that accept on it (the
kernel spreads connections), forwards SIGTERM/SIGINT/SIGHUP to them, restarts a worker
that dies, and exits when they all have. Workers share limits, budgets and the cache only
through Redis: a config whose state would otherwise be multiplied by N is refused.
Metrics of all workers are merged on every scrape (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from modelway.config import Config

if TYPE_CHECKING:
    from modelway.api.reloader import ReloadRules


def sharing_problems(config: Config) -> list[str]:
    """What several processes without Redis would each keep for themselves."""
    if config.redis_url is not None:
        return []
    found = []
    if config.auth.master_key is not None:
        found.append("keys and teams may carry rate limits and budgets (auth is on)")
    if config.budgets.global_:
        found.append("global budgets")
    if config.cache is not None:
        found.append("the response cache")
    for group, dep_id, dep in config.deployment_ids():
        if any(getattr(dep, name, None) for name in ("rpm", "tpm", "max_parallel")):
            found.append(f"the limits of deployment {dep_id} (model group {group.name})")
    return found


def run_workers(
    config: Config, host: str, port: int, config_path: str | None, rules: ReloadRules
) -> int:
    n = rules.workers
    problems = sharing_problems(config)
    if problems:
        print(
            f"refusing to start {n} workers without redis_url: each would count on its own, "
            "multiplying " + "; ".join(problems) + ". Set redis_url, or run one worker.",
            file=sys.stderr,
        )
        return 2
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir(config))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    sock.set_inheritable(True)
    return _Supervisor(sock, host, port, config_path, rules).run()


def _metrics_dir(config: Config) -> Path:
    """A fresh directory for this run's metric files (a previous run's would be summed)."""
    wanted = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(wanted) if wanted else config.state_path() / "metrics"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


class _Supervisor:
    def __init__(
        self,
        sock: socket.socket,
        host: str,
        port: int,
        config_path: str | None,
        rules: ReloadRules,
    ) -> None:
        self._sock = sock
        self._args = (host, port, config_path, rules)
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess] = []
        self._started: list[float] = []
        self._n = rules.workers
        self._stopping = False
        self._failures = 0  # quick deaths in a row: restarts back off
        self._reported: set[int] = set()  # slots whose worker died and was already reported

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._forward)
        for _ in range(self._n):
            if self._stopping:
                break
            self._workers.append(self._start())
            self._started.append(time.monotonic())
        while not (self._stopping and all(not w.is_alive() for w in self._workers)):
            time.sleep(0.2)
            for i, worker in enumerate(self._workers):
                if worker.is_alive() or self._stopping:
                    continue
                if i in self._reported:
                    continue
                self._reported.add(i)
                lived = time.monotonic() - self._started[i]
                self._failures = self._failures + 1 if lived < 10 else 0
                delay = min(30.0, 0.5 * 2**self._failures) if self._failures else 0.0
                print(
                    f"worker {worker.pid} exited with {worker.exitcode}: starting another"
                    + (f" in {delay:.0f} s" if delay else ""),
                    file=sys.stderr,
                )
                self._sleep(delay)
                if not self._stopping:
                    self._workers[i] = self._start()
                    self._started[i] = time.monotonic()
                    self._reported.discard(i)
        # The stop's outcome: workers that died earlier were reported (and replaced).
        stopped = [w for i, w in enumerate(self._workers) if i not in self._reported]
        return 0 if all(w.exitcode == 0 for w in stopped) else 1

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(0.1)

    def _start(self) -> BaseProcess:
        worker = self._context.Process(target=_worker, args=(self._sock, *self._args))
        worker.start()
        return worker

    def _forward(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGHUP:
            self._stopping = True
        for worker in self._workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signum)


def _worker(
    sock: socket.socket, host: str, port: int, config_path: str | None, rules: ReloadRules
) -> None:
    # Its own process group: a terminal's Ctrl-C reaches the parent only, which forwards
    # it once (a second SIGINT would make uvicorn stop without draining). SIGHUP waits
    # for the reload handler that serving installs.
    os.setpgrp()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from modelway.api.serve import run
    from modelway.config import default_config, load_config

    config = load_config(config_path) if config_path else default_config()
    sys.exit(run(config, host, port, config_path, sock=sock, rules=rules))
