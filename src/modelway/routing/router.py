"""Model groups and their deployments, and the choice of one deployment per request."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelway.protocol.errors import ModelNotFound
from modelway.providers.base import Provider


@dataclass(slots=True)
class DeploymentRuntime:
    id: str
    group: str
    provider: Provider
    upstream_model: str
    weight: float = 1.0
    tags: Sequence[str] = ()


@dataclass(slots=True)
class ModelGroupRuntime:
    name: str
    deployments: list[DeploymentRuntime]
    _weights: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self._weights = [d.weight for d in self.deployments]

    def choose(self) -> DeploymentRuntime:
        """Weighted random choice among the group's deployments."""
        if len(self.deployments) == 1:
            return self.deployments[0]
        return random.choices(self.deployments, weights=self._weights)[0]


class Router:
    def __init__(self, groups: Sequence[ModelGroupRuntime]) -> None:
        self.groups = {g.name: g for g in groups}

    def group(self, name: str) -> ModelGroupRuntime:
        group = self.groups.get(name)
        if group is None:
            raise ModelNotFound(
                f"the model '{name}' does not exist on this gateway; "
                f"GET /v1/models lists the models it serves",
                param="model",
            )
        return group
