"""Structured JSON logs through structlog, one line per event, rendered with orjson.

Lines go to a buffer flushed every ``FLUSH_SECONDS`` (and on exit), not after every
line: a system call per request is a measurable share of the gateway's own latency.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
from typing import IO, Any

import orjson
import structlog

FLUSH_SECONDS = 0.2
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class DeferredFlushWriter:
    """A buffered stdout whose ``flush`` (called by structlog after every line) waits
    for ``flush_now``."""

    def __init__(self, fd: int) -> None:
        self._out: IO[bytes] = open(fd, "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115
        atexit.register(self.flush_now)

    def write(self, data: bytes) -> int:
        return self._out.write(data)

    def flush(self) -> None:
        pass

    def flush_now(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # stdout closed: nowhere to write
            self._out.flush()

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush_now()


def configure_logging(level: str = "info") -> DeferredFlushWriter:
    output = DeferredFlushWriter(os.dup(1))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(file=output),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    return output


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


# Things that look like credentials: provider keys (sk-..., sk-ant-...), modelway keys
# (mw-...), bearer tokens, AWS access key ids, and key=value pairs named like secrets.
_SECRET = re.compile(
    r"(?:\b(?:sk|mw|rk|pk)-[A-Za-z0-9_\-]{8,}"
    r"|\bBearer\s+[A-Za-z0-9._\-~+/]{8,}=*"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|(?i:\b(?:api[_-]?key|token|secret|password)\s*[=:]\s*)[^\s,;\"']{6,})"
)


def scrub_secrets(text: str) -> str:
    """``text`` with anything shaped like a credential replaced, for logs and errors."""
    return _SECRET.sub("[REDACTED]", text) if text else text
