"""Placeholders, StreamRestorer and StreamRedactor, including every chunk boundary."""

from __future__ import annotations

import re

import pytest

from modelway.guardrails.anonymizer import (
    Placeholders,
    StreamRedactor,
    StreamRestorer,
    select_findings,
)
from modelway.guardrails.findings import Finding
from modelway.guardrails.pii import PIIDetector
from modelway.guardrails.secrets import SecretsDetector

PII = PIIDetector(["email", "phone", "credit_card", "iban", "us_ssn", "ip_address"])
SECRETS = SecretsDetector()


def detect(text: str) -> list[Finding]:
    return PII.find(text) + SECRETS.find(text)


TEXT = "Mail ann@example.com or bob@example.org, again ann@example.com; call +44 20 7946 0958."


def test_redact_numbers_per_entity_and_value() -> None:
    p = Placeholders()
    out = p.redact(TEXT, detect(TEXT))
    assert out == "Mail <EMAIL_1> or <EMAIL_2>, again <EMAIL_1>; call <PHONE_1>."
    assert p.restore(out) == out  # redacted values are not kept
    # the numbering carries over to the next text of the same request
    assert p.redact("from bob@example.org", detect("from bob@example.org")) == "from <EMAIL_2>"


def test_anonymize_restore_round_trip() -> None:
    p = Placeholders()
    text = TEXT + " Key sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" + " IP 8.8.8.8"
    out = p.anonymize(text, detect(text))
    assert "ann@" not in out and "7946" not in out and "sk-proj" not in out
    assert re.findall(r"<[A-Z_]+_\d>", out) == [
        "<EMAIL_1>", "<EMAIL_2>", "<EMAIL_1>", "<PHONE_1>", "<SECRET_1>", "<IP_ADDRESS_1>",
    ]  # fmt: skip
    assert p.restore(out) == text
    reply = "I wrote to <EMAIL_2> and <EMAIL_1>; <EMAIL_9> and <PHONE> stay; <phone_1> too."
    assert p.restore(reply) == (
        "I wrote to bob@example.org and ann@example.com; <EMAIL_9> and <PHONE> stay; <phone_1> too."
    )


def test_anonymize_and_redact_in_one_pass() -> None:
    p = Placeholders()
    text = "a@b.com and key ghp_" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d"
    emails = [f for f in detect(text) if f.entity == "email"]
    secrets = [f for f in detect(text) if f.entity == "secret"]
    assert not p.used
    out = p.apply(text, emails, secrets)
    assert out == "<EMAIL_1> and key <SECRET_1>"
    assert p.used
    assert p.restore(out) == "a@b.com and key <SECRET_1>"


def test_shared_placeholders_keep_redacted_output_apart_from_restored_input() -> None:
    p = Placeholders()
    p.anonymize("from a@b.com", detect("from a@b.com"))  # the prompt: <EMAIL_1>
    redactor, restorer = StreamRedactor(detect, placeholders=p), StreamRestorer(p)
    answer = "Write to <EMAIL_1> and cc x@y.org, thanks a lot for everything today, bye."
    out = restorer.feed(redactor.feed(answer) + redactor.flush()) + restorer.flush()
    assert out == "Write to a@b.com and cc <EMAIL_2>, thanks a lot for everything today, bye."


def test_overlaps_keep_the_longest_then_priority() -> None:
    text = "contact john.smith@example.com"
    findings = [
        Finding("person", 8, 18),  # "john.smith" inside the e-mail
        Finding("email", 8, 30),
        Finding("ip_address", 0, 4),
        Finding("secret", 0, 4, rule="x"),  # same span as ip_address: priority wins
        Finding("email", 3, 2),  # empty/invalid spans are ignored
    ]
    kept = select_findings(findings, len(text))
    assert [(f.entity, f.start, f.end) for f in kept] == [("secret", 0, 4), ("email", 8, 30)]
    assert Placeholders().redact(text, findings) == "<SECRET_1>act <EMAIL_1>"


def test_entity_names_become_tags() -> None:
    p = Placeholders()
    assert p.redact("4111 1111 1111 1111", [Finding("credit_card", 0, 19)]) == "<CREDIT_CARD_1>"
    assert p.tag_for("us_ssn", "x") == "<US_SSN_1>"
    assert p.tag_for("us_ssn", "x") == "<US_SSN_1>"
    assert p.tag_for("us_ssn", "y") == "<US_SSN_2>"


def anonymized() -> tuple[Placeholders, str, str]:
    p = Placeholders()
    prompt = "a@b.com, c@d.org, +1 415 555 2671, e@f.net, g@h.io, i@j.de, k@l.fr, m@n.es, " * 2
    p.anonymize(prompt, detect(prompt))
    extra = "o@p.it q@r.uk s@t.us u@v.ca w@x.pt"
    p.anonymize(extra, detect(extra))  # <EMAIL_1> .. <EMAIL_12>: "<EMAIL_1" may become "_10"
    answer = "Hi <EMAIL_1>! Call <PHONE_1> or write <EMAIL_12>, not <EMAIL_99> or <EMAIL_1 >.<"
    return p, answer, p.restore(answer)


TAGS = [f"<EMAIL_{n}>" for n in range(1, 13)] + ["<PHONE_1>"]


def test_stream_restorer_every_two_chunk_split() -> None:
    p, answer, expected = anonymized()
    assert "a@b.com" in expected and "w@x.pt" in expected and "<EMAIL_99>" in expected
    for i in range(len(answer) + 1):
        r = StreamRestorer(p)
        parts = [r.feed(answer[:i]), r.feed(answer[i:]), r.flush()]
        assert "".join(parts) == expected, i


