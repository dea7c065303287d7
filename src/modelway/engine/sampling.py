"""What one generation asks of the engine, and what it produced."""

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
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    # Not in OpenAI's API (vLLM and llama.cpp's server have it): never stop at
    # end-of-generation tokens, so every answer runs to max_tokens.
    ignore_eos: bool = False
    # Set when the client asked for max_tokens explicitly: overflowing the context is
    # then an error instead of a silent cap.
    max_tokens_explicit: bool = False


@dataclass(slots=True)
class Generation:
    """The outcome of one generation, filled in as it runs."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
