"""Config hot reload: validate the new config, build and start a new runtime, swap it in
at once, and close the old one when its in-flight requests (streams included) are done.

Triggered by SIGHUP, ``POST /admin/config/reload`` or a change of the file. A config that
does not validate, or whose runtime cannot start, is refused with its problems and the
old runtime keeps serving. ``server.host`` and ``server.port`` take a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette

from modelway.api.workers import sharing_problems
from modelway.app import Runtime, build_runtime
from modelway.config import Config, ConfigError, parse_config
from modelway.config_versions import ConfigVersion, ConfigVersions, config_hash
from modelway.observability.logging import get_logger
from modelway.protocol.errors import GatewayError

_log = get_logger("modelway.reload")


class ReloadRefused(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ReloadResult:
    version: ConfigVersion
    changed: bool
    restart_needed: list[str]
    persisted: bool = True  # a rollback: written back to the config file


@dataclass(frozen=True)
class ReloadRules:
    """What the process was started under, which a new config must still satisfy."""

    require_auth: bool = False  # listening beyond loopback without --insecure-no-auth
    workers: int = 1


class Reloader:
    def __init__(
        self,
        app: Starlette,
        path: Path | None,
        text: str | None,
        versions: ConfigVersions,
        grace_seconds: float,
        rules: ReloadRules | None = None,
    ) -> None:
        self._app = app
        self._rules = rules or ReloadRules()
        self._path = path
        self._text = text
        self._versions = versions
        self._grace = grace_seconds
        self._lock = asyncio.Lock()
        self._draining: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.current = _record(versions, text, "start") if text is not None else None

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self._app.state.runtime
        return runtime

    def history(self) -> list[ConfigVersion]:
        return self._versions.history()

    async def reload(self, source: str = "reload", text: str | None = None) -> ReloadResult:
        """Load ``text`` (default: the config file again) and serve it."""
        if self._path is None:
            raise ReloadRefused(["the gateway runs without a config file: nothing to reload"])
        async with self._lock:
            if text is None:
                try:
                    text = await asyncio.to_thread(self._path.read_text, encoding="utf-8")
                except OSError as exc:
                    raise ReloadRefused([f"cannot read {self._path}: {exc.strerror}"]) from None
            if self.current is not None and config_hash(text) == self.current.version:
                return ReloadResult(self.current, False, [])
            return await self._swap(text, source)

    async def rollback(self, version: str) -> ReloadResult:
        """Serve a kept version again, and write it back to the config file so that a
        restart keeps it."""
        text = self._versions.text(version)
        if text is None:
            raise ReloadRefused([f"no kept config version '{version}'"])
        result = await self.reload("rollback", text)
        if self._path is not None:
            try:
                # In place: a ConfigMap's file is a symlink that must stay one.
                self._path.write_text(text, encoding="utf-8")
            except OSError as exc:
                _log.warning("rollback_not_persisted", path=str(self._path), error=exc.strerror)
                result.persisted = False
        return result

    async def _swap(self, text: str, source: str) -> ReloadResult:
        try:
            config = parse_config(text)
        except ConfigError as exc:
            _log.error("reload_refused", problems=exc.problems)
            raise ReloadRefused(exc.problems) from None
        problems = self._broken_rules(config)
        if problems:
            _log.error("reload_refused", problems=problems)
            raise ReloadRefused(problems)
        old = self.runtime
        version = config_hash(text)
        new: Runtime | None = None
        try:
            new = build_runtime(config, previous=old, version=version)
            await new.start()
        except Exception as exc:
            if new is not None:
                await new.close()
            old.metrics.config_info.labels(version).set(0)
            old.metrics.config_info.labels(old.version).set(1)
            message = exc.message if isinstance(exc, GatewayError) else str(exc)
            _log.error("reload_refused", problems=[message or type(exc).__name__])
            raise ReloadRefused([message or type(exc).__name__]) from None
        if new.services.counters is old.services.counters:  # carried over: now the new one's
            old.services.owns_counters, new.services.owns_counters = False, True
        self._app.state.runtime = new  # requests from now on; in-flight ones keep the old
        self._text = text
        self.current = _record(self._versions, text, source)
        restart = [
            f"server.{name}"
            for name in ("host", "port")
            if getattr(config.server, name) != getattr(old.config.server, name)
        ]
        _log.info("reloaded", version=version, source=source, restart_needed=restart or None)
        task = asyncio.create_task(self._retire(old))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        return ReloadResult(self.current, True, restart)

    def _broken_rules(self, config: Config) -> list[str]:
        problems = []
        if self._rules.require_auth and config.auth.master_key is None:
            problems.append(
                "auth.master_key: the gateway listens beyond loopback; a config without "
                "authentication needs a restart with --insecure-no-auth"
            )
        if self._rules.workers > 1:
            problems += [
                f"redis_url: {self._rules.workers} workers would each keep {what}"
                for what in sharing_problems(config)
            ]
        return problems

    async def _retire(self, old: Runtime) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(old.inflight.idle(), self._grace)
        if old.inflight.count > 0:
            _log.warning("reload_drain_timeout", unfinished=old.inflight.count)
        await old.close()

    def watch(self, poll_seconds: float) -> None:
        """Reload when the file's content changes (polled: works on every file system and
        on Kubernetes ConfigMap volumes, whose files change by a symlink swap)."""
        if self._path is not None:
            self._watcher = asyncio.create_task(self._watch(self._path, poll_seconds))

    async def _watch(self, path: Path, poll_seconds: float) -> None:
        seen = self._text
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            except OSError:
                continue
            if text == seen:
                continue
            seen = text
            try:
                await self.reload("file", text)
            except ReloadRefused:
                pass  # logged; the running config keeps serving
            except Exception:
                _log.exception("reload_failed")

    async def close(self) -> None:
        """Stop watching and finish retiring old runtimes (before the current one closes)."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)


def _record(versions: ConfigVersions, text: str, source: str) -> ConfigVersion:
    """The version, kept on disk when possible: a full or read-only disk does not stop a
    reload that already happened."""
    try:
        return versions.record(text, source)
    except OSError as exc:
        _log.warning("config_version_not_kept", error=exc.strerror)
        return ConfigVersion(config_hash(text), datetime.now(UTC).isoformat(), source)
