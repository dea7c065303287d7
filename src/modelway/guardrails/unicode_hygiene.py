"""Invisible-character hygiene: strip, report and decode characters used to smuggle text.

No NFKC here. NFKC rewrites legitimate text (full-width CJK punctuation, superscripts,
ligatures, compatibility ideographs, Roman-numeral signs), so the text forwarded upstream
keeps its letters; only characters that render as nothing (or reorder what renders) are
removed. Detectors that want to see through look-alikes fold with NFKC on their own copy
(`injection.py` does).

Removed, by class (the `rule` of a `smuggled` finding):

- `tag_characters`: U+E0000-U+E007F. Kept only as emoji subdivision flags
  (U+1F3F4, tag letters/digits, U+E007F, e.g. the flag of Scotland).
- `zero_width`: U+200B, U+2060, U+FEFF, and U+200C/U+200D (ZWNJ/ZWJ) unless both
  neighbours are visible non-ASCII characters (emoji ZWJ sequences, Persian, Indic).
- `bidi_control`: embeddings, overrides and isolates U+202A-U+202E, U+2066-U+2069.
  The marks LRM/RLM/ALM (U+200E, U+200F, U+061C) are kept: they do not reorder text.
- `format_control`: the other invisible format characters: soft hyphen, U+180E,
  U+2061-U+2064, U+206A-U+206F, U+FFF9-U+FFFB, U+1BCA0-U+1BCA3, U+1D173-U+1D17A.
  Visible prepended marks (U+0600-U+0605, U+06DD, U+070F, ...) and hieroglyph format
  controls are kept.
- `control_character`: C0 and C1 controls and DEL, except tab, line feed and carriage return.
- `variation_selector_run`: two or more variation selectors in a row (one is a normal
  emoji or ideograph variant; a run carries bytes, "emoji smuggling").
"""

from __future__ import annotations

import re

from modelway.guardrails.findings import Finding

_ZW = "\u200b\u2060\ufeff"
_JOINERS = "\u200c\u200d"
_BIDI = "\u202a-\u202e\u2066-\u2069"
_FORMAT = (
    "\u00ad\u180e\u2061-\u2064\u206a-\u206f\ufff9-\ufffb\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
)
_CONTROL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_TAGS = "\U000e0000-\U000e007f"
_VS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"
_INVISIBLE = _ZW + _JOINERS + _BIDI + _FORMAT + _CONTROL + _TAGS
_VISIBLE_NON_ASCII = f"[^\\x00-\\x7f{_INVISIBLE}]"

# Alternatives are tried in order: the two "keep" shapes come first.
_PATTERN = re.compile(
    "(?P<keep_flag>\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,6}\U000e007f)"
    f"|(?P<keep_joiner>(?<={_VISIBLE_NON_ASCII})[{_JOINERS}](?={_VISIBLE_NON_ASCII}))"
    f"|(?P<tag_characters>[{_TAGS}]+)"
    f"|(?P<zero_width>[{_ZW}{_JOINERS}]+)"
    f"|(?P<bidi_control>[{_BIDI}]+)"
    f"|(?P<format_control>[{_FORMAT}]+)"
    f"|(?P<control_character>[{_CONTROL}]+)"
    f"|(?P<variation_selector_run>[{_VS}]{{2,}})"
)
_QUICK = re.compile(f"[{_INVISIBLE}{_VS}]")
# The ASCII characters no class removes: deleting them from ASCII text (a C loop, where a
# regex search pays per position) leaves the removable ones.
_ASCII_KEPT = bytes(i for i in range(128) if not re.match(f"[{_CONTROL}]", chr(i)))

# How sure a class is to be an attack rather than copy-paste residue (a stray BOM or a
# zero-width space from a web page is common; tag characters and overrides are not).
CLASS_SCORES: dict[str, float] = {
    "tag_characters": 1.0,
    "variation_selector_run": 1.0,
    "bidi_control": 0.9,
    "zero_width": 0.5,
    "format_control": 0.5,
    "control_character": 0.5,
}


def removable_runs(text: str) -> list[tuple[int, int, str]]:
    """Spans `(start, end, class)` that `clean` removes, in order."""
    if text.isascii():
        if not text.encode("ascii").translate(None, _ASCII_KEPT):
            return []
    elif _QUICK.search(text) is None:
        return []
    runs = []
    for m in _PATTERN.finditer(text):
        kind = m.lastgroup
        if kind is not None and not kind.startswith("keep_"):
            runs.append((m.start(), m.end(), kind))
    return runs


def clean(text: str, runs: list[tuple[int, int, str]] | None = None) -> tuple[str, int]:
    """The text without smuggling characters, and how many characters were removed.
    `runs` saves recomputing `removable_runs(text)` when the caller has them."""
    runs = removable_runs(text) if runs is None else runs
    if not runs:
        return text, 0
    parts = []
    pos = 0
    removed = 0
    for start, end, _ in runs:
        parts.append(text[pos:start])
        removed += end - start
        pos = end
    parts.append(text[pos:])
    return "".join(parts), removed


def smuggled(text: str) -> list[Finding]:
    """One `unicode_smuggling` finding per run of removable characters; `rule` is the class."""
    return [
        Finding("unicode_smuggling", start, end, CLASS_SCORES[kind], kind)
        for start, end, kind in removable_runs(text)
    ]


def _decode_variation_selectors(run: str) -> str:
    # U+FE00-FE0F carry bytes 0-15, U+E0100-E01EF carry bytes 16-255.
    data = bytearray()
    for ch in run:
        cp = ord(ch)
        data.append(cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16)
    return data.decode("utf-8", errors="ignore")


def hidden_ascii(text: str, runs: list[tuple[int, int, str]] | None = None) -> str:
    """Text hidden in tag characters (U+E0020-E007E map to ASCII) and variation-selector runs.

    Runs are decoded one by one and joined with newlines; only printable ASCII and
    whitespace survive. Empty when nothing is hidden. `runs` saves recomputing
    `removable_runs(text)` when the caller has them.
    """
    payloads = []
    for start, end, kind in removable_runs(text) if runs is None else runs:
        run = text[start:end]
        if kind == "tag_characters":
            decoded = "".join(chr(ord(ch) - 0xE0000) for ch in run if 0xE0020 <= ord(ch) <= 0xE007E)
        elif kind == "variation_selector_run":
            decoded = _decode_variation_selectors(run)
        else:
            continue
        decoded = "".join(
            ch for ch in decoded if ch.isascii() and (ch.isprintable() or ch in "\t\n")
        )
        if decoded.strip():
            payloads.append(decoded)
    return "\n".join(payloads)
