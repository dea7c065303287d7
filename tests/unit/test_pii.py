"""PIIDetector: each entity in several formats, and the look-alikes it must leave alone."""

from __future__ import annotations

import importlib.machinery
import itertools
import re
import sys
import types
from collections.abc import Iterable

import pytest

from modelway.guardrails import pii
from modelway.guardrails.pii import STRUCTURED_ENTITIES, PIIDetector, luhn_ok


@pytest.fixture(scope="module")
def detector() -> PIIDetector:
    return PIIDetector(entities=None)


def found(detector: PIIDetector, text: str) -> list[tuple[str, str]]:
    return [(f.entity, f.text_of(text)) for f in detector.find(text)]


@pytest.mark.parametrize(
    "value",
    [
        "john.doe@example.com",
        "j.doe+newsletter@mail.example.co.uk",
        "ANNA_K-99@sub.domain-name.io",
        "x@y.org",
    ],
)
def test_email(detector: PIIDetector, value: str) -> None:
    text = f"Write to {value}. Or mailto:{value}"
    assert found(detector, text) == [("email", value), ("email", value)]


@pytest.mark.parametrize(
    "value",
    [
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "+44 20 7946 0958",
        "020 7946 0958",
        "0044 20 7946 0958",
        "+49 30 901820",
        "030 901820",
        "+33 1 42 68 53 00",
        "01 42 68 53 00",
        "+91 98765 43210",
        "+61 2 9374 4000",
        "+55 11 91234-5678",
        "+34 912 345 678",
        "+14155552671",
        "+1-415-555-2671",
        "1-800-555-0199",
        "+44 (0)20 7946 0958",
        "(+44) 20 7946 0958",
        "07700 900123",
    ],
)
def test_phone(detector: PIIDetector, value: str) -> None:
    text = f"Please call me at {value} tomorrow."
    assert found(detector, text) == [("phone", value)]
    assert found(detector, f"{value}") == [("phone", value)]


def test_phone_in_parentheses(detector: PIIDetector) -> None:
    text = "Ann (+468176858) and Bob (020 7946 0958) will join"
    assert found(detector, text) == [("phone", "+468176858"), ("phone", "020 7946 0958")]


def test_bare_phone_needs_context(detector: PIIDetector) -> None:
    assert found(detector, "phone: 4155552671") == [("phone", "4155552671")]
    assert found(detector, "reference 4155552671 applies") == []


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0055 5555 5559",
        "3782 822463 10005",  # Amex 4-6-5
        "6011 1111 1111 1117",  # Discover
        "3530 1113 3330 0000",  # JCB
        "4222222222222",  # 13-digit Visa
    ],
)
def test_credit_card(detector: PIIDetector, value: str) -> None:
    assert found(detector, f"my card is {value}, exp 12/29") == [("credit_card", value)]


def test_card_followed_by_other_digits(detector: PIIDetector) -> None:
    text = "card 4111 1111 1111 1111 123"
    assert found(detector, text) == [("credit_card", "4111 1111 1111 1111")]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn-invalid
        "card 4111111111111112",
        "ref 1234 5678 9012 3456",  # Luhn-invalid, no known issuer
        "card 9111 1111 1111 1111 ",  # no known issuer (even if Luhn-valid)
        "card 4111 1111-1111 1111",  # mixed separators
    ],
)
def test_not_a_card(detector: PIIDetector, text: str) -> None:
    assert [e for e, _ in found(detector, text)] == []


def test_luhn() -> None:
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


@pytest.mark.parametrize(
    "value",
    ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32",
     "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300"],
)  # fmt: skip
def test_iban(detector: PIIDetector, value: str) -> None:
    assert found(detector, f"IBAN {value} EUR please") == [("iban", value)]


def test_iban_bad_checksum(detector: PIIDetector) -> None:
    assert found(detector, "IBAN DE89 3704 0044 0532 0130 01 EUR") == []
    assert found(detector, "IBAN GB83WEST12345698765432") == []


@pytest.mark.parametrize("value", ["123-45-6789", "078 05 1120", "536-90-4399"])
def test_ssn(detector: PIIDetector, value: str) -> None:
    assert found(detector, f"my SSN is {value}.") == [("us_ssn", value)]


