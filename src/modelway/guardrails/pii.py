"""Structured PII detection: e-mail, phone, payment card, IBAN, US SSN and IP address.

A cheap regex finds candidates; validation (phone metadata, Luhn and issuer prefix, mod-97,
SSN ranges, ``ipaddress``) and context keep out look-alikes: order numbers, versions,
dates and timestamps, UUIDs, ISBNs, ZIP+4 codes, decimals. Names and addresses come from
Microsoft Presidio when ``presidio_analyzer`` imports and its spaCy model loads; otherwise
they are silently absent (modelway does not install Presidio).

- phone: ``PhoneNumberMatcher`` (leniency VALID) on each digit-run candidate, region by
  region (``phone_regions``); a candidate that is "+" and digit groups split by single
  spaces, dashes or dots is parsed and validated directly, which finds the same number
  (``_PLAIN_INTERNATIONAL``). Accepted: ``+``/``00`` international form; a national form
  grouped by spaces, dashes, dots or parentheses; a bare run right after a phone word
  ("call", "tel"). Not after "order", "invoice", "sku", "id", "#"; not date/IP/SSN shapes.
- credit_card: 13-19 digits, one kind of separator, a known IIN with its lengths, Luhn; a
  bare run after an order word or starting with a YYYYMMDD date is skipped.
- us_ssn: AAA-GG-SSSS / AAA GG SSSS in valid ranges; a bare 9-digit run only after "SSN".
- ip_address: an IPv4 after "v", "version", "release", "build", ... is a version and is
  skipped; a bare "1.2.3.4" is reported (it is a valid address). Private, loopback and
  link-local addresses are reported unless ``include_private_ips=False``.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from datetime import date
from typing import Any

from phonenumbers import (
    CountryCodeSource,
    Leniency,
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberMatcher,
    is_valid_number,
    is_valid_number_for_region,
    parse,
    region_codes_for_country_code,
)
from stdnum import iban as stdnum_iban
from stdnum import isbn

from modelway.guardrails.anonymizer import select_findings
from modelway.guardrails.findings import Finding

STRUCTURED_ENTITIES = ("email", "phone", "credit_card", "iban", "us_ssn", "ip_address")
NER_ENTITIES = {"PERSON": "person", "LOCATION": "address"}  # Presidio type -> our entity
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU", "BR")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])"
)
_PHONE_CANDIDATE = re.compile(r"(?<![\w+])(?:\(?\+ ?)?\(?\d[\d ().\-/]{5,24}\d(?!\d)")
_CARD = re.compile(r"(?<![\w.+\-/])\d(?:[ -]?\d){12,18}(?!\w|[-.]\d)")
# "(?<!\w)[A-Z]{2}...", with the look-behind after the first letter so that `re` can skip
# ahead to an upper-case letter instead of trying the look-behind at every position.
_IBAN = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w\-.])(\d{3})([- ])(\d{2})\2(\d{4})(?!\w|[-.]\d)")
_SSN_BARE = re.compile(r"(?<![\w\-.])(\d{3})(\d{2})(\d{4})(?!\w|[-.]\d)")
_SSN_CONTEXT = re.compile(r"\b(?:ssn|ss#|social security)\b")
# Every character a card, SSN, IPv4 or phone match can hold: those patterns only match
# inside such a run, so they are run there alone rather than over the whole text.
_NUMERIC_RUN = re.compile(r"[\d+(][\d .\-/()+]*")
# ASCII text mapped to b"0" (a digit), b"1" ("+", "(": they may start a run), b"2" (" .-/)":
# they only continue one) and b"x", where the runs holding a digit are found by `bytes.find`
# from each digit rather than by a regex search that pays per position.
_NUMERIC_MARKS = bytes(
    48 if chr(i) in "0123456789" else 49 if chr(i) in "+(" else 50 if chr(i) in " .-/)" else 120
    for i in range(256)
)
# Every character an e-mail match (or an IPv6 one) can hold: matches lie inside runs of
# them that contain "@" (or two ":"), which `_runs_with` finds from those characters.
_EMAIL_CHARS = re.compile(r"[A-Za-z0-9._%+@-]*")
_IPV6_CHARS = re.compile(r"[\dA-Fa-f:.]*")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:]|\.\d)"
)
_DATE_OR_IP = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,3}(?:\.\d{1,3}){3}"
)
_WORDS = re.compile(r"[^\W\d_]+|#")
_CLAUSE_BREAK = re.compile(r"[\d,;!?\n]|\.\s+(?=[A-Z])")  # digits, punctuation, ". Next"
_GROUPED = re.compile(r"\d[ .\-/()]+\d")  # digits split by separators
# "+" and digit groups split by one space, dash or dot, within the matcher's limits (17
# digits a group, 18 groups). On such a candidate the matcher's first step is parsing and
# verifying the whole of it (its date, time-stamp, bracket, page-number and neighbour
# checks cannot apply; there is no "x" for the extension check; a number parsed from "+"
# needs no national prefix), so a valid whole is its only match: that parse and
# `is_valid_number` alone find it at a third less of the matcher's cost.
_PLAIN_INTERNATIONAL = re.compile(r"\+[0-9]{1,17}(?:[ .\-][0-9]{1,17}){0,17}")
_TIME_BEFORE = re.compile(r"\d:")
_CONTINUED = re.compile(r"[-/.:]?\w")
_NOT_PHONE_SHAPE = re.compile(  # SSN, US ZIP+4, a decimal number
    r"\d{3}([- ])\d{2}\1\d{4}|\d{5}-\d{4}|\d+[.,]\d+"
)

_PHONE_WORDS = {
    "phone", "tel", "telephone", "call", "calling", "mobile", "cell", "cellphone", "fax",
    "whatsapp", "sms", "text", "ring", "reach", "dial", "contact", "mob", "telefon", "handy",
    "téléphone", "portable",
}  # fmt: skip
_ORDER_WORDS = {
    "order", "invoice", "sku", "isbn", "ref", "reference", "tracking", "serial", "part",
    "model", "ticket", "item", "product", "id", "version", "build", "po", "batch", "lot",
    "case", "receipt", "transaction", "confirmation", "#",
}  # fmt: skip
_VERSION_WORDS = {
    "v", "ver", "version", "release", "build", "rev", "revision", "firmware", "patch", "tag",
}  # fmt: skip


def _words_before(text: str, start: int, n: int = 3) -> list[str]:
    """The last ``n`` words before ``start`` in the same clause."""
    window = _CLAUSE_BREAK.split(text[max(0, start - 40) : start])[-1]
    return [w.lower() for w in _WORDS.findall(window)[-n:]]


def luhn_ok(digits: str) -> bool:
    """True when a string of digits passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _issuer_ok(d: str) -> bool:
    """Known issuer prefix (IIN) with a length that issuer uses."""
    n, p2, p3, p4, p6 = len(d), int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720 or 2200 <= p4 <= 2204:  # Mastercard, Mir
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589 or p2 in (62, 81):  # JCB, UnionPay
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095:  # Diners Club
        return 14 <= n <= 19
    return p2 in (50, 56, 57, 58, 63, 67)  # Maestro (13-19 by the regex)


