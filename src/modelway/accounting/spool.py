"""An append-only file of records on local disk, kept until their destination takes them.

Records are bytes, one a line (the ledger's are JSON). Appends go to ``path``. A replay
first renames it to ``<path>.replaying``, so records spooled meanwhile start a fresh
file, and deletes that file only once all of it was delivered; after a crash both files
are replayed. A torn last line (a crash mid-append) is cut off with a warning.

Every method but ``pending`` does blocking file I/O: call them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelway.observability.logging import get_logger

_BLOCK = 1 << 16
_log = get_logger("modelway.accounting.spool")


@dataclass(frozen=True, slots=True)
class SpoolChunk:
    """Records read from the replaying file up to byte offset ``end``; ``last`` if it ends
    the file."""

    lines: list[bytes]
    end: int
    last: bool


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaying_path = path.with_name(path.name + ".replaying")
        self._lock = threading.Lock()  # appends and the rename never interleave
        self._rows = 0  # records in ``path``
        self._replaying_rows = 0  # records in ``replaying_path`` not yet committed
        self._offset = 0  # bytes of ``replaying_path`` already committed

    @property
    def pending(self) -> int:
        """Records spooled and not yet committed as delivered."""
        return self._rows + self._replaying_rows

    def open(self) -> None:
        """Count the records earlier runs left, cutting off torn last lines."""
        with self._lock:
            self._rows = _repair_and_count(self.path)
            self._replaying_rows = _repair_and_count(self.replaying_path)
            self._offset = 0

    def append(self, lines: Sequence[bytes]) -> None:
        """Append records durably (flushed and fsync'd): all of them, or none on error."""
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            with open(self.path, "a+b") as f:
                start = _cut_torn_tail(f, self.path)
                try:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                except BaseException:
                    with contextlib.suppress(OSError):
                        f.truncate(start)
                    raise
            if created:
                _fsync_dir(self.path.parent)
            self._rows += len(lines)

    def claim(self) -> bool:
        """Make sure there is a replaying file, renaming the spool to it; False if none."""
        with self._lock:
            if self.replaying_path.exists():
                return True
            if not self.path.exists():
                return False
            os.replace(self.path, self.replaying_path)
            _fsync_dir(self.path.parent)
            self._replaying_rows, self._rows = self._rows, 0
            self._offset = 0
            return True

    def read(self, limit: int) -> SpoolChunk:
        """Up to ``limit`` records of the claimed replaying file after the committed ones."""
        lines: list[bytes] = []
        end = self._offset
        with open(self.replaying_path, "rb") as f:
            f.seek(end)
            while len(lines) < limit:
                line = f.readline()
                if not line:
                    break
                end += len(line)
                if line.endswith(b"\n"):
                    lines.append(line[:-1])
                else:  # an append that failed and could not be rolled back
                    _log.warning("skipping a torn spool line", path=str(self.replaying_path))
            last = not f.read(1)
        return SpoolChunk(lines, end, last)

    def commit(self, chunk: SpoolChunk) -> None:
        """Mark ``chunk`` delivered; delete the replaying file after its last chunk."""
        with self._lock:
            if chunk.last:
                self.replaying_path.unlink(missing_ok=True)
                self._replaying_rows = 0
                self._offset = 0
            else:
                self._offset = chunk.end
                self._replaying_rows = max(0, self._replaying_rows - len(chunk.lines))


def _repair_and_count(path: Path) -> int:
    try:
        f = open(path, "r+b")  # noqa: SIM115
    except FileNotFoundError:
        return 0
    with f:
        _cut_torn_tail(f, path)
        f.seek(0)
        return sum(block.count(b"\n") for block in iter(lambda: f.read(_BLOCK), b""))


def _cut_torn_tail(f: BinaryIO, path: Path) -> int:
    """Truncate ``f`` after its last newline; return its size."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _BLOCK)
        f.seek(start)
        newline = f.read(end - start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        _log.warning("cutting off a torn spool line", path=str(path), bytes=size - end)
        f.truncate(end)
    return end


def _fsync_dir(directory: Path) -> None:
    # Makes a created or renamed file's name durable; some platforms cannot open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
