"""Prices: genai-prices lookup, override precedence, unknown prices, cost arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from interlock.catalog import Catalog, Deployment
from interlock.config.loading import load_config
from interlock.costs.prices import ModelPrice, PriceBook, lookup_model_price
from interlock.costs.settings import PriceOverride
from interlock.gateway import Gateway
from interlock.types import ChatRequest, Message, TextPart, Usage

M = Decimal(1_000_000)


def test_lookup_knows_the_seed_models() -> None:
    sonnet = lookup_model_price("claude-sonnet-4-20250514", "anthropic")
    assert sonnet is not None
    assert sonnet.source == "genai-prices"
    assert sonnet.input_per_token * M == Decimal(3)
    assert sonnet.output_per_token * M == Decimal(15)
    assert sonnet.cached_input_per_token is not None
    assert sonnet.cached_input_per_token < sonnet.input_per_token

    lite = lookup_model_price("gemini-2.0-flash-lite", "gemini")
    assert lite is not None
    assert lite.input_per_token * M == Decimal("0.075")
    assert lite.output_per_token * M == Decimal("0.3")


def test_lookup_accepts_a_provider_prefix_and_no_provider() -> None:
    a = lookup_model_price("gemini/gemini-2.5-pro")
    b = lookup_model_price("gemini-2.5-pro", "gemini")
    c = lookup_model_price("gemini-2.5-pro")
    assert a is not None and a == b == c


def test_unknown_model_is_none() -> None:
    assert lookup_model_price("my-local-llama-that-nobody-prices", "openai") is None
    assert lookup_model_price("no-such-model-xyz") is None


def test_tiered_price_applies_to_the_whole_call_above_the_threshold() -> None:
    pro = lookup_model_price("gemini-2.5-pro", "gemini")
    assert pro is not None and pro.tiers
    threshold = pro.tiers[0].above_input_tokens
    small = pro.cost(Usage(input_tokens=threshold, output_tokens=0))
    large = pro.cost(Usage(input_tokens=threshold + 1, output_tokens=0))
    assert small == threshold * pro.input_per_token
    assert large == (threshold + 1) * pro.tiers[0].input_per_token
    assert pro.tiers[0].input_per_token > pro.input_per_token


def test_cost_with_cached_cache_write_and_reasoning_tokens() -> None:
    price = ModelPrice(
        input_per_token=Decimal(3) / M,
        output_per_token=Decimal(15) / M,
        cached_input_per_token=Decimal("0.3") / M,
        cache_write_per_token=Decimal("3.75") / M,
    )
    usage = Usage(
        input_tokens=10_000,
        cached_input_tokens=6_000,
        cache_write_tokens=1_000,
        output_tokens=2_000,
        reasoning_tokens=1_500,  # a subset of output, billed as output
    )
    expected = (3_000 * 3 + 6_000 * Decimal("0.3") + 1_000 * Decimal("3.75") + 2_000 * 15) / M
    assert price.cost(usage) == expected
    # Without a cached price, cached tokens pay the full input price.
    plain = ModelPrice(Decimal(3) / M, Decimal(15) / M)
    assert plain.cost(Usage(input_tokens=1000, cached_input_tokens=500)) == Decimal(3000) / M


def _deployment(name: str, model: str, provider: str = "anthropic", **kw: object) -> Deployment:
    return Deployment(name=name, group=kw.pop("group", name), provider=provider,  # type: ignore[arg-type]
                      model=model, **kw)  # type: ignore[arg-type]


def test_precedence_deployment_over_config_over_genai_prices() -> None:
    plain = _deployment("plain", "claude-sonnet-4-20250514")
    by_config = _deployment("by-config", "claude-sonnet-4-20250514", group="hq")
    by_deployment = _deployment(
        "by-deployment", "claude-sonnet-4-20250514",
        input_cost_per_token=Decimal("0.000001"), output_cost_per_token=Decimal("0.000002"),
    )
    both = _deployment(
        "both", "gemini-2.5-pro", provider="gemini",
        input_cost_per_token=Decimal("0.000007"),
    )
    catalog = Catalog.from_deployments([plain, by_config, by_deployment, both])
    overrides = {
        "hq": PriceOverride(input_cost_per_million=Decimal(2), output_cost_per_million=Decimal(9)),
        "gemini-2.5-pro": PriceOverride(output_cost_per_million=Decimal(11)),
    }
    book = PriceBook.build(catalog, overrides)

    p = book.price_for(plain)
    assert p is not None and p.source == "genai-prices" and p.input_per_token * M == 3
    c = book.price_for(by_config)
    assert c is not None and c.source == "config"
    assert (c.input_per_token * M, c.output_per_token * M) == (2, 9)
    # The cached price still comes from genai-prices when config does not set one.
    assert c.cached_input_per_token == p.cached_input_per_token
    d = book.price_for(by_deployment)
    assert d is not None and d.source == "deployment"
    assert (d.input_per_token, d.output_per_token) == (Decimal("0.000001"), Decimal("0.000002"))
    b = book.price_for(both)
    assert b is not None and b.source == "deployment"
    assert b.input_per_token == Decimal("0.000007")  # the deployment's field
    assert b.output_per_token * M == 11  # the config's field
    assert b.tiers == ()  # tiers of the source below no longer apply
    assert book.unknown() == []


def test_unknown_price_stays_none_never_zero() -> None:
    local = _deployment("local", "my-llama", provider="openai")
    half = _deployment("half", "my-llama-2", provider="openai",
                       input_cost_per_token=Decimal("0.000001"))
    book = PriceBook.build(Catalog.from_deployments([local, half]), {})
    assert book.price_for(local) is None
    assert book.cost(local, Usage(100, 100)) is None
    # An input price alone is not a price: the output would be guessed as zero.
    assert book.price_for(half) is None
    assert book.unknown() == ["half", "local"]


def test_an_embedding_model_is_priced_by_its_input_price_alone() -> None:
    embed = _deployment("embed", "my-embedder", provider="openai",
                        input_cost_per_token=Decimal("0.00000002"),
                        model_info={"mode": "embedding"})
    book = PriceBook.build(Catalog.from_deployments([embed]), {})
    assert book.cost(embed, Usage(input_tokens=1000)) == Decimal("0.00002")
    assert book.unknown() == []


def test_openai_s_embedding_models_have_a_price_of_their_own() -> None:
    # genai-prices gives them an input price alone, which is not a token price.
    small = _deployment("small", "text-embedding-3-small", provider="openai")
    on_azure = _deployment("azure", "text-embedding-3-small", provider="azure")
    book = PriceBook.build(Catalog.from_deployments([small, on_azure]), {})
    assert book.cost(small, Usage(input_tokens=1_000_000)) == Decimal("0.02")
    price = book.price_for(small)
    assert price is not None and price.source == "interlock"
    # OpenAI's list price is not Azure's: that stays unknown until configured.
    assert book.unknown() == ["azure"]
    assert lookup_model_price("openai/text-embedding-3-large") is not None
    assert lookup_model_price("text-embedding-ada-002", "openai") is not None


def test_config_price_for_an_unknown_model() -> None:
    local = _deployment("local", "my-llama", provider="openai")
    book = PriceBook.build(
        Catalog.from_deployments([local]),
        {"openai/my-llama": PriceOverride(input_cost_per_token=Decimal("0.0000001"),
                                          output_cost_per_token=Decimal("0.0000002"))},
    )
    assert book.cost(local, Usage(1000, 1000)) == Decimal("0.0003")
    assert book.cost(local, None) is None


def test_expected_cost_uses_max_tokens_and_prompt_length() -> None:
    d = _deployment("s", "claude-sonnet-4-20250514")
    book = PriceBook.build(Catalog.from_deployments([d]), {})
    short = ChatRequest(model="s", messages=[Message("user", [TextPart("hi")])], max_tokens=10)
    long = ChatRequest(model="s", messages=[Message("user", [TextPart("x" * 40_000)])],
                       max_tokens=10)
    no_max = ChatRequest(model="s", messages=[Message("user", [TextPart("hi")])])
    e_short, e_long, e_default = (book.expected_cost(d, r) for r in (short, long, no_max))
    assert e_short is not None and e_long is not None and e_default is not None
    assert e_long > e_short
    assert e_default > e_short
    assert e_long >= Decimal(10_000 * 3) / M


@pytest.mark.parametrize("value", ["1", "0.5"])
def test_per_million_constructor(value: str) -> None:
    p = ModelPrice.per_million(value, value)
    assert p.input_per_token * M == Decimal(value)


def test_service_tiers_come_with_their_own_prices() -> None:
    price = lookup_model_price("gpt-5", "openai")
    assert price is not None
    tiers = dict(price.service_tiers)
    # OpenAI's flex tier is cheaper than the standard one, priority dearer; a tier
    # priced as the standard one ("default") is not listed.
    assert {"flex", "priority"} <= set(tiers) and "default" not in tiers
    flex, priority = tiers["flex"], tiers["priority"]
    assert flex.input_per_token < price.input_per_token < priority.input_per_token
    assert flex.output_per_token < price.output_per_token < priority.output_per_token
    assert price.for_tier("flex") is flex and price.for_tier("priority") is priority
    # The standard tier, no tier, and a tier genai-prices does not price: standard.
    for name in ("default", None, "scale"):
        assert price.for_tier(name) is price
    usage = Usage(input_tokens=1_000, output_tokens=500)
    assert flex.cost(usage) < price.cost(usage) < priority.cost(usage)
    assert "flex $" in price.describe() and "priority $" in price.describe()


def test_book_costs_a_call_at_the_tier_it_was_served_at() -> None:
    d = _deployment("o", "gpt-5", provider="openai")
    by_hand = _deployment("h", "gpt-5", provider="openai",
                          input_cost_per_token=Decimal("0.000001"))
    book = PriceBook.build(Catalog.from_deployments([d, by_hand]), {})
    usage = Usage(input_tokens=2_000, output_tokens=300)
    standard = book.cost(d, usage)
    flex = book.cost(d, usage, "flex")
    assert standard is not None and flex is not None and flex < standard
    assert book.cost(d, usage, "default") == standard
    # A price set by hand applies at every tier: genai-prices' tiers no longer fit it.
    hand = book.price_for(by_hand)
    assert hand is not None and hand.service_tiers == ()
    assert book.cost(by_hand, usage, "flex") == book.cost(by_hand, usage)
    # A budget reservation prices the tier the request asks for.
    asked = ChatRequest(model="o", messages=[Message("user", [TextPart("hi")])], max_tokens=10)
    reserved_standard = book.expected_cost(d, asked)
    asked.extra = {"service_tier": "flex"}
    reserved_flex = book.expected_cost(d, asked)
    assert reserved_standard is not None and reserved_flex is not None
    assert reserved_flex < reserved_standard


def test_a_reservation_counts_the_thinking_a_reasoning_effort_may_bill() -> None:
    d = _deployment("s", "claude-sonnet-4-20250514")
    book = PriceBook.build(Catalog.from_deployments([d]), {})
    price = book.price_for(d)
    assert price is not None

    def reserved(**fields: object) -> Decimal:
        req = ChatRequest(model="s", messages=[Message("user", [TextPart("hi")])],
                          **fields)  # type: ignore[arg-type]
        value = book.expected_cost(d, req)
        assert value is not None
        return value

    plain = reserved()
    assert reserved(extra={"reasoning_effort": "high"}) - plain == 24_576 * price.output_per_token
    assert reserved(extra={"reasoning_effort": "none"}) == plain
    # With max_tokens the call cannot bill more, thinking included.
    assert reserved(max_tokens=500, extra={"reasoning_effort": "high"}) == reserved(max_tokens=500)
    # A value the adapter will refuse reserves as if none was asked.
    assert reserved(extra={"reasoning_effort": "max"}) == plain


def test_web_searches_are_billed_per_search_and_unknown_without_a_price() -> None:
    searched = _deployment("c", "claude-sonnet-4-20250514")
    by_config = _deployment("x", "house-model")
    book = PriceBook.build(Catalog.from_deployments([searched, by_config]), {
        "house-model": PriceOverride(input_cost_per_million=Decimal(1),
                                     output_cost_per_million=Decimal(2))})
    price = book.price_for(searched)
    assert price is not None and price.per_web_search == Decimal("0.01")  # $10 per 1,000
    tokens = Usage(input_tokens=1_000, output_tokens=100)
    two_searches = Usage(input_tokens=1_000, output_tokens=100, web_searches=2)
    plain, with_searches = book.cost(searched, tokens), book.cost(searched, two_searches)
    assert plain is not None and with_searches == plain + 2 * price.per_web_search
    # A price with no search price cannot cost a call that searched: unknown, not
    # the tokens alone.
    assert book.cost(by_config, tokens) is not None
    assert book.cost(by_config, two_searches) is None


def test_a_reservation_counts_the_searches_web_search_options_allow() -> None:
    d = _deployment("c", "claude-sonnet-4-20250514")
    book = PriceBook.build(Catalog.from_deployments([d]), {})
    price = book.price_for(d)
    assert price is not None and price.per_web_search is not None

    def reserved(extra: dict[str, object]) -> Decimal:
        value = book.expected_cost(d, ChatRequest(
            model="c", messages=[Message("user", [TextPart("hi")])], extra=extra))
        assert value is not None
        return value

    plain = reserved({})
    # The cap for the context size: 3 for the default (medium), 5 for high.
    assert reserved({"web_search_options": {}}) - plain == 3 * price.per_web_search
    high = {"web_search_options": {"search_context_size": "high"}}
    assert reserved(high) - plain == 5 * price.per_web_search
    assert reserved({"web_search_options": "yes"}) == plain  # refused before any call


def _from_config(params: dict[str, object], info: dict[str, object] | None = None) -> Gateway:
    entry: dict[str, object] = {"model_name": "tuned", "litellm_params": {
        "model": "openai/my-finetune", "api_key": "sk-test-0123456789", **params}}
    if info is not None:
        entry["model_info"] = info
    return Gateway(load_config({"model_list": [entry]}, environ={}), environ={})


@pytest.mark.parametrize(("params", "info"), [
    ({}, {"base_model": "gpt-4o-mini"}),  # LiteLLM's usual place
    ({"base_model": "gpt-4o-mini"}, None),  # and the one its Azure examples use
])
def test_a_deployment_is_priced_by_its_base_model(params: dict[str, object],
                                                  info: dict[str, object] | None) -> None:
    gateway = _from_config(params, info)
    tuned = next(gateway.catalog.deployments())
    price = gateway.prices.price_for(tuned)
    assert price is not None and price == lookup_model_price("gpt-4o-mini", "openai")
    assert gateway.prices.cost(tuned, Usage(1000, 1000)) is not None


def test_a_deployment_s_own_prices_win_over_its_base_model_s() -> None:
    gateway = _from_config({"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002},
                           {"base_model": "gpt-4o-mini"})
    tuned = next(gateway.catalog.deployments())
    assert gateway.prices.cost(tuned, Usage(1000, 1000)) == Decimal("0.003")


def test_an_unknown_price_is_logged_with_base_model_as_a_way_to_give_one(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="interlock.gateway"):
        _from_config({})
        _from_config({}, {"base_model": "no-such-model-anywhere"})
    unknown, still = [r.getMessage() for r in caplog.records if "no known price" in r.message]
    assert "set model_info.base_model to the priced model it runs" in unknown
    assert "base_model 'no-such-model-anywhere' has no known price either" in still