def _starts_with_date(d: str) -> bool:
    try:
        return 1990 <= int(d[:4]) <= 2039 and bool(date(int(d[:4]), int(d[4:6]), int(d[6:8])))
    except ValueError:
        return False


def _card_ok(text: str, start: int, digits: str, separated: bool) -> bool:
    if not (13 <= len(digits) <= 19 and _issuer_ok(digits) and luhn_ok(digits)):
        return False
    if separated:
        return True
    return not _starts_with_date(digits) and not set(_words_before(text, start)) & _ORDER_WORDS


def _looks_like_phone(text: str, start: int, raw: str) -> bool:
    """International form, or a national one grouped as phone numbers are or after a phone
    word; not a date, IP, SSN or ISBN shape, and not after "order", "#", ...."""
    if raw.lstrip("(").startswith(("+", "00")):
        return True
    if sum(c.isdigit() for c in raw) < 7 or _DATE_OR_IP.match(raw):
        return False
    if _NOT_PHONE_SHAPE.fullmatch(raw):  # SSN, ZIP+4, decimal
        return False
    if raw.count("-") >= 3 and isbn.is_valid(raw):  # ISBN-10 such as 0-306-40615-2
        return False
    words = set(_words_before(text, start))
    if words & _PHONE_WORDS:
        return True
    return not words & _ORDER_WORDS and bool(_GROUPED.search(raw))


