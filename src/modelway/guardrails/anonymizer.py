"""Redaction and reversible anonymisation with numbered placeholders, also over streams.

A finding becomes ``<ENTITY_n>``: the upper-case entity, numbered per entity in order of
first appearance within one ``Placeholders`` (one request); the same value always gets the
same placeholder. Overlapping findings (say an e-mail and a name inside it, or one value
found by two detectors): the longest span wins, then the entity listed first in
``PRIORITY``, then the higher score; the others are dropped.

Streams: ``StreamRestorer`` puts anonymised values back into an answer as it streams and
holds back only a possible partial placeholder ("... <EMA"). ``StreamRedactor`` redacts an
answer as it streams: it emits text only once it can no longer be part of a match, i.e. it
keeps the last ``hold_back`` characters (64 by default, longer than any multi-word match:
phone numbers, spaced IBANs and card numbers, PEM headers) and never cuts inside a
whitespace-free token (a key or an e-mail is held whole). The output thus lags the input by
``hold_back`` characters plus the current token.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

from modelway.guardrails.findings import Finding

PRIORITY = (
    "secret", "credit_card", "iban", "us_ssn", "email", "phone", "ip_address", "person", "address",
)  # fmt: skip
_TAG = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


def select_findings(findings: Iterable[Finding], length: int | None = None) -> list[Finding]:
    """Non-overlapping findings (longest, then by ``PRIORITY``, then score), by start."""

    def rank(f: Finding) -> tuple[int, int, float, int]:
        pri = PRIORITY.index(f.entity) if f.entity in PRIORITY else len(PRIORITY)
        return (f.start - f.end, pri, -f.score, f.start)

    valid = (f for f in findings if 0 <= f.start < f.end and (length is None or f.end <= length))
    kept: list[Finding] = []
    for f in sorted(valid, key=rank):
        if all(f.end <= k.start or k.end <= f.start for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


class Placeholders:
    """One request's placeholder mapping: redact, anonymise, and restore anonymised values."""

    def __init__(self) -> None:
        self._tags: dict[tuple[str, bytes], str] = {}  # (entity, digest of value) -> tag
        self._counts: dict[str, int] = {}
        self._originals: dict[str, str] = {}  # tag -> value, for anonymised values only

    @property
    def used(self) -> bool:
        """True once a value was anonymised, i.e. answers need ``restore``."""
        return bool(self._originals)

    def redact(self, text: str, findings: Iterable[Finding]) -> str:
        """Replace each finding by its placeholder; the values are not kept."""
        return self.apply(text, (), findings)

    def anonymize(self, text: str, findings: Iterable[Finding]) -> str:
        """Like ``redact``, but remember the values so that ``restore`` can put them back."""
        return self.apply(text, findings, ())

    def apply(self, text: str, anonymize: Iterable[Finding], redact: Iterable[Finding]) -> str:
        """Both in one pass: ``anonymize`` findings are remembered, ``redact`` ones are not."""
        return self._replace(text, [(f, True) for f in anonymize] + [(f, False) for f in redact])

    def restore(self, text: str) -> str:
        """Put anonymised values back; unknown placeholders are left as they are."""
        if not self._originals:
            return text
        return _TAG.sub(lambda m: self._originals.get(m.group(0), m.group(0)), text)

    def partial_tag_start(self, text: str) -> int:
        """Where a possible partial anonymised placeholder begins at the end of ``text``."""
        i = text.rfind("<")
        if i < 0 or not self._originals:
            return len(text)
        tail = text[i:]
        if ">" in tail or not any(tag.startswith(tail) for tag in self._originals):
            return len(text)
        return i

    def tag_for(self, entity: str, value: str) -> str:
        """The placeholder of ``value`` as ``entity``, allocating the next number if new."""
        key = (entity, hashlib.blake2b(value.encode(), digest_size=16).digest())
        tag = self._tags.get(key)
        if tag is None:
            name = re.sub(r"[^A-Z0-9]+", "_", entity.upper()).strip("_") or "PII"
            self._counts[name] = n = self._counts.get(name, 0) + 1
            tag = self._tags[key] = f"<{name}_{n}>"
        return tag

    def _replace(self, text: str, findings: list[tuple[Finding, bool]]) -> str:
        remember = {id(f) for f, keep in findings if keep}
        parts: list[str] = []
        pos = 0
        for f in select_findings((f for f, _ in findings), len(text)):
            value = text[f.start : f.end]
            tag = self.tag_for(f.entity, value)
            if id(f) in remember:
                self._originals[tag] = value
            parts += (text[pos : f.start], tag)
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts)


