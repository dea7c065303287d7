"""Prompt-injection detector for the input guard: named rules plus a small classifier.

`scan` looks at a folded copy of the text: smuggling characters removed (see
`unicode_hygiene`), NFKC applied (full-width and other compatibility forms become plain
letters) and Cyrillic/Greek look-alikes inside Latin words mapped to Latin. Findings
carry offsets into the original text. ASCII hidden in tag characters or variation
selectors is decoded and scanned too; its findings span the hidden run.

Score: the maximum of the model's probability (over the text and any hidden payload)
and the confidence of the strongest rule hit (0.9-0.95, see `injection_rules.CONFIDENCE`).
A rule hit is strong evidence on its own, and the model catches paraphrases no rule
names, so the maximum (not an average) is the honest combination. `flagged` is
`score >= threshold`; the default threshold is the one shipped with the weights, chosen on
the training data for at most 3% false positives of the combined detector.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelway.guardrails import injection_rules, unicode_hygiene
from modelway.guardrails.findings import Finding
from modelway.guardrails.injection_model import InjectionModel

_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁɡһԛԝАВЕНІЈКМОРСТХУЅοαεικνρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdghqwABEHIJKMOPCTXYSoaeikvptuxABEZHIKMNOPTYX",
)
_HIDING = ("tag_characters", "variation_selector_run")  # classes that can carry a payload
_CONFUSABLE_SET = frozenset("аеорсухіјѕԁɡһԛԝАВЕНІЈКМОРСТХУЅοαεικνρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ")
_HAS_CONFUSABLE = re.compile("[аеорсухіјѕԁɡһԛԝАВЕНІЈКМОРСТХУЅοαεικνρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ]")


class Scorer(Protocol):
    threshold: float

    def score(self, text: str) -> float: ...


@dataclass(frozen=True, slots=True)
class InjectionResult:
    score: float
    rules: tuple[str, ...]  # families that matched, sorted, without repeats
    flagged: bool
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _View:
    text: str
    origin: list[int] | None  # origin[i] = index in the original text; None when identical
    runs: list[tuple[int, int, str]]  # what unicode_hygiene removed

    def span(self, start: int, end: int) -> tuple[int, int]:
        if self.origin is None or start >= end:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def _mixed_script_fold(text: str) -> str:
    # Same length out as in; only words that mix ASCII letters with look-alikes change.
    if text.isascii() or not _HAS_CONFUSABLE.search(text):
        return text
    words = text.split(" ")
    for i, word in enumerate(words):
        if _CONFUSABLE_SET.intersection(word) and any("a" <= c.lower() <= "z" for c in word):
            words[i] = word.translate(_CONFUSABLES)
    return " ".join(words)


def _nfkc(text: str, origin: list[int] | None) -> tuple[str, list[int] | None]:
    # Character by character (through a translation table of the distinct characters that
    # change), so each output character still knows where it came from.
    table = {}
    for ch in set(text):
        if not ch.isascii():
            folded = unicodedata.normalize("NFKC", ch)
            if folded != ch:
                table[ord(ch)] = folded
    out = text.translate(table)
    resized = "".join(re.escape(chr(k)) for k, v in table.items() if len(v) != 1)
    if not resized:
        return out, origin
    source: Sequence[int] = origin if origin is not None else range(len(text))
    mapped: list[int] = []
    pos = 0
    for m in re.finditer(f"[{resized}]", text):
        i = m.start()
        mapped.extend(source[pos:i])
        mapped.extend([source[i]] * len(table[ord(m.group())]))
        pos = i + 1
    mapped.extend(source[pos:])
    return out, mapped


def fold(text: str) -> _View:
    """The copy of `text` that rules and model see, with a map back to `text`."""
    runs = unicode_hygiene.removable_runs(text)
    origin: list[int] | None = None
    view = text
    if runs:
        parts, origin, pos = [], [], 0
        for start, end, _ in runs:
            parts.append(text[pos:start])
            origin.extend(range(pos, start))
            pos = end
        parts.append(text[pos:])
        origin.extend(range(pos, len(text)))
        view = "".join(parts)
    if not view.isascii() and not unicodedata.is_normalized("NFKC", view):
        view, origin = _nfkc(view, origin)
    return _View(_mixed_script_fold(view), origin, runs)


class InjectionDetector:
    """Rules and model together; `threshold=None` uses the shipped operating point."""

    def __init__(self, threshold: float | None = None, model: Scorer | None = None) -> None:
        self.model: Scorer = model if model is not None else InjectionModel.load()
        self.threshold = self.model.threshold if threshold is None else threshold

    def scan(self, text: str) -> InjectionResult:
        view = fold(text)
        findings = []
        for f in injection_rules.match(view.text):
            start, end = view.span(f.start, f.end)
            findings.append(Finding(f.entity, start, end, f.score, f.rule))
        score = self.model.score(view.text)
        hiding = [r for r in view.runs if r[2] in _HIDING]
        hidden = unicode_hygiene.hidden_ascii(text, hiding) if hiding else ""
        if hidden:
            start, end = hiding[0][0], hiding[-1][1]
            for f in injection_rules.match(hidden):
                findings.append(Finding(f.entity, start, end, f.score, f.rule))
            score = max(score, self.model.score(hidden))
        score = max([score, *(f.score for f in findings)])
        rules = tuple(sorted({f.rule for f in findings if f.rule is not None}))
        return InjectionResult(score, rules, score >= self.threshold, findings)
