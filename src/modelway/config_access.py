"""The config of access control, limits, budgets and accounting: who may call, how
fast, how much they may spend, and what tokens cost. Imports nothing of modelway."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitSpec(Strict):
    rpm: int | None = Field(None, ge=1, description="Requests per minute at most.")
    tpm: int | None = Field(None, ge=1, description="Tokens (prompt + max output) per minute.")
    max_parallel: int | None = Field(None, ge=1, description="Concurrent requests at most.")


class BudgetSpec(Strict):
    limit_usd: Decimal = Field(gt=0)
    period: Literal["day", "week", "month", "total"] = "month"
    # hard: refuse (429 insufficient_quota) before the call; soft: record an alert event.
    mode: Literal["hard", "soft"] = "hard"


class AuthConfig(Strict):
    # Setting a master key turns authentication on: every /v1 call then needs a key.
    master_key: SecretStr | None = None
    refresh_seconds: float = Field(
        0.5, gt=0, le=1, description="How often each replica re-reads changed keys and teams."
    )

    @field_validator("master_key")
    @classmethod
    def _master_key_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class LimitsConfig(Strict):
    # Redis unreachable: "open" lets requests through (logged), "closed" answers 503.
    on_redis_failure: Literal["open", "closed"] = "open"
    default_output_tokens: int = Field(
        256, ge=0, description="Tokens reserved for the answer when a request sets no max."
    )


class BudgetsConfig(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    global_: list[BudgetSpec] = Field(default_factory=list, alias="global")
    on_redis_failure: Literal["open", "closed"] = "closed"
    stream_step_tokens: int = Field(
        512, ge=1, description="A stream with no max_tokens reserves budget this many at a time."
    )


class PriceSpec(Strict):
    """USD per million tokens."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(None, ge=0)


class AccountingConfig(Strict):
    # Keys are "provider/model" or a bare model (or model group) name; they override the
    # shipped table, e.g. to give the embedded model a notional price.
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    ledger_batch_size: int = Field(500, ge=1)
    ledger_flush_seconds: float = Field(0.5, gt=0)
