"""Cutting generated text at stop strings without leaking them, even when split across tokens."""

from __future__ import annotations


class StopMatcher:
    """Feed text as it is generated; get back what is safe to emit.

    Text that could still be the start of a stop string is held back until it is
    either completed (then cut, and never emitted) or ruled out.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        self._pending += text
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            self.stopped = True
            return out
        keep = self._partial_suffix()
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return "" if self.stopped else out

    def _partial_suffix(self) -> int:
        """Length of the longest tail of pending text that begins some stop string."""
        text = self._pending
        for length in range(min(len(text), self._hold - 1), 0, -1):
            tail = text[-length:]
            if any(s.startswith(tail) for s in self._stops):
                return length
        return 0
