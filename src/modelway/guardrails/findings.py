"""What a detector reports: a kind of sensitive or hostile content at a place in a text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    # "email", "phone", "credit_card", "iban", "us_ssn", "ip_address", "person", "address",
    # "secret" (kind in `rule`), "injection" (matched family in `rule`)
    entity: str
    start: int
    end: int
    score: float = 1.0
    rule: str | None = None  # which pattern or family matched, e.g. "openai_key", "dan"

    def text_of(self, text: str) -> str:
        return text[self.start : self.end]