def _phone_plausible(text: str, start: int, end: int) -> bool:
    """Is this valid number written as a phone number, not inside a longer code or time?"""
    before, after = text[start - 1 : start], text[end : end + 2]
    if before in ("-", "/", "#", ".") or _TIME_BEFORE.fullmatch(text, max(0, start - 2), start):
        return False  # "AB-415-555-2671", "10:08.161699"
    if _CONTINUED.match(after):
        return False  # "555-2671-X", "... 10:30"
    return _looks_like_phone(text, start, text[start:end])


def _valid(number: PhoneNumber) -> bool:
    """``is_valid_number``. That one takes the first region of the number's country code
    it is valid for (where leading digits do not tell the region), then checks it again for
    that region; a number valid for the first region is decided here by one check."""
    regions = region_codes_for_country_code(number.country_code or 0)
    if len(regions) > 1:
        first = PhoneMetadata.metadata_for_region(regions[0], None)
        by_digits = first is None or first.leading_digits is not None
        if not by_digits and is_valid_number_for_region(number, regions[0]):
            return True
    return is_valid_number(number)


def _matcher_spans(candidate: str, region: str) -> list[tuple[int, int]]:
    """Where ``PhoneNumberMatcher`` (leniency VALID) finds numbers in ``candidate``."""
    if _PLAIN_INTERNATIONAL.fullmatch(candidate):
        try:
            number = parse(candidate, region, keep_raw_input=True)
        except NumberParseException:
            number = None
        if (
            number is not None
            and number.country_code_source != CountryCodeSource.FROM_DEFAULT_COUNTRY
            and _valid(number)
        ):
            return [(0, len(candidate))]
    matcher = PhoneNumberMatcher(candidate, region, leniency=Leniency.VALID)
    return [(m.start, m.end) for m in matcher]


def _phone_matches(text: str, cand: re.Match[str], region: str) -> Iterator[Finding]:
    for start, end in _matcher_spans(cand.group(), region):
        start, end = cand.start() + start, cand.start() + end
        if text[start] == "(" and ")" not in text[start:end]:
            start += 1  # an unclosed parenthesis before the number: "Ann (020 7946 0958)"
        if _phone_plausible(text, start, end):
            yield Finding("phone", start, end, rule=f"phone_{region.lower()}")


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


class _Presidio:
    """Person names and addresses via Presidio, loaded on first use; absent if unavailable."""

    def __init__(self, entities: Collection[str]) -> None:
        self._types = [t for t, ours in NER_ENTITIES.items() if ours in entities]
        self._engine: Any = None
        self._failed = False
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._engine is None and not self._failed:
                try:
                    module = importlib.import_module("presidio_analyzer")
                    self._engine = module.AnalyzerEngine()
                except Exception:  # no spaCy model etc.: the entities are simply absent
                    self._failed = True
            return self._engine

    def find(self, text: str) -> list[Finding]:
        engine = self._load()
        if engine is None or not self._types:
            return []
        results = engine.analyze(text=text, language="en", entities=self._types)
        return [
            Finding(NER_ENTITIES[r.entity_type], r.start, r.end, float(r.score), "presidio")
            for r in results
        ]


