"""The price table: shipped list prices, version suffixes, local models at 0, unknown models unpriced (never
guessed), a user file overriding entries, bad files named; and provider usage carrying cached/reasoning tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rhetor.errors import ConfigError
from rhetor.governance.prices import load_prices
from rhetor.providers.anthropic_reply import parse_response
from rhetor.providers.openai_reply import parse_usage
from rhetor.types import Usage


def test_known_model_costs_list_price() -> None:
    prices = load_prices()
    cost = prices.cost("openai", "gpt-4o-mini", Usage(1_000_000, 1_000_000))
    assert cost.priced and cost.usd == pytest.approx(0.15 + 0.60)
    # Anthropic Sonnet: 1000 in, 500 out = 0.003 + 0.0075
    assert prices.cost("anthropic", "claude-sonnet-4-5", Usage(1000, 500)).usd == pytest.approx(0.0105)


def test_version_suffixes_match_but_similar_names_do_not() -> None:
    prices = load_prices()
    assert prices.lookup("openai", "gpt-4o-mini-2024-07-18") == prices.lookup("openai", "gpt-4o-mini")
    assert prices.lookup("anthropic", "claude-3-5-haiku-20241022") == prices.lookup("anthropic", "claude-3-5-haiku")
    assert prices.lookup("anthropic", "claude-3-5-haiku-latest") is not None
    assert prices.lookup("openai", "gpt-3.5-turbo-0125") is not None
    unknown = prices.cost("openai", "gpt-4o-experimental", Usage(1000, 1000))
    assert unknown.usd == 0 and not unknown.priced  # never priced as gpt-4o by resemblance
    assert not prices.cost("mystery", "model", Usage(10, 10)).priced


def test_local_and_simulated_models_cost_zero_and_are_priced() -> None:
    prices = load_prices()
    for provider, model in (("ollama", "llama3"), ("ollama", "qwen2.5:7b"), ("simulated", "simulated-fast")):
        cost = prices.cost(provider, model, Usage(5000, 5000))
        assert cost.priced and cost.usd == 0


def test_cached_and_cache_write_tokens_price_apart() -> None:
    prices = load_prices()
    # 1M input of which 400k cache reads and 100k cache writes, Sonnet: 0.5*3 + 0.4*0.3 + 0.1*3.75
    usage = Usage(1_000_000, 0, cached_input_tokens=400_000, cache_write_tokens=100_000)
    assert prices.cost("anthropic", "claude-sonnet-4-5", usage).usd == pytest.approx(1.5 + 0.12 + 0.375)
    # gpt-4o: cached input at half price
    assert prices.cost("openai", "gpt-4o", Usage(1_000_000, 0, cached_input_tokens=1_000_000)).usd == \
        pytest.approx(1.25)


def test_user_file_overrides_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"openai": {"gpt-4o": {"input": 1, "output": 2}},
                                "vllm": {"my-model": {"input": 0.5, "output": 0.5}}}))
    prices = load_prices(path)
    assert prices.cost("openai", "gpt-4o", Usage(1_000_000, 1_000_000)).usd == pytest.approx(3)
    assert prices.cost("vllm", "my-model", Usage(2_000_000, 0)).usd == pytest.approx(1)
    assert prices.cost("openai", "gpt-4o-mini", Usage(1_000_000, 0)).usd == pytest.approx(0.15)  # untouched


def test_bad_price_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"openai": {"gpt-4o": {"input": -1, "output": 2}}}))
    with pytest.raises(ConfigError, match=r"openai\.gpt-4o\.input"):
        load_prices(path)
    path.write_text(json.dumps({"openai": {"gpt-4o": {"input": 1, "output": 2, "per": "token"}}}))
    with pytest.raises(ConfigError, match=r"gpt-4o\.per"):
        load_prices(path)
    with pytest.raises(ConfigError, match="RHETOR_PRICES"):
        load_prices(tmp_path / "missing.json")


def test_providers_report_cached_and_reasoning_tokens() -> None:
    usage = parse_usage({"prompt_tokens": 100, "completion_tokens": 50,
                         "prompt_tokens_details": {"cached_tokens": 60},
                         "completion_tokens_details": {"reasoning_tokens": 20}})
    assert usage == Usage(100, 50, cached_input_tokens=60, reasoning_tokens=20)
    r = parse_response({"content": [{"type": "text", "text": "hi"}], "usage": {
        "input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 7}})
    assert r.usage == Usage(47, 5, cached_input_tokens=30, cache_write_tokens=7)


def test_usd_is_costs_figure_and_a_reload_reprices(tmp_path: Path) -> None:
    """`usd` (the meter's call, from memoized plain rates) answers what `cost` does, cache terms or not; unpriced
    is None; a reload (swap_prices empties the memo) prices with the new entries at once."""
    from rhetor.config.reload import swap_prices
    from rhetor.governance.prices import PER, Price, PriceTable

    table = PriceTable({"p": {"m": Price(input=3.0, output=15.0, cached_input=0.3)}})
    for usage in (Usage(1000, 500), Usage(1000, 500, 400, 100), Usage(10, 0, 50, 0), Usage(0, 0)):
        assert table.usd("p", "m", usage) == table.cost("p", "m", usage).usd
    assert table.usd("p", "m", Usage(1000, 500)) == (1000 * 3.0 + 500 * 15.0) / PER
    assert table.usd("p", "m", Usage(1000, 0, 400, 100)) == (500 * 3.0 + 400 * 0.3 + 100 * 3.0) / PER
    assert table.usd("p", "other", Usage(1, 1)) is None and not table.cost("p", "other", Usage(1, 1)).priced
    swap_prices(table, PriceTable({"p": {"m": Price(input=1.0, output=1.0)}}))
    assert table.usd("p", "m", Usage(1000, 1000)) == 2000 / PER
    assert table.lookup("p", "m") == Price(input=1.0, output=1.0)
