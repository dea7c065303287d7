"""Output moderation by categories of terms: a keyword filter, not a classifier.

The built-in lists are short and conservative on purpose: a few phrases per category that
are rarely innocent (instructions to build a bomb, self-harm method seeking, ...). They
catch blatant answers and miss paraphrases, misspellings, other languages and anything
said politely. Operators extend a category, or define new ones, with ``term_categories``
and add their own words with ``terms`` (reported as ``"custom"``). Slurs are deliberately
not shipped in source: lists of them belong in the operator's configuration.

Built-in patterns are regular expressions matched case-insensitively between word
boundaries, a space matching any run of whitespace. Operator terms are literal phrases
(same matching); a term written ``re:<pattern>`` is taken as a regular expression.
Before matching, text is NFKC-normalised, curly apostrophes are straightened and
zero-width characters and markdown emphasis marks (``* _ ~ ` ``) are dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence

CUSTOM = "custom"

BUILTIN_TERMS: Mapping[str, tuple[str, ...]] = {
    "violence": (
        r"(?:i|i'm|i am|we|we're|we are) (?:going to|gonna|will) (?:kill|murder|stab|shoot)"
        r" (?:you|him|her|them)",
        r"how (?:to|do i|can i) (?:kill|murder|strangle|poison)"
        r" (?:a person|someone|somebody|people)",
        r"(?:plan|planning|carry out|carrying out) a (?:mass shooting|massacre|terrorist attack)",
    ),
    "self_harm": (
        r"kill(?:ing)? myself",
        r"(?:ways?|how|best way|easiest way|painless way) to (?:kill|hurt|harm)"
        r" (?:myself|yourself)",
        r"(?:painless|quick|quickest|easiest|effective) (?:suicide|way to die)",
        r"suicide methods?",
        r"self(?:-| )?harm (?:methods?|techniques?|tips)",
    ),
    "sexual_minors": (
        r"child (?:porn|pornography|sexual abuse material)",
        r"csam",
        r"(?:underage|under-age) (?:nudes?|porn|sex)",
        r"sexual(?:ly explicit)? (?:content|images?|stories|story|roleplay|acts?)"
        r" (?:with|involving|of|about) (?:a )?(?:minors?|child|children|kids?)",
    ),
    "weapons": (
        r"(?:build|make|assemble|construct)(?:ing)? (?:a |an )?(?:pipe bomb|nail bomb|car bomb"
        r"|bomb|explosive device|improvised explosive device|molotov cocktail)s?",
        r"homemade (?:explosives?|bombs?|napalm|grenades?)",
        r"(?:synthesi[sz]e|synthesi[sz]ing|make|making|produce|producing|weaponi[sz]e)"
        r" (?:sarin|tabun|soman|vx|ricin|mustard gas|nerve agents?|anthrax)",
        r"auto sears?",
        r"(?:full(?:-| )auto|fully automatic) conversion",
    ),
    "hate": (
        r"heil hitler",
        r"sieg heil",
        r"race war now",
        r"racial holy war",
        r"(?:are|is|be) subhuman",
        r"(?:ethnic cleansing|genocide) (?:is|was) (?:good|justified|necessary|the answer)",
        r"(?:exterminate|eradicate|gas|wipe out) (?:all|the|all the)"
        r" (?:jews|muslims|christians|arabs|blacks|whites|asians|gays|immigrants)",
    ),
}
BUILTIN_CATEGORIES = tuple(BUILTIN_TERMS)

_IGNORED = re.compile(r"[\u00ad\u200b-\u200d\u2060\ufeff*_~`]")
_WORD_LEAD = re.compile(r"^\w+")


def normalise(text: str) -> str:
    """The text as the patterns see it (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    return _IGNORED.sub("", text)


def _literal(term: str) -> str:
    """A regex for an operator term: regex after ``re:``, else the literal phrase."""
    if term.startswith("re:"):
        return term[3:]
    phrase = " ".join(normalise(term).split())
    if not phrase:
        raise ValueError(f"moderation term {term!r} is empty")
    body = r"\s+".join(re.escape(word) for word in phrase.split(" "))
    lead = r"\b" if re.match(r"\w", phrase) else ""
    tail = r"\b" if re.search(r"\w$", phrase) else ""
    return f"{lead}{body}{tail}"


def _builtin(pattern: str) -> str:
    return r"\b(?:" + pattern.replace(" ", r"\s+") + r")\b"


def _compile(category: str, patterns: Sequence[str]) -> re.Pattern[str]:
    source = "|".join(f"(?:{p})" for p in patterns)
    try:
        return re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"moderation terms of {category!r}: bad pattern: {exc}") from exc


class Moderator:
    """Reports which categories of terms a text contains.

    ``categories`` picks built-in lists (see ``BUILTIN_CATEGORIES``); ``term_categories``
    adds operator terms to a built-in category or defines a new one (always active);
    ``terms`` are operator terms reported as ``"custom"``. Raises ``ValueError`` for an
    unknown category or a bad ``re:`` pattern.
    """

    def __init__(
        self,
        categories: Collection[str],
        terms: Sequence[str] = (),
        term_categories: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        extra: dict[str, list[str]] = {
            name: [_literal(t) for t in ts] for name, ts in (term_categories or {}).items()
        }
        if terms:
            extra.setdefault(CUSTOM, []).extend(_literal(t) for t in terms)
        unknown = [c for c in categories if c not in BUILTIN_TERMS and c not in extra]
        if unknown:
            known = ", ".join(BUILTIN_CATEGORIES)
            raise ValueError(
                f"unknown moderation categories {unknown}; built-in ones are: {known} "
                "(define others with term lists)"
            )
        patterns: dict[str, list[str]] = {}
        for name in [*categories, *extra]:
            if name in patterns:
                continue
            own = BUILTIN_TERMS.get(name, ()) if name in categories else ()
            patterns[name] = [_builtin(p) for p in own] + extra.get(name, [])
        self._patterns = [(name, _compile(name, ps)) for name, ps in patterns.items() if ps]

    @property
    def categories(self) -> tuple[str, ...]:
        """The active categories, in the order they are reported."""
        return tuple(name for name, _ in self._patterns)

    def check(self, text: str) -> list[str]:
        """The categories whose terms occur in ``text`` (empty when none do)."""
        if not self._patterns:
            return []
        seen = normalise(text)
        return [name for name, pattern in self._patterns if pattern.search(seen)]


class ModerationWatch:
    """Moderates a stream chunk by chunk, catching terms split across chunks.

    Each chunk is checked together with the tail (``overlap`` characters, cut at a word
    start) of what came before, so a phrase up to ``overlap`` characters long is found
    wherever the chunks split it. Each category is reported once per stream, on the chunk
    that completes its first match.
    """

    def __init__(self, moderator: Moderator, overlap: int = 256) -> None:
        self._moderator = moderator
        self._overlap = overlap
        self._tail = ""
        self._matched: list[str] = []

    @property
    def matched(self) -> tuple[str, ...]:
        """Every category reported so far."""
        return tuple(self._matched)

    def feed(self, chunk: str) -> list[str]:
        """The categories first matched with this chunk."""
        if not chunk:
            return []
        window = self._tail + chunk
        hits = [c for c in self._moderator.check(window) if c not in self._matched]
        self._matched.extend(hits)
        self._tail = self._cut(window)
        return hits

    def _cut(self, window: str) -> str:
        if len(window) <= self._overlap:
            return window
        tail = window[-self._overlap :]
        if window[-self._overlap - 1].isalnum() and tail[:1].isalnum():
            tail = _WORD_LEAD.sub("", tail)  # never start the next window mid-word
        return tail