class StreamRestorer:
    """Restores anonymised values in a streamed answer, chunk by chunk."""

    def __init__(self, placeholders: Placeholders) -> None:
        self._placeholders = placeholders
        self._buf = ""

    def feed(self, chunk: str) -> str:
        """Text that is safe to emit now, restored; a possible partial placeholder waits."""
        self._buf += chunk
        cut = self._placeholders.partial_tag_start(self._buf)
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return self._placeholders.restore(out)

    def flush(self) -> str:
        """The rest, at the end of the stream."""
        out, self._buf = self._buf, ""
        return self._placeholders.restore(out)


class StreamRedactor:
    """Redacts a streamed answer: emits only text that can no longer be part of a match.

    ``detect`` is called on the held text plus up to ``context`` characters already emitted
    (so "password: " or "SSN " before a held value still counts). A whitespace-free token
    longer than ``max_hold`` (default: 4096 or twice ``hold_back``) is cut anyway, outside any
    finding, to bound memory and work. ``hold_back`` must exceed the longest match that
    contains spaces (spaced IBAN: 42, PEM header: 37, phone: ~20); below ~48 part of one may
    be emitted before it is recognised.
    When a ``StreamRestorer`` also runs on the same answer, pass the request's
    ``Placeholders``: a separate mapping would number from 1 again, and the restorer would
    turn a redacted ``<EMAIL_1>`` into the user's own anonymised ``<EMAIL_1>``.
    """

    def __init__(
        self,
        detect: Callable[[str], list[Finding]],
        hold_back: int = 64,
        *,
        placeholders: Placeholders | None = None,
        context: int = 64,
        max_hold: int | None = None,
    ) -> None:
        max_hold = max(4096, 2 * hold_back) if max_hold is None else max_hold
        if hold_back < 0 or context < 0 or max_hold <= hold_back:
            raise ValueError("need hold_back >= 0, context >= 0 and max_hold > hold_back")
        self._detect = detect
        self._hold = hold_back
        self._context = context
        self._max_hold = max_hold
        self.placeholders = placeholders if placeholders is not None else Placeholders()
        self._ctx = ""  # raw tail of what was already emitted
        self._buf = ""  # held, not yet emitted
        self.redacted = False  # whether anything was replaced so far

    def feed(self, chunk: str) -> str:
        """Redacted text that is safe to emit now (often empty)."""
        self._buf += chunk
        return self._emit(final=False) if len(self._buf) > self._hold else ""

    def flush(self) -> str:
        """Redact and emit everything still held, at the end of the stream."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        off = len(self._ctx)
        text = self._ctx + self._buf
        cut = len(text) if final else self._token_cut(text, off)
        if cut <= off:
            return ""
        findings = select_findings(f for f in self._detect(text) if f.end > off)
        if not final:
            moved = True
            while moved:  # never cut inside a finding: it may still grow
                moved = False
                for f in findings:
                    if f.start < cut < f.end:
                        cut, moved = f.start, True
            if cut <= off:
                return ""
        inside = [
            Finding(f.entity, max(f.start, off) - off, f.end - off, f.score, f.rule)
            for f in findings
            if f.start < cut and f.end > off
        ]
        if inside:
            self.redacted = True
        out = self.placeholders.redact(text[off:cut], inside)
        self._ctx = text[max(0, cut - self._context) : cut]
        self._buf = text[cut:]
        return out

    def _token_cut(self, text: str, off: int) -> int:
        """The last safe cut at least ``hold_back`` before the end, not inside a token."""
        cut = len(text) - self._hold
        if len(text) - off > self._max_hold:
            return cut
        while cut > off and not (text[cut - 1].isspace() or text[cut].isspace()):
            cut -= 1
        return cut