def test_stream_restorer_every_three_chunk_split() -> None:
    p, answer, expected = anonymized()
    n = len(answer)
    for i in range(n + 1):
        for j in range(i, n + 1):
            r = StreamRestorer(p)
            parts = [r.feed(answer[:i]), r.feed(answer[i:j]), r.feed(answer[j:]), r.flush()]
            assert "".join(parts) == expected, (i, j)
            for part in parts[:3]:  # no emitted piece ends in the start of a placeholder
                assert not any(part.endswith(t[:k]) for t in TAGS for k in range(1, len(t))), (i, j)


def test_stream_restorer_holds_only_a_possible_placeholder() -> None:
    p, _, _ = anonymized()
    r = StreamRestorer(p)
    assert r.feed("call <EMA") == "call "
    assert r.feed("IL_1> now") == "a@b.com now"
    assert r.feed("a < b and <EMAIL_1") == "a < b and "  # could still become <EMAIL_10>
    assert r.feed("0>") == "s@t.us"
    assert r.feed("x <nope") == "x <nope"
    assert r.feed(" <EMAIL_") == " "
    assert r.flush() == "<EMAIL_"
    assert StreamRestorer(Placeholders()).feed("<EMA") == "<EMA"  # nothing anonymised


STREAM = (
    "Sure! You can reach our support team at +1 415 555 2671 or by e-mail at help@example.com; "
    "the key is sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2n - keep it safe. "
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00. Bye!"
)
SECRET_PARTS = ["415", "555", "2671", "help@", "example.com", "sk-proj", "Ab3dEf", "4111", "DE89",
                "3704", "0130"]  # fmt: skip


def test_stream_redactor_phone_split_everywhere_never_leaks_digits() -> None:
    text = "Please call me at +1 415 555 2671 tomorrow, after lunch, if that works for you."
    for i in range(len(text) + 1):
        r = StreamRedactor(detect)
        out = r.feed(text[:i]) + r.feed(text[i:]) + r.flush()
        assert out == "Please call me at <PHONE_1> tomorrow, after lunch, if that works for you."
    # and split at every pair of positions around the number
    start = text.index("+1")
    for i in range(start - 2, start + 17):
        for j in range(i, start + 17):
            r = StreamRedactor(detect, hold_back=32)
            pieces = [r.feed(text[:i]), r.feed(text[i:j]), r.feed(text[j:]), r.flush()]
            assert not re.search(r"\d", "".join(pieces).replace("<PHONE_1>", "")), (i, j)


def test_stream_redactor_split_at_every_position() -> None:
    for i in range(len(STREAM) + 1):
        r = StreamRedactor(detect)
        out = r.feed(STREAM[:i]) + r.feed(STREAM[i:]) + r.flush()
        assert not [s for s in SECRET_PARTS if s in out], i
        assert out.startswith("Sure! You can reach our support team at <PHONE_1> or by e-mail")


def test_stream_redactor_char_by_char_never_emits_a_prefix() -> None:
    r = StreamRedactor(detect)
    pieces = [r.feed(ch) for ch in STREAM]
    pieces.append(r.flush())
    out = "".join(pieces)
    assert out == (
        "Sure! You can reach our support team at <PHONE_1> or by e-mail at <EMAIL_1>; the key is "
        "<SECRET_1> - keep it safe. Card <CREDIT_CARD_1>, IBAN <IBAN_1>. Bye!"
    )
    emitted = "".join(pieces[:-1])
    assert not emitted.endswith(("sk", "sk-", "+1", "+1 4", "help"))
    assert sum(1 for p in pieces if p) > 10  # it does stream, it does not wait for the end


def test_stream_redactor_keeps_context_for_held_values() -> None:
    key = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm"
    text = "config: api_key = " + key + " and the SSN 536904399 follow. " + "x " * 40
    r = StreamRedactor(detect, hold_back=16, context=64)
    out = "".join(r.feed(text[i : i + 3]) for i in range(0, len(text), 3)) + r.flush()
    assert key not in out and "536904399" not in out
    assert "api_key = <SECRET_1>" in out and "SSN <US_SSN_1>" in out


def test_stream_redactor_delay_and_limits() -> None:
    r = StreamRedactor(lambda text: [], hold_back=8)
    assert r.feed("one two three four") == "one two "
    assert r.feed(" five") == "three "
    assert r.flush() == "four five"
    long = StreamRedactor(lambda text: [], hold_back=8, max_hold=100)
    assert long.feed("x" * 150) == "x" * 142  # a huge token is cut once past max_hold
    with pytest.raises(ValueError):
        StreamRedactor(detect, hold_back=10, max_hold=10)
    StreamRedactor(detect, hold_back=4096)  # the default max_hold grows with hold_back


def test_stream_redactor_holds_a_whole_private_key() -> None:
    body = [("MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi" + str(i)) * 2 for i in range(12)]
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END RSA PRIVATE KEY-----"
    text = f"Here is the key you asked for:\n{pem}\nStore it safely, and rotate it soon."
    for size in (1, 7, 64):
        r = StreamRedactor(detect)
        pieces = [r.feed(text[i : i + size]) for i in range(0, len(text), size)]
        out = "".join(pieces) + r.flush()
        assert (
            out
            == "Here is the key you asked for:\n<SECRET_1>\nStore it safely, and rotate it soon."
        )
        assert not any(x in "".join(pieces) for x in ("-----", "MIIE", "BEGIN"))
