"""Where the long whitespace-separated tokens of a text are (the tokens of `str.split()`).

Splitting 2,000 characters of prose makes some 350 strings, which costs more than the
regexes the long tokens gate. ASCII text is mapped instead to b" " (whitespace) and b"x"
(anything else) in one C pass, where a token of `length` characters or more is a run of
b"x" that `bytes.find` finds.
"""

from __future__ import annotations

_MARKS = bytes(32 if chr(i).isspace() else 120 for i in range(256))


def long_tokens(text: str, length: int, limit: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of the first `limit` (default all) tokens of at least `length` (>= 1)
    characters, in order."""
    spans: list[tuple[int, int]] = []
    room = len(text) if limit is None else limit
    if not text.isascii():
        pos = 0
        for token in [t for t in text.split() if len(t) >= length][:room]:
            pos = text.find(token, pos)
            spans.append((pos, pos + len(token)))
            pos += len(token)
        return spans
    marks = text.encode("ascii").translate(_MARKS)
    run = b"x" * length
    start = marks.find(run)
    while start != -1 and len(spans) < room:
        end = marks.find(b" ", start)
        end = len(marks) if end == -1 else end
        spans.append((start, end))
        start = marks.find(run, end)
    return spans


def has_long_token(text: str, length: int) -> bool:
    """Whether a token of at least `length` characters occurs (always for `length` <= 0)."""
    return length <= 0 or bool(long_tokens(text, length, 1))
