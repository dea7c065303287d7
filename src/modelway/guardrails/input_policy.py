"""Applying a policy's input checks to one text: hygiene, injection, secrets, PII, each
finding turned into its action. Shared by the input stage and the check endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelway.config_guardrails import InputPolicy
from modelway.guardrails.anonymizer import Placeholders
from modelway.guardrails.detectors import Detectors
from modelway.guardrails.findings import Finding
from modelway.guardrails.unicode_hygiene import clean, hidden_ascii, removable_runs, smuggled

# Stronger actions win when findings of one text call for several.
_STRENGTH: dict[str, int] = {
    "off": 0,
    "flag": 1,
    "confidential": 2,
    "redact": 3,
    "anonymize": 3,
    "block": 4,
}


@dataclass(slots=True)
class Verdict:
    """What the input checks decided for a request, over all its scanned texts."""

    blocked: str | None = None  # the reason, when a finding's action is block
    confidential: bool = False
    actions: list[str] = field(default_factory=list)  # "pii.email:anonymize", ...
    injection_score: float = 0.0
    injection_rules: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if what not in self.actions:
            self.actions.append(what)


class InputChecks:
    def __init__(self, policy: InputPolicy, detectors: Detectors) -> None:
        self.policy = policy
        self._d = detectors

    def text(self, text: str, verdict: Verdict, placeholders: Placeholders) -> str:
        """The text as it may go upstream (cleaned, redacted or anonymised)."""
        p = self.policy
        scanned = text
        if p.unicode != "off":
            # A stray BOM or zero-width space is stripped; tag characters, selector runs and
            # bidi controls (score >= 0.9) are what smuggling looks like.
            if p.unicode == "reject" and any(f.score >= 0.9 for f in smuggled(text)):
                verdict.blocked = "invisible or control characters that can hide instructions"
                verdict.note("unicode:block")
                return text
            runs = removable_runs(text)
            hidden = hidden_ascii(text, runs)  # instructions smuggled in tag characters
            text, removed = clean(text, runs)
            if removed:
                verdict.note("unicode:strip")
            scanned = text + "\n" + hidden if hidden else text
        if p.injection.action != "off":
            result = self._d.injection(p.injection.threshold).scan(scanned)
            verdict.injection_score = max(verdict.injection_score, result.score)
            if result.flagged:
                verdict.injection_rules += [
                    r for r in result.rules if r not in verdict.injection_rules
                ]
                self._act(p.injection.action, "injection", verdict)
        anonymise: list[Finding] = []
        redact: list[Finding] = []
        for group, policy in (("secret", p.secrets), ("pii", p.pii)):
            if policy.action == "off" and not policy.entities:
                continue
            detector = self._d.secrets if group == "secret" else self._d.pii(tuple(p.pii.detect))
            for finding in detector.find(text):
                action = (
                    policy.entities.get(finding.rule or "", None) if group == "secret" else None
                )
                action = action or policy.entities.get(finding.entity, policy.action)
                if action == "off":
                    continue
                self._act(action, f"{group}.{finding.entity}", verdict)
                if action == "anonymize":
                    anonymise.append(finding)
                elif action == "redact":
                    redact.append(finding)
        if anonymise or redact:
            text = placeholders.apply(text, anonymise, redact)
        return text

    @staticmethod
    def _act(action: str, what: str, verdict: Verdict) -> None:
        verdict.note(f"{what}:{action}")
        if action == "block" and verdict.blocked is None:
            verdict.blocked = what
        elif action == "confidential":
            verdict.confidential = True
