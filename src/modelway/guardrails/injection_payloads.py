"""Payloads hidden from plain-text rules: base64 (standard and URL-safe) and hex blobs,
decoded when they turn out to be readable text, for the injection rules to run on."""

from __future__ import annotations

import base64
import binascii
import re

from modelway.guardrails.long_tokens import long_tokens

_B64 = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){12,}")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MAX_BLOBS = 32
_MAX_BLOB_CHARS = 8192
_MIN_TOKEN = 20  # the shortest whitespace-separated token a blob is looked for in


def _as_text(data: bytes) -> str | None:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\t\n\r" for ch in decoded)
    if len(decoded) < 8 or printable < 0.95 * len(decoded) or " " not in decoded:
        return None
    return decoded


def decode(blob: str) -> str | None:
    blob = blob[:_MAX_BLOB_CHARS]
    if blob.startswith("\\x") or (len(blob) % 2 == 0 and _HEX_DIGITS.issuperset(blob)):
        try:
            return _as_text(bytes.fromhex(blob.replace("\\x", "")))
        except ValueError:
            pass
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        return None
    return _as_text(raw)


def blobs(text: str) -> list[re.Match[str]]:
    matches: list[re.Match[str]] = []
    if "\\x" in text:
        matches += _HEX_ESCAPES.finditer(text)
    for start, end in long_tokens(text, _MIN_TOKEN, _MAX_BLOBS):
        matches += _B64.finditer(text, start, end)
    return matches[:_MAX_BLOBS]
