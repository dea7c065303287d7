"""The resolved caller of one request: its key, team, role and the policy they carry."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

Role = Literal["admin", "user", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "user", "viewer")
MASTER_KEY_ID = "master"


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Limits | None:
        if not data:
            return None
        return cls(data.get("rpm"), data.get("tpm"), data.get("max_parallel"))


@dataclass(frozen=True, slots=True)
class BudgetRule:
    scope: Literal["key", "team", "global"]
    owner: str  # the key id, the team id, or "global"
    limit_usd: Decimal
    period: Literal["day", "week", "month", "total"]
    mode: Literal["hard", "soft"]

    @classmethod
    def of(
        cls, scope: Literal["key", "team", "global"], owner: str, data: dict[str, Any]
    ) -> BudgetRule:
        return cls(
            scope,
            owner,
            Decimal(str(data["limit_usd"])),
            data.get("period", "month"),
            data.get("mode", "hard"),
        )


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    team_id: str | None
    role: Role
    models: tuple[str, ...] | None = None  # patterns with * and ?; None allows every model
    key_limits: Limits | None = None
    team_limits: Limits | None = None
    budgets: tuple[BudgetRule, ...] = ()
    data_class: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    priority: int | None = None  # in the routing queue; None: the request header decides
    queue_weight: float = 1.0  # the team's share of a queue when requests wait
    guardrail_policy: str | None = None  # the key's, else its team's
    cache_policy: str | None = None  # the key's, else its team's

    def may_use(self, model: str) -> bool:
        if self.models is None:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    @property
    def is_master(self) -> bool:
        return self.key_id == MASTER_KEY_ID


MASTER = Principal(key_id=MASTER_KEY_ID, team_id=None, role="admin")
