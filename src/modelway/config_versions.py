"""Every config the gateway loads gets a version: the hash of its text and when it was
loaded. The last few versions are kept as files in the state directory, so an operator
can see what changed and roll back to one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    version: str  # the content hash: equal texts, equal versions
    loaded_at: str  # ISO 8601, UTC
    source: str  # "start", "reload", "rollback"

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "loaded_at": self.loaded_at, "source": self.source}


class ConfigVersions:
    """``<state>/config-versions/``: one ``<hash>.yaml`` per distinct text and an index of
    loads, newest last, trimmed to ``keep`` distinct versions."""

    def __init__(self, folder: Path, keep: int = 10) -> None:
        self._folder = folder
        self._index = folder / "index.json"
        self._keep = keep

    def record(self, text: str, source: str) -> ConfigVersion:
        version = ConfigVersion(config_hash(text), datetime.now(UTC).isoformat(), source)
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._folder / f"{version.version}.yaml"
        if not path.exists():
            _write_atomically(path, text.encode())
        history = [v for v in self.history() if v.version != version.version]
        history.append(version)
        for old in history[: -self._keep]:
            (self._folder / f"{old.version}.yaml").unlink(missing_ok=True)
        history = history[-self._keep :]
        _write_atomically(self._index, orjson.dumps([v.as_dict() for v in history]))
        return version

    def history(self) -> list[ConfigVersion]:
        """Kept versions, oldest first (each with the time it was last loaded)."""
        try:
            data = orjson.loads(self._index.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return []
        return [ConfigVersion(d["version"], d["loaded_at"], d["source"]) for d in data]

    def text(self, version: str) -> str | None:
        if not version.isalnum():
            return None
        try:
            return (self._folder / f"{version}.yaml").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Through a temporary file of this process's own: several workers may write at once."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
