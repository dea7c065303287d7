"""What one generation asks of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # Set when the client asked for max_tokens explicitly: overflowing the context is
    # then an error instead of a silent cap.
    max_tokens_explicit: bool = False


@dataclass(slots=True)
class Generation:
    """The outcome of one generation, filled in as it runs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