def test_bare_ssn_needs_context(detector: PIIDetector) -> None:
    assert found(detector, "SSN: 536904399") == [("us_ssn", "536904399")]
    assert found(detector, "social security 536904399") == [("us_ssn", "536904399")]
    assert [e for e, _ in found(detector, "account 536904399 closed")] == []


@pytest.mark.parametrize(
    "value", ["000-12-3456", "666-12-3456", "900-12-3456", "999-45-6789", "123-00-4567",
              "123-45-0000"],
)  # fmt: skip
def test_invalid_ssn_ranges(detector: PIIDetector, value: str) -> None:
    assert found(detector, f"SSN {value}") == []


@pytest.mark.parametrize(
    "value",
    ["8.8.8.8", "203.0.113.7", "192.168.1.10", "10.0.0.1", "2001:db8::ff00:42:8329",
     "fe80::1", "::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:192.0.2.1"],
)  # fmt: skip
def test_ip(detector: PIIDetector, value: str) -> None:
    assert found(detector, f"client {value} connected.") == [("ip_address", value)]


def test_private_ips_can_be_skipped() -> None:
    d = PIIDetector(["ip_address"], include_private_ips=False)
    text = "from 192.168.1.10, 10.0.0.1, 127.0.0.1, ::1, fe80::1 and 8.8.8.8"
    assert found(d, text) == [("ip_address", "8.8.8.8")]


@pytest.mark.parametrize(
    "text",
    [
        "Order #4155552671 shipped",
        "order number 415-555-2671 shipped",
        "Your order 98765432 ships today",
        "SKU 800-555-0199 is out of stock",
        "part AB-415-555-2671-X",
        "Release v1.2.3.4 and version 10.0.19045.3803 and build 2.1.0.7",
        "Python 3.11.7, semver 1.2.3",
        "at 2024-01-15T10:30:00Z and 2024-01-15 10:30:45.123 epoch 1705314600",
        "on 15.01.2024, 01/15/2024, 12:30:45, 20240115",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "run f47ac10b-58cc-4372-a567-0e02b2c3d479 finished",
        "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2 and 9783161484100",
        "run 4111111111111112 and 5555555555554445",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "std::vector<int> and a::b and 12:30:45 and MAC 00:1A:2B:3C:4D:5E",
        "@decorator and user@localhost",
        "compact timestamp 2024011512304512",
        "totals: 1,234,567.89 and 12.5% and 3.14159",
        "httpx.ConnectTimeout: timed out after 30.000123 seconds",
        "San Francisco, CA 94103-1234",
        "Meeting ID: 845 1234 5678",
        '"integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17="',
        "image: ghcr.io/org/app@sha256:4bcff63911fcb4448bd4fdacec207030997caf25e9bea4045fa6c8c",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.6099.109 Safari/537.36",
        "The model has 7241748480 parameters and 15000000000000 tokens, seed 1234567890",
        "EAN 4006381333931, UPC 036000291452, ISBN 978-0-306-40615-7",
    ],
)
def test_look_alikes_are_not_pii(detector: PIIDetector, text: str) -> None:
    assert found(detector, text) == []


def test_findings_sorted_and_non_overlapping(detector: PIIDetector) -> None:
    text = "Mail a@b.com, call +44 20 7946 0958, card 4111 1111 1111 1111, ip 8.8.8.8"
    spans = [(f.start, f.end) for f in detector.find(text)]
    assert spans == sorted(spans)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert [e for e, _ in found(detector, text)] == ["email", "phone", "credit_card", "ip_address"]


def test_entity_selection() -> None:
    d = PIIDetector(["email"])
    assert found(d, "a@b.com +44 20 7946 0958") == [("email", "a@b.com")]
    with pytest.raises(ValueError, match="unknown PII entities"):
        PIIDetector(["emails"])


def test_phone_regions_restrict_national_numbers() -> None:
    us_only = PIIDetector(["phone"], phone_regions=["US"])
    assert found(us_only, "call 020 7946 0958") == []
    assert found(us_only, "call +44 20 7946 0958") == [("phone", "+44 20 7946 0958")]


def test_context_words_stop_at_the_sentence(detector: PIIDetector) -> None:
    text = "Close the case. Card number: 2305049973282416"
    assert found(detector, text) == [("credit_card", "2305049973282416")]
    assert found(detector, "Tel. 4155552671") == [("phone", "4155552671")]