class PIIDetector:
    """Finds structured PII (and names/addresses when Presidio is installed) in text."""

    def __init__(
        self,
        entities: Collection[str] | None = None,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        *,
        include_private_ips: bool = True,
    ) -> None:
        known = set(STRUCTURED_ENTITIES) | set(NER_ENTITIES.values())
        if entities is None:
            wanted = set(STRUCTURED_ENTITIES)
            if importlib.util.find_spec("presidio_analyzer") is not None:
                wanted |= set(NER_ENTITIES.values())
        else:
            wanted = set(entities)
            if unknown := wanted - known:
                raise ValueError(f"unknown PII entities: {sorted(unknown)}; known: {sorted(known)}")
        if "phone" in wanted and not phone_regions:
            raise ValueError("phone detection needs at least one region in phone_regions")
        self.entities = frozenset(wanted)
        self._regions = tuple(r.upper() for r in phone_regions)
        self._include_private_ips = include_private_ips
        self._ner = _Presidio(wanted) if wanted & set(NER_ENTITIES.values()) else None

    def find(self, text: str) -> list[Finding]:
        """All findings in ``text``, non-overlapping, ordered by start."""
        found: list[Finding] = []
        runs = _numeric_runs(text)
        for entity, finder in (
            ("email", self._emails),
            ("credit_card", self._cards),
            ("iban", self._ibans),
            ("us_ssn", self._ssns),
            ("ip_address", self._ips),
        ):
            if entity in self.entities:
                found.extend(finder(text, runs))
        if "phone" in self.entities:  # last: digit runs already taken are not phone candidates
            found.extend(self._phones(text, [(f.start, f.end) for f in found], runs))
        if self._ner is not None:
            found.extend(self._ner.find(text))
        return select_findings(found)

    def _emails(self, text: str, runs: list[tuple[int, int]]) -> Iterator[Finding]:
        for m in _within(_EMAIL, text, _runs_with(text, "@", _EMAIL_CHARS)):
            yield Finding("email", m.start(), m.end(), rule="email")

    def _phones(
        self, text: str, taken: list[tuple[int, int]], runs: list[tuple[int, int]]
    ) -> Iterator[Finding]:
        for s, e in taken:  # digits already found as cards, IBANs, ... are no candidates
            text = text[:s] + "\0" * (e - s) + text[e:]
        for cand in _within(_PHONE_CANDIDATE, text, runs):
            if not _looks_like_phone(text, cand.start(), cand.group()):
                continue
            best: list[Finding] = []
            for region in self._regions:  # the region whose numbers cover most of it
                found = list(_phone_matches(text, cand, region))
                if sum(f.end - f.start for f in found) > sum(f.end - f.start for f in best):
                    best = found
                covered = sum(f.end - f.start for f in best) >= len(cand.group().strip("()"))
                if covered or cand.group().lstrip("(").startswith("+"):  # region-independent
                    break
            yield from best

    def _cards(self, text: str, runs: list[tuple[int, int]]) -> Iterator[Finding]:
        for m in _within(_CARD, text, runs):
            raw = m.group()
            if other := set(re.findall(r"[ -]", raw)) - {raw[4:5]}:  # cut at a second separator
                raw = raw[: min(raw.index(c) for c in other)]
            groups = re.split(r"[ -]", raw)
            if len(groups) > 1 and (len(groups[0]) != 4 or max(map(len, groups)) > 6):
                continue
            for k in range(len(groups), 0, -1):  # longest valid prefix of the groups
                digits = "".join(groups[:k])
                if _card_ok(text, m.start(), digits, len(groups) > 1):
                    end = m.start() + len(" ".join(groups[:k]))
                    yield Finding("credit_card", m.start(), end, rule="luhn")
                    break

    def _ibans(self, text: str, runs: list[tuple[int, int]]) -> Iterator[Finding]:
        for m in _IBAN.finditer(text):
            parts = m.group().split(" ")
            for k in range(len(parts), 0, -1):  # drop trailing words such as "EUR"
                candidate = " ".join(parts[:k])
                if len(candidate.replace(" ", "")) >= 15 and stdnum_iban.is_valid(candidate):
                    yield Finding("iban", m.start(), m.start() + len(candidate), rule="mod97")
                    break

    def _ssns(self, text: str, runs: list[tuple[int, int]]) -> Iterator[Finding]:
        for m in _within(_SSN, text, runs):
            if _ssn_ok(m.group(1), m.group(3), m.group(4)):
                yield Finding("us_ssn", m.start(), m.end(), rule="ssn")
        for m in _within(_SSN_BARE, text, runs):
            window = _CLAUSE_BREAK.split(text[max(0, m.start() - 30) : m.start()])[-1].lower()
            if _ssn_ok(*m.groups()) and _SSN_CONTEXT.search(window):
                yield Finding("us_ssn", m.start(), m.end(), score=0.8, rule="ssn_context")

    def _ips(self, text: str, runs: list[tuple[int, int]]) -> Iterator[Finding]:
        for m in _within(_IPV4, text, runs):
            if not set(_words_before(text, m.start(), 2)) & _VERSION_WORDS:
                yield from self._ip_finding(m, "ipv4")
        colons = [
            (s, e) for s, e in _runs_with(text, ":", _IPV6_CHARS) if text.count(":", s, e) > 1
        ]
        for m in _within(_IPV6, text, colons):
            if any(c.isdigit() for c in m.group()):
                yield from self._ip_finding(m, "ipv6")

    def _ip_finding(self, m: re.Match[str], rule: str) -> Iterator[Finding]:
        try:
            addr = ipaddress.ip_address(m.group())
        except ValueError:
            return
        internal = addr.is_private or addr.is_loopback or addr.is_link_local
        if self._include_private_ips or not (internal or addr.is_unspecified):
            yield Finding("ip_address", m.start(), m.end(), rule=rule)


