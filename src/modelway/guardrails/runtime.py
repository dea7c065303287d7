"""The guardrails of one runtime: its detectors, and which policy a request gets."""

from __future__ import annotations

from dataclasses import dataclass

from modelway.config import Config
from modelway.config_guardrails import (
    DetectorPolicy,
    GuardrailPolicy,
    GuardrailsConfig,
    InjectionPolicy,
    InputPolicy,
    OutputPolicy,
    PIIPolicy,
)
from modelway.guardrails.detectors import Detectors
from modelway.observability.request_metrics import RequestMetrics
from modelway.pipeline.context import RequestContext

# What a request gets when no policy applies to it: nothing checked.
NO_POLICY = GuardrailPolicy(
    input=InputPolicy(
        max_messages=None,
        max_chars=None,
        max_images=None,
        unicode="off",
        injection=InjectionPolicy(action="off"),
        secrets=DetectorPolicy(action="off"),
        pii=PIIPolicy(action="off"),
    ),
    output=OutputPolicy(secrets="off", validate_json=False),
)


@dataclass
class Guardrails:
    config: GuardrailsConfig
    detectors: Detectors
    metrics: RequestMetrics

    @classmethod
    def build(cls, config: Config, metrics: RequestMetrics) -> Guardrails:
        assert config.guardrails is not None
        return cls(config.guardrails, Detectors(), metrics)

    def policy_for(self, ctx: RequestContext) -> GuardrailPolicy:
        """The key's (or its team's) policy, else the model group's, else the default."""
        name = self.policy_name(ctx)
        return self.config.policies.get(name, NO_POLICY) if name is not None else NO_POLICY

    def policy_name(self, ctx: RequestContext) -> str | None:
        c = self.config
        principal = ctx.principal
        return (principal.guardrail_policy if principal is not None else None) or c.models.get(
            ctx.model, c.default
        )

    def named(self, name: str | None) -> GuardrailPolicy | None:
        key = name or self.config.default
        return self.config.policies.get(key) if key is not None else None

    def count(self, action: str) -> None:
        guardrail, _, taken = action.rpartition(":")
        self.metrics.guardrail_action(guardrail or action, taken)
