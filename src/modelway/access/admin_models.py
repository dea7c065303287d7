"""The admin API's request bodies (validated strictly) and the views it returns.

Views never carry a key's hash; a key itself appears once, in the answer that
created or rotated it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelway.access.principal import Role
from modelway.config_access import BudgetSpec, LimitSpec
from modelway.store.access_records import KeyRecord, TeamRecord

DataClass = Literal["public", "confidential"]
_NAME = Field(min_length=1, max_length=200)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _models_ok(value: list[str] | None) -> list[str] | None:
    if value is not None and any(not m.strip() for m in value):
        raise ValueError("model patterns must not be empty")
    return value


def _tags_ok(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50 or any(len(k) > 100 or len(v) > 500 for k, v in value.items()):
        raise ValueError("at most 50 tags, names up to 100 and values up to 500 characters")
    return value


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class TeamCreate(_Body):
    name: str = _NAME
    models: list[str] | None = None
    limits: LimitSpec | None = None
    budgets: list[BudgetSpec] | None = None
    key_limits: LimitSpec | None = None
    key_budgets: list[BudgetSpec] | None = None
    data_class: DataClass | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    priority: int | None = Field(None, ge=-100, le=100)
    queue_weight: float | None = Field(None, gt=0, le=1000)
    guardrail_policy: str | None = Field(None, min_length=1, max_length=100)
    cache_policy: str | None = Field(None, min_length=1, max_length=100)

    _check_models = field_validator("models")(_models_ok)
    _check_tags = field_validator("tags")(_tags_ok)


class TeamUpdate(TeamCreate):
    name: str | None = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    tags: dict[str, str] | None = None  # type: ignore[assignment]

    @field_validator("tags")
    @classmethod
    def _check_update_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _tags_ok(value)


class KeyCreate(_Body):
    name: str | None = Field(None, max_length=200)
    team: str | None = Field(None, description="Team id or name; the default team if unset.")
    role: Role = "user"
    models: list[str] | None = None
    limits: LimitSpec | None = None
    budgets: list[BudgetSpec] | None = None
    data_class: DataClass | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    priority: int | None = Field(None, ge=-100, le=100)
    guardrail_policy: str | None = Field(None, min_length=1, max_length=100)
    cache_policy: str | None = Field(None, min_length=1, max_length=100)
    expires_at: datetime | None = None

    _check_models = field_validator("models")(_models_ok)
    _check_tags = field_validator("tags")(_tags_ok)
    _check_expiry = field_validator("expires_at")(_future)


class KeyUpdate(KeyCreate):
    role: Role | None = None  # type: ignore[assignment]
    tags: dict[str, str] | None = None  # type: ignore[assignment]

    @field_validator("tags")
    @classmethod
    def _check_update_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _tags_ok(value)


def record_fields(body: BaseModel, names: set[str]) -> dict[str, Any]:
    """The fields a body set, as JSON-ready values for a record."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(body, name)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_none=True)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            value = [v.model_dump(mode="json") for v in value]
        out[name] = value
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def team_view(team: TeamRecord) -> dict[str, Any]:
    return {
        "id": team.id,
        "object": "team",
        "name": team.name,
        "models": team.models,
        "limits": team.limits,
        "budgets": team.budgets,
        "key_limits": team.key_limits,
        "key_budgets": team.key_budgets,
        "data_class": team.data_class,
        "tags": team.tags,
        "priority": team.priority,
        "queue_weight": team.queue_weight,
        "guardrail_policy": team.guardrail_policy,
        "cache_policy": team.cache_policy,
        "created_at": _iso(team.created_at),
        "updated_at": _iso(team.updated_at),
    }


def key_view(key: KeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "prefix": key.prefix,
        "team_id": key.team_id,
        "role": key.role,
        "models": key.models,
        "limits": key.limits,
        "budgets": key.budgets,
        "data_class": key.data_class,
        "tags": key.tags,
        "priority": key.priority,
        "guardrail_policy": key.guardrail_policy,
        "cache_policy": key.cache_policy,
        "expires_at": _iso(key.expires_at),
        "revoked_at": _iso(key.revoked_at),
        "created_at": _iso(key.created_at),
        "updated_at": _iso(key.updated_at),
    }