class _FakeResult:
    def __init__(self, entity_type: str, start: int, end: int) -> None:
        self.entity_type, self.start, self.end, self.score = entity_type, start, end, 0.85


class _FakeAnalyzer:
    def analyze(self, text: str, language: str, entities: list[str]) -> list[_FakeResult]:
        assert language == "en" and sorted(entities) == ["LOCATION", "PERSON"]
        return [_FakeResult("PERSON", 0, 8), _FakeResult("LOCATION", 19, 25)]


def test_presidio_plug_in_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("presidio_analyzer")
    fake.__spec__ = importlib.machinery.ModuleSpec("presidio_analyzer", None)
    fake.AnalyzerEngine = _FakeAnalyzer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "presidio_analyzer", fake)
    d = PIIDetector()
    assert {"person", "address"} <= d.entities
    text = "Jane Doe lives in  Berlin, mail j@d.de"
    assert found(d, text) == [("person", "Jane Doe"), ("address", "Berlin"), ("email", "j@d.de")]


def test_presidio_absent_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import fails
    assert PIIDetector().entities == frozenset(STRUCTURED_ENTITIES)
    assert found(PIIDetector(["person", "email"]), "Jane Doe, j@d.de") == [("email", "j@d.de")]


# E-mails and IPv6 addresses are searched only around "@" and ":" (in the runs of the
# characters they can hold), IBANs with the look-behind after the first letter, numeric
# runs with an ASCII pattern on ASCII text: each must find what a plain scan finds.
TRICKY = [
    "a@b@c.com x@y.z@w.org a.@b.co _a@b.io -x@y.io %a@b.io a@b.c0m a@-b.com",
    "mail:bob@example.org;carol@example.org.,dave@example.org-x eve@example.org.uk.",
    "@@ a@ @b.com a@@b.com first.last+tag@sub-domain.example.co.uk",
    "x" * 70 + "@example.com " + "y@" + "z" * 70 + ".com",
    "2001:db8::1 fe80::1%eth0 ::ffff:192.0.2.1 12:30:45 a:b:c Note: see: here ::",
    "dead:beef:cafe::1/64, [2001:db8::2]:443 \u0661:\u0662:\u0663 1::2::3 :::: 2001:db8::2:1.",
    "DE89 3704 0044 0532 0130 00 XDE89370400440532013000 GB82WEST12345698765432",
    "_GB82WEST12345698765432 GB82 WEST 1234 5698 7654 32EUR",
    "call +1 (415) 555-2671, 4111-1111-1111-1111 or 123-45-6789 at 10.0.0.1 (x) + 12",
]


OLD_IBAN = r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"


def spans(matches: Iterable[re.Match[str]]) -> list[tuple[int, int]]:
    return [m.span() for m in matches]


@pytest.mark.parametrize("text", TRICKY)
def test_local_searches_find_what_a_scan_of_the_whole_text_finds(text: str) -> None:
    at_signs = pii._runs_with(text, "@", pii._EMAIL_CHARS)
    assert spans(pii._within(pii._EMAIL, text, at_signs)) == spans(pii._EMAIL.finditer(text))
    colons = pii._runs_with(text, ":", pii._IPV6_CHARS)
    two = [(s, e) for s, e in colons if text.count(":", s, e) > 1]
    whole = spans(pii._IPV6.finditer(text))
    assert spans(pii._within(pii._IPV6, text, colons)) == spans(pii._within(pii._IPV6, text, two))
    assert spans(pii._within(pii._IPV6, text, two)) == whole
    assert spans(pii._IBAN.finditer(text)) == spans(re.finditer(OLD_IBAN, text))
    numeric = pii._NUMERIC_RUN.finditer(text)
    with_digits = [m.span() for m in numeric if any(c.isdigit() for c in m.group())]
    assert pii._numeric_runs(text) == with_digits


def test_emails_and_ipv6_around_their_marks(detector: PIIDetector) -> None:
    text = "a@b@c.com, x.y@ex.org. Host 2001:db8::1 at 12:30:45 (note: fine)"
    assert found(detector, text) == [
        ("email", "b@c.com"),
        ("email", "x.y@ex.org"),
        ("ip_address", "2001:db8::1"),
    ]
