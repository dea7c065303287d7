from decimal import Decimal

import pytest

from modelway.accounting.pricing import (
    DEFAULT_PRICES,
    Price,
    PriceTable,
    cost_nano_usd,
    format_usd,
    strip_version,
    usd_to_nano,
)

REQUIRED = [
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/gpt-4.1",
    "openai/gpt-4.1-mini",
    "openai/gpt-4.1-nano",
    "openai/o3",
    "openai/o3-mini",
    "openai/o4-mini",
    "openai/gpt-5",
    "openai/gpt-5-mini",
    "openai/gpt-5-nano",
    "openai/gpt-3.5-turbo",
    "openai/text-embedding-3-small",
    "openai/text-embedding-3-large",
    "anthropic/claude-opus-4-1",
    "anthropic/claude-opus-4",
    "anthropic/claude-sonnet-4-5",
    "anthropic/claude-sonnet-4",
    "anthropic/claude-3-7-sonnet",
    "anthropic/claude-3-5-haiku",
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-3-haiku",
]


def test_defaults_cover_common_models_and_are_read_only() -> None:
    assert set(REQUIRED) <= set(DEFAULT_PRICES)
    for price in DEFAULT_PRICES.values():
        assert price.cached_input is None or price.cached_input <= price.input
    with pytest.raises(TypeError):
        DEFAULT_PRICES["openai/new"] = Price(Decimal(1), Decimal(1))  # type: ignore[index]


def test_default_list_prices() -> None:
    table = PriceTable()
    assert table.lookup("openai", "gpt-4o-mini") == Price(
        Decimal("0.15"), Decimal("0.60"), Decimal("0.075")
    )
    sonnet = table.lookup("anthropic", "claude-sonnet-4-5")
    assert sonnet == Price(Decimal("3"), Decimal("15"), Decimal("0.30"))


@pytest.mark.parametrize(
    ("provider", "model", "known"),
    [
        ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o"),
        ("openai", "gpt-4.1-mini-2025-04-14", "openai/gpt-4.1-mini"),
        ("openai", "gpt-3.5-turbo-0125", "openai/gpt-3.5-turbo"),
        ("anthropic", "claude-3-5-sonnet-20241022", "anthropic/claude-3-5-sonnet"),
        ("anthropic", "claude-opus-4-1-20250805", "anthropic/claude-opus-4-1"),
        ("anthropic", "claude-3-7-sonnet-latest", "anthropic/claude-3-7-sonnet"),
        ("bedrock", "claude-3-5-sonnet-20241022-v2:0", "anthropic/claude-3-5-sonnet"),
        ("vertex", "claude-3-haiku@20240307", "anthropic/claude-3-haiku"),
        # A bare model name is found whatever the provider.
        ("azure", "gpt-4o", "openai/gpt-4o"),
        # The longest known name the model extends by a word.
        ("openai", "gpt-4o-mini-search-preview", "openai/gpt-4o-mini"),
        ("openai", "gpt-5-chat-latest", "openai/gpt-5"),
    ],
)
def test_lookup_finds_the_model_behind_a_snapshot_name(
    provider: str, model: str, known: str
) -> None:
    assert PriceTable().lookup(provider, model) == DEFAULT_PRICES[known]


def test_lookup_prefers_a_priced_snapshot_and_guards_against_neighbours() -> None:
    table = PriceTable()
    assert table.lookup("openai", "gpt-4o-2024-05-13") == Price(Decimal("5"), Decimal("15"))
    assert table.lookup("openai", "o3-pro") == DEFAULT_PRICES["openai/o3-pro"]
    assert table.lookup("openai", "o3-pro-2025-06-10") == DEFAULT_PRICES["openai/o3-pro"]


def test_a_different_version_number_is_not_priced_as_its_neighbour() -> None:
    table = PriceTable()
    assert table.lookup("anthropic", "claude-opus-4-6") is None
    assert table.lookup("openai", "gpt-5.1") is None
    assert table.lookup("openai", "gpt-4") is None  # not gpt-4o
    assert table.lookup("openai", "no-such-model") is None


def test_overrides_bare_and_per_provider() -> None:
    cheap = Price(Decimal("1"), Decimal("2"))
    local = Price(Decimal("0"), Decimal("0"))
    table = PriceTable({"gpt-4o": cheap, "local/smollm2": local})
    assert table.lookup("openai", "gpt-4o") == cheap  # a bare override wins for every provider
    assert table.lookup("azure", "gpt-4o") == cheap
    assert table.lookup("openai", "gpt-4o-2024-08-06") == cheap
    assert table.lookup("local", "smollm2") == local
    assert table.lookup("other", "smollm2") is None
    assert table.lookup("openai", "gpt-4o-mini") == DEFAULT_PRICES["openai/gpt-4o-mini"]


