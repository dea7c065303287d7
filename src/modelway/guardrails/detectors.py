"""The detectors, built once per process and shared by every policy that uses them."""

from __future__ import annotations

from modelway.guardrails.injection import InjectionDetector
from modelway.guardrails.pii import PIIDetector
from modelway.guardrails.secrets import SecretsDetector


class Detectors:
    def __init__(self) -> None:
        self.secrets = SecretsDetector()
        self._pii: dict[tuple[str, ...], PIIDetector] = {}
        self._injection: dict[float | None, InjectionDetector] = {}

    def pii(self, entities: tuple[str, ...]) -> PIIDetector:
        found = self._pii.get(entities)
        if found is None:
            found = self._pii[entities] = PIIDetector(entities)
        return found

    def injection(self, threshold: float | None) -> InjectionDetector:
        found = self._injection.get(threshold)
        if found is None:
            found = self._injection[threshold] = InjectionDetector(threshold)
        return found
