"""The shipped price table: list prices in USD per million tokens, keyed "provider/model".

Checked 2026-12-03 against OpenAI's pricing and model pages (developers.openai.com/api/
docs/pricing) and Anthropic's (platform.claude.com/docs/en/about-claude/pricing).
Standard tier, no batch discount. The third column is OpenAI's cached-input price and
Anthropic's cache-hit ("cache read") price; None where the model has none. Not modelled:
Anthropic cache writes (1.25x input) and long-context surcharges (Sonnet 4/4.5 prompts
over 200K tokens). Operators override any entry in config.

Entries marked "guard" exist so that a model priced differently is never priced as its
shorter-named neighbour by prefix matching (o3-pro is not o3).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# (input, output, cached_input) as decimal strings; ``pricing`` turns them into ``Price``.
PriceRow = tuple[str, str, str | None]

PRICE_ROWS: Mapping[str, PriceRow] = MappingProxyType(
    {
        # OpenAI
        "openai/gpt-5": ("1.25", "10.00", "0.125"),
        "openai/gpt-5-mini": ("0.25", "2.00", "0.025"),
        "openai/gpt-5-nano": ("0.05", "0.40", "0.005"),
        "openai/gpt-5-pro": ("15.00", "120.00", None),  # guard
        "openai/gpt-4.1": ("2.00", "8.00", "0.50"),
        "openai/gpt-4.1-mini": ("0.40", "1.60", "0.10"),
        "openai/gpt-4.1-nano": ("0.10", "0.40", "0.025"),
        "openai/gpt-4o": ("2.50", "10.00", "1.25"),
        "openai/gpt-4o-2024-05-13": ("5.00", "15.00", None),  # the first snapshot cost more
        "openai/gpt-4o-mini": ("0.15", "0.60", "0.075"),
        "openai/o3": ("2.00", "8.00", "0.50"),
        "openai/o3-pro": ("20.00", "80.00", None),  # guard
        "openai/o3-mini": ("1.10", "4.40", "0.55"),
        "openai/o4-mini": ("1.10", "4.40", "0.275"),
        "openai/gpt-3.5-turbo": ("0.50", "1.50", None),
        "openai/text-embedding-3-small": ("0.02", "0", None),
        "openai/text-embedding-3-large": ("0.13", "0", None),
        # Anthropic ("-0" names are Anthropic's aliases of the 4.0 models)
        "anthropic/claude-opus-4-5": ("5.00", "25.00", "0.50"),  # guard
        "anthropic/claude-opus-4-1": ("15.00", "75.00", "1.50"),
        "anthropic/claude-opus-4": ("15.00", "75.00", "1.50"),
        "anthropic/claude-opus-4-0": ("15.00", "75.00", "1.50"),
        "anthropic/claude-sonnet-4-5": ("3.00", "15.00", "0.30"),
        "anthropic/claude-sonnet-4": ("3.00", "15.00", "0.30"),
        "anthropic/claude-sonnet-4-0": ("3.00", "15.00", "0.30"),
        "anthropic/claude-3-7-sonnet": ("3.00", "15.00", "0.30"),
        "anthropic/claude-3-5-sonnet": ("3.00", "15.00", "0.30"),
        "anthropic/claude-haiku-4-5": ("1.00", "5.00", "0.10"),
        "anthropic/claude-3-5-haiku": ("0.80", "4.00", "0.08"),
        "anthropic/claude-3-haiku": ("0.25", "1.25", "0.03"),
    }
)