def test_a_provider_override_beats_the_default_for_that_provider_only() -> None:
    negotiated = Price(Decimal("2"), Decimal("8"), Decimal("1"))
    table = PriceTable({"azure/gpt-4o": negotiated})
    assert table.lookup("azure", "gpt-4o") == negotiated
    assert table.lookup("azure", "gpt-4o-2024-11-20") == negotiated
    assert table.lookup("openai", "gpt-4o") == DEFAULT_PRICES["openai/gpt-4o"]


def test_strip_version() -> None:
    assert strip_version("gpt-4o-2024-08-06") == "gpt-4o"
    assert strip_version("claude-3-5-sonnet-20241022-v2:0") == "claude-3-5-sonnet"
    assert strip_version("claude-opus-4-1") == "claude-opus-4-1"
    assert strip_version("gpt-4.1") == "gpt-4.1"


def test_cost_is_exact() -> None:
    mini = DEFAULT_PRICES["openai/gpt-4o-mini"]
    # 1000 x $0.15/M + 500 x $0.60/M = $0.00045
    assert cost_nano_usd(mini, 1000, 500) == 450_000
    # Of the 1000 prompt tokens 400 were cached, at $0.075/M.
    assert cost_nano_usd(mini, 1000, 500, cached_tokens=400) == 420_000
    # A huge count has no float error: 10^12 tokens of $75/M is $75,000,000.
    opus = DEFAULT_PRICES["anthropic/claude-opus-4-1"]
    assert cost_nano_usd(opus, 0, 10**12) == 75_000_000 * 10**9


def test_cached_tokens_without_a_cached_price_cost_the_input_price() -> None:
    price = Price(Decimal("1"), Decimal("0"))
    assert cost_nano_usd(price, 1000, 0, cached_tokens=1000) == cost_nano_usd(price, 1000, 0)


def test_cost_rounds_half_up_to_whole_nano_usd() -> None:
    assert cost_nano_usd(Price(Decimal("0.0005"), Decimal("0")), 1, 0) == 1  # 0.5 nano
    assert cost_nano_usd(Price(Decimal("0.0004999"), Decimal("0")), 1, 0) == 0
    # A few tokens of the cheapest embedding model still cost something.
    assert cost_nano_usd(DEFAULT_PRICES["openai/text-embedding-3-small"], 3, 0) == 60


def test_nonsense_counts_from_upstreams_are_clamped() -> None:
    price = Price(Decimal("1"), Decimal("2"), Decimal("0.5"))
    assert cost_nano_usd(price, 10, 0, cached_tokens=50) == cost_nano_usd(price, 10, 0, 10)
    assert cost_nano_usd(price, -5, -1) == 0


def test_format_usd() -> None:
    assert format_usd(123_450) == "0.000123450"
    assert format_usd(0) == "0.000000000"
    assert format_usd(1_500_000_000) == "1.500000000"
    assert format_usd(-1) == "-0.000000001"
    assert format_usd(10**20 + 1) == "100000000000.000000001"


def test_usd_to_nano() -> None:
    assert usd_to_nano("0.1") == 100_000_000
    assert usd_to_nano(0.1) == 100_000_000  # read as written, not as 0.1000000000000000055
    assert usd_to_nano(Decimal("25")) == 25 * 10**9
    assert usd_to_nano("0.0000000005") == 1
    assert usd_to_nano("0.0000000004") == 0
    assert usd_to_nano(format_usd(987_654_321)) == 987_654_321
    for bad in ("ten dollars", float("nan"), float("inf")):
        with pytest.raises(ValueError):
            usd_to_nano(bad)


def test_whole_nano_rates_give_the_same_cost_as_decimal_arithmetic() -> None:
    import random

    rng = random.Random(5)
    for _ in range(2000):
        # Prices with 0 to 4 decimals: the first take the integer path, the last do not.
        places = rng.randint(0, 4)
        price = Price(*(Decimal(rng.randint(0, 10**6)) / Decimal(10**places) for _ in range(3)))
        prompt, completion = rng.randint(0, 10**6), rng.randint(0, 10**5)
        cached = rng.randint(0, prompt)
        exact = (
            (prompt - cached) * price.input
            + cached * (price.cached_input or 0)
            + completion * price.output
        ) * 1000
        expected = int(exact.to_integral_value(rounding="ROUND_HALF_UP"))
        assert cost_nano_usd(price, prompt, completion, cached) == expected
