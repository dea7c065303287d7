"""A lexical check on a semantic match: two questions close in embedding space may
still need different answers when they differ in a number, a name, a negation or the
order of the same words ("from French to English" against "from English to French").
Sentence embeddings place such pairs very close (cosine 0.99 and more); these checks
turn them into misses, at the price of missing some true paraphrases.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\d+(?:[.,:]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)?")
_NEGATIONS = frozenset(
    "not no never without none nor cannot neither non avoid except".split()  # noqa: SIM905
)
# Words that fix a quantity, a rank or a time of day.
_QUANTITY_WORDS = (
    "am pm zero one two three four five six seven eight nine ten eleven twelve twenty "
    "hundred thousand million billion first second third single every all each both "
    "few several many most least"
)
_QUANTITIES = frozenset(_QUANTITY_WORDS.split())
_ARTICLES = frozenset({"a", "an", "the"})


def _words(text: str) -> list[str]:
    found = _WORD.findall(text.replace("\u2019", "'"))
    return [w[:-2] if w.lower().endswith("'s") else w for w in found]


def _specifics(lower: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    numbers = frozenset(w for w in lower if w[0].isdigit() or w in _QUANTITIES)
    negations = frozenset(w for w in lower if w in _NEGATIONS or w.endswith("n't"))
    return numbers, negations


def _names_covered(words: list[str], other: set[str]) -> bool:
    """Every capitalised word past the first (a name, most likely) is in the other text."""
    return all(
        w.lower() in other
        for i, w in enumerate(words)
        if i > 0 and w[0].isupper() and not w.isupper()
    )


def same_specifics(a: str, b: str) -> bool:
    words_a, words_b = _words(a), _words(b)
    lower_a, lower_b = [w.lower() for w in words_a], [w.lower() for w in words_b]
    if _specifics(lower_a) != _specifics(lower_b):
        return False
    set_a, set_b = set(lower_a), set(lower_b)
    if not (_names_covered(words_a, set_b) and _names_covered(words_b, set_a)):
        return False
    content_a = [w for w in lower_a if w not in _ARTICLES]
    content_b = [w for w in lower_b if w not in _ARTICLES]
    # The same words in another order: most often a swapped direction or comparison.
    return content_a == content_b or sorted(content_a) != sorted(content_b)
