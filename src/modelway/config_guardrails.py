"""The `guardrails:` section: named policies of input and output checks, and which
policy applies to which model group (keys and teams name theirs through the admin API)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

InputAction = Literal["block", "redact", "anonymize", "flag", "confidential", "off"]
Role = Literal["system", "user", "assistant", "tool"]
PII_ENTITIES = ("email", "phone", "credit_card", "iban", "us_ssn", "ip_address")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InjectionPolicy(_Strict):
    # flag by default: the classifier's operating point gives ~5% false positives on
    # held-out data and more on ordinary assistant prompts; block once measured on yours.
    action: Literal["block", "flag", "confidential", "off"] = "flag"
    # Score at or above which a message counts as an injection; None: the model's own
    # operating point (chosen for <= 3% false positives on validation data).
    threshold: float | None = Field(None, gt=0, le=1)


class DetectorPolicy(_Strict):
    action: InputAction = "off"
    # Per entity type, an action other than `action` (e.g. block credit cards, redact the rest).
    entities: dict[str, InputAction] = Field(default_factory=dict)


class PIIPolicy(DetectorPolicy):
    # Which entity types are looked for at all.
    detect: list[str] = Field(default_factory=lambda: list(PII_ENTITIES))


def _scanned_roles() -> list[Role]:
    # Indirect injection arrives in tool results and retrieved documents, not only from users.
    return ["user", "tool"]


class InputPolicy(_Strict):
    roles: list[Role] = Field(default_factory=lambda: _scanned_roles())
    max_messages: int | None = Field(500, ge=1)
    max_chars: int | None = Field(1_000_000, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="Estimated (characters / 4).")
    max_images: int | None = Field(20, ge=0)
    unicode: Literal["strip", "reject", "off"] = "strip"
    injection: InjectionPolicy = InjectionPolicy()
    secrets: DetectorPolicy = DetectorPolicy(action="block")
    pii: PIIPolicy = PIIPolicy()


class OutputPolicy(_Strict):
    pii: Literal["redact", "off"] = "off"
    pii_entities: list[str] = Field(default_factory=lambda: list(PII_ENTITIES))
    secrets: Literal["redact", "off"] = "redact"
    moderation: list[str] = Field(default_factory=list, description="Blocked categories.")
    blocked_terms: list[str] = Field(default_factory=list)
    # Markdown images and links, and HTML, to domains outside this list are stripped;
    # None leaves answers as they are.
    allowed_domains: list[str] | None = None
    validate_json: bool = True  # with a json_schema response_format: retry once, then 502
    hold_back_chars: int = Field(64, ge=48, le=4096)


class GuardrailPolicy(_Strict):
    input: InputPolicy = InputPolicy()
    output: OutputPolicy = OutputPolicy()


class GuardrailsConfig(_Strict):
    # Policies by name; "default" applies where nothing else is attached.
    policies: dict[str, GuardrailPolicy] = Field(
        default_factory=lambda: {"default": GuardrailPolicy()}
    )
    default: str | None = "default"
    models: dict[str, str] = Field(
        default_factory=dict, description="Model group name -> policy name."
    )