def _numeric_runs(text: str) -> list[tuple[int, int]]:
    """The matches of ``_NUMERIC_RUN`` that hold a digit, as (start, end)."""
    if not text.isascii():
        matches = _NUMERIC_RUN.finditer(text)
        return [m.span() for m in matches if any(c.isdigit() for c in m.group())]
    marks = text.encode("ascii").translate(_NUMERIC_MARKS)
    runs = []
    digit = marks.find(b"0")
    while digit != -1:
        start = marks.rfind(b"x", 0, digit) + 1
        while marks[start] == 50:  # a separator does not start a run
            start += 1
        end = marks.find(b"x", digit)
        end = len(marks) if end == -1 else end
        runs.append((start, end))
        digit = marks.find(b"0", end)
    return runs


def _runs_with(text: str, mark: str, chars: re.Pattern[str]) -> list[tuple[int, int]]:
    """The maximal runs of the characters ``chars`` matches (``mark`` among them) that
    contain ``mark``. Each is found from a ``mark`` outwards: forwards by matching ``chars``
    in the text, backwards by matching it in the reversed text."""
    i = text.find(mark)
    if i == -1:
        return []
    n, backwards = len(text), text[::-1]
    runs = []
    while i != -1:
        before, after = chars.match(backwards, n - 1 - i), chars.match(text, i)
        assert before is not None and after is not None  # "[...]*" matches anywhere
        runs.append((n - before.end(), after.end()))
        i = text.find(mark, after.end())
    return runs


def _within(
    pattern: re.Pattern[str], text: str, runs: list[tuple[int, int]]
) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for a pattern whose matches lie inside the given runs
    (numeric runs, or those of ``_runs_with``): each run is searched alone. The search
    reaches two characters past a run so that look-aheads see the real text (look-behinds
    see it anyway); a match must start in the run, so none is found twice."""
    for start, end in runs:
        for m in pattern.finditer(text, start, min(len(text), end + 2)):
            if m.start() < end:
                yield m
