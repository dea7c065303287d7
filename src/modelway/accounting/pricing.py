"""Prices (USD per million tokens), their lookup by provider and model, and exact cost.

Costs are integers of nano-USD (1e-9 USD) computed with ``Decimal``: sums of many requests
stay exact, and a cheap request (a few tokens of a $0.02/M model) is not rounded to zero.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from types import MappingProxyType

from modelway.accounting.default_prices import PRICE_ROWS

NANO_PER_USD = 10**9
_NANO_PER_MICRO = Decimal(1000)  # tokens x (USD per 1M tokens) is micro-USD
# A trailing snapshot date or version: -2024-08-06, -20241022, @20241022, -0613, -v2:0, -latest
_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-\d{4}|-v\d+(?::\d+)?|-latest)$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. ``cached_input`` None: cached prompt tokens cost ``input``."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    # Nano-USD per input, cached input and output token when all are whole numbers.
    nano_rates: tuple[int, int, int] | None = field(
        init=False, default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "nano_rates", _whole_nano_rates(self))


def _whole_nano_rates(price: Price) -> tuple[int, int, int] | None:
    """Nano-USD per token for input, cached input and output, when all are whole numbers
    (a price per million with at most three decimals)."""
    cached = price.input if price.cached_input is None else price.cached_input
    rates = [rate * _NANO_PER_MICRO for rate in (price.input, cached, price.output)]
    if any(rate != rate.to_integral_value() for rate in rates):
        return None
    return int(rates[0]), int(rates[1]), int(rates[2])


DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        key: Price(Decimal(i), Decimal(o), None if c is None else Decimal(c))
        for key, (i, o, c) in PRICE_ROWS.items()
    }
)


class _Layer:
    """Prices by (provider, model) and by bare model."""

    def __init__(self, prices: Mapping[str, Price], *, bare_from_qualified: bool) -> None:
        self.qualified: dict[tuple[str, str], Price] = {}
        self.bare: dict[str, Price] = {}
        for key, price in prices.items():
            provider, sep, model = key.partition("/")
            if sep:
                self.qualified[(provider, model)] = price
                if bare_from_qualified:
                    self.bare.setdefault(model, price)
            else:
                self.bare[key] = price

    def get(self, provider: str, model: str) -> Price | None:
        price = self.qualified.get((provider, model))
        return price if price is not None else self.bare.get(model)

    def names(self, provider: str) -> Iterator[str]:
        yield from self.bare
        yield from (m for (p, m) in self.qualified if p == provider)


class PriceTable:
    """The default prices under operator overrides.

    Override keys are ``"provider/model"`` (split at the first ``/``) or a bare model
    name, which applies to every provider. A more specific model name wins over an
    override of a less specific one; for the same name, overrides win over defaults.
    """

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._layers = (
            _Layer(overrides or {}, bare_from_qualified=False),
            _Layer(DEFAULT_PRICES, bare_from_qualified=True),
        )

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` at ``provider``; None if unknown.

        Tried in order: the exact name; the name without a trailing date or version
        (``gpt-4o-2024-08-06`` -> ``gpt-4o``, ``claude-3-5-sonnet-20241022`` ->
        ``claude-3-5-sonnet``); the longest known name it extends by a ``-word``
        (``gpt-4o-mini-search-preview`` -> ``gpt-4o-mini``). A prefix followed by a
        number is a different version and does not match (``claude-opus-4-6`` is not
        ``claude-opus-4``).
        """
        for name in self._candidates(provider, model):
            for layer in self._layers:
                price = layer.get(provider, name)
                if price is not None:
                    return price
        return None

    def _candidates(self, provider: str, model: str) -> Iterator[str]:
        yield model
        stripped = strip_version(model)
        if stripped != model:
            yield stripped
        prefix = self._longest_prefix(provider, stripped)
        if prefix is not None:
            yield prefix

    def _longest_prefix(self, provider: str, model: str) -> str | None:
        best: str | None = None
        for layer in self._layers:
            for name in layer.names(provider):
                rest = model[len(name) + 1 :]
                if (
                    model.startswith(name + "-")
                    and rest[:1].isalpha()
                    and (best is None or len(name) > len(best))
                ):
                    best = name
        return best


def strip_version(model: str) -> str:
    """``model`` without trailing snapshot dates and version tags."""
    while True:
        shorter = _SUFFIX.sub("", model)
        if shorter == model or not shorter:
            return model
        model = shorter


def cost_nano_usd(
    price: Price, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> int:
    """The cost in nano-USD, rounded half-up.

    ``cached_tokens`` are part of ``prompt_tokens`` (OpenAI's usage semantics) and are
    billed at ``cached_input`` (``input`` when the price has none). Counts come from
    upstreams, so nonsense is clamped rather than raised on the accounting path: a
    negative count is 0, and cached tokens are at most ``prompt_tokens``.
    """
    prompt_tokens = max(prompt_tokens, 0)
    completion_tokens = max(completion_tokens, 0)
    cached_tokens = min(max(cached_tokens, 0), prompt_tokens)
    rates = price.nano_rates
    if rates is not None:  # the common case: integer arithmetic, same result
        per_input, per_cached, per_output = rates
        return (
            (prompt_tokens - cached_tokens) * per_input
            + cached_tokens * per_cached
            + completion_tokens * per_output
        )
    cached_price = price.input if price.cached_input is None else price.cached_input
    with localcontext() as ctx:
        ctx.prec = 60  # products stay exact; rounding happens once, below
        micro = (
            (prompt_tokens - cached_tokens) * price.input
            + cached_tokens * cached_price
            + completion_tokens * price.output
        )
        return int((micro * _NANO_PER_MICRO).to_integral_value(ROUND_HALF_UP))


@functools.lru_cache(maxsize=1024)
def usd_to_nano(value: Decimal | float | str) -> int:
    """USD to nano-USD, rounded half-up; a float is read by its shortest repr (0.1 is 0.1)."""
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite USD amount: {value!r}")
    with localcontext() as ctx:
        ctx.prec = 60
        return int((amount * NANO_PER_USD).to_integral_value(ROUND_HALF_UP))


def format_usd(nano_usd: int) -> str:
    """Nano-USD as a USD string with 9 decimals: 123450 -> "0.000123450"."""
    sign = "-" if nano_usd < 0 else ""
    whole, frac = divmod(abs(nano_usd), NANO_PER_USD)
    return f"{sign}{whole}.{frac:09d}"
