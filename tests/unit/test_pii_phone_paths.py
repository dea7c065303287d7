"""Phone numbers: the direct parse of plain international candidates finds what
PhoneNumberMatcher finds, and the digit runs phones, cards and SSNs are looked for in."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from phonenumbers import Leniency, PhoneNumberMatcher

from modelway.guardrails.pii import (
    _NUMERIC_RUN,
    PIIDetector,
    _matcher_spans,
    _numeric_runs,
    _valid,
)

CANDIDATES = [
    "+1 415 555 2671",
    "+1-415-555-2671",
    "+1.415.555.2671",
    "+14155552671",
    "+1 415 555 267",  # too short
    "+1 415 555 26711",  # too long
    "+44 20 7946 0958",
    "+44 1624 756789",  # Isle of Man: +44, not GB
    "+49 30 901820",
    "+33 1 42 68 53 00",
    "+91 98765 43210",
    "+7 495 123 4567",  # Russia: region by leading digits
    "+7 701 123 4567",  # Kazakhstan
    "+1 604 555 0199",  # Canada
    "+1 242 357 1234",  # Bahamas
    "+999 123 4567",  # no such country code
    "+0044 20 7946 0958",  # an IDD after the plus
    "+2012-01-02 08",  # time-stamp shaped
    "+1 415 555 2671 2672",  # a second number in the same run
    "+1 (415) 555-2671",  # parentheses: the matcher itself
    "+44 (0)20 7946 0958",
    "+1 415 555 2671 x204",  # an extension: the matcher itself
    "+1 415/555/2671",
    "+1 415  555 2671",
]


@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("region", ["US", "GB", "DE", "IN"])
def test_matcher_spans_are_the_matchers(candidate: str, region: str) -> None:
    expected = [(m.start, m.end) for m in PhoneNumberMatcher(candidate, region, Leniency.VALID)]
    assert _matcher_spans(candidate, region) == expected


@pytest.mark.parametrize("candidate", [c for c in CANDIDATES if c[1:2].isdigit()])
def test_valid_is_is_valid_number(candidate: str) -> None:
    try:
        number = phonenumbers.parse(candidate, "US")
    except phonenumbers.NumberParseException:
        return
    assert _valid(number) == phonenumbers.is_valid_number(number)


@pytest.mark.parametrize(
    ("text", "phones"),
    [
        ("Call +1 415 555 2671 now.", ["+1 415 555 2671"]),
        ("Call +1-415-555-2671.", ["+1-415-555-2671"]),
        ("Reach me at +33.1.42.68.53.00 today", ["+33.1.42.68.53.00"]),
        ("Ann (+44 20 7946 0958) called", ["+44 20 7946 0958"]),
        ("call +1 (415) 555-2671", ["+1 (415) 555-2671"]),
        ("Phone: +1 415 555 2671 ext. 204", ["+1 415 555 2671"]),
        ("Phone: +1 415 555 2671 x204", ["+1 415 555 2671"]),
        ("Call +1 415 555 2671 +1 415 555 2672", ["+1 415 555 2671", "+1 415 555 2672"]),
        (
            "Call +44 20 7946 0958, +49 30 901820 or +1-604-555-0199",
            ["+44 20 7946 0958", "+49 30 901820", "+1-604-555-0199"],
        ),
        ("Call +1 415 555 267.", []),
        ("call +999 123 4567", []),
        ("Call +1 415 555 2671/2672", []),
        ("Fax: +1 415 555 2671-9", []),
        ("Order 2024-05-17 shipped", []),
        ("released 2023.10.05", []),
        ("order #415-555-2671", []),
        ("ISBN 0-306-40615-2", []),
    ],
)
def test_international_phones_in_text(text: str, phones: list[str]) -> None:
    found = PIIDetector(["phone"]).find(text)
    assert [text[f.start : f.end] for f in found] == phones


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no digits at all",
        "+1 415 555 2671",
        "call (020) 7946-0958 or 555.0100 / 12",
        "  . - 7 ) ( + +( 9",
        "a1b2 c3-4 x(5)",
        "total 1,234.50 on 2024/05/17",
        "٣٤٥ 67",  # non-ASCII digits: the regex path
        "tel. \uff10\uff11\uff12 345",  # full-width digits
    ],
)
def test_numeric_runs_are_the_regex_matches_with_a_digit(text: str) -> None:
    expected = [
        m.span() for m in re.finditer(_NUMERIC_RUN, text) if any(c.isdigit() for c in m.group())
    ]
    assert _numeric_runs(text) == expected
