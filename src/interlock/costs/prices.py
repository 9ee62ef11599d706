"""What one token costs on each model, and what one call cost.

`ModelPrice` holds per-token prices in USD (input, output, cached input, cache
writes, the long-context tiers some providers charge, and the service tiers, such
as OpenAI's flex and priority, whose prices differ); `lookup_model_price` reads
them from the `genai-prices` package's bundled data (never the network), and
the prices of OpenAI's embedding models, which that data lacks as token prices,
from a table here.
`PriceBook` resolves a price for every deployment of a catalog with the
precedence deployment fields > config `prices:` > genai-prices (for the
deployment's model, else for its `base_model`), and turns a
`Usage` into dollars, at the service tier the provider's answer says it served
the call at. An unknown price is `None`, never zero.

Imports: the standard library, `types`, `errors`, `tokens`, `reasoning_effort`,
`web_search`, `catalog`, `costs.settings`;
`genai_prices` lazily (its data takes ~0.2 s to load).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from interlock.catalog import Catalog, Deployment
from interlock.costs.settings import PriceOverride
from interlock.errors import InvalidRequest
from interlock.reasoning_effort import BUDGETS, requested_effort
from interlock.tokens import estimate_prompt_tokens
from interlock.types import ChatRequest, Usage
from interlock.web_search import MAX_SEARCHES, requested_web_search

log = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
# When the caller sets no max_tokens, a reservation assumes this many output tokens.
DEFAULT_EXPECTED_OUTPUT_TOKENS = 1_000
# The most output tokens a reservation assumes of a deployment whose own limit is
# unknown (no max_output_tokens or max_tokens in its litellm_params or
# model_info): about the most a model writes in one answer today (128K), so that
# one client's max_tokens of a billion cannot hold a whole shared budget.
UNKNOWN_MAX_OUTPUT_TOKENS = 131_072
# Budget reservations err high: an image may be a large, high-detail one.
RESERVED_TOKENS_PER_IMAGE = 1_000

# Our provider names -> genai-prices provider ids, where they differ.
_GENAI_PROVIDER = {"gemini": "google", "vertex": "google", "vertex_ai": "google"}


def genai_provider(provider: str) -> str:
    """genai-prices' id for one of our provider names."""
    return _GENAI_PROVIDER.get(provider, provider)

# OpenAI's embedding models, in USD per million input tokens. They write no
# tokens, and genai-prices gives them an input price only, which `_from_genai`
# cannot take for a token price (a chat model missing its output price would be
# priced as writing for free); so they are priced here, below genai-prices, for
# the "openai" provider only (Azure's prices are its own). The figures are
# OpenAI's list prices as read on 2026-11-29: text-embedding-3-small $0.02 and
# text-embedding-3-large $0.13 from OpenAI's model pages
# (developers.openai.com/api/docs/models/<model>); text-embedding-ada-002 $0.10
# from the listings of OpenAI's price by OpenRouter and Vercel's AI Gateway, the
# same as genai-prices' input price for each of the three.
_OPENAI_EMBEDDINGS_PER_MILLION = {
    "text-embedding-3-small": Decimal("0.02"),
    "text-embedding-3-large": Decimal("0.13"),
    "text-embedding-ada-002": Decimal("0.10"),
}


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices that apply to the whole call once its input exceeds `above_input_tokens`."""

    above_input_tokens: int
    input_per_token: Decimal
    output_per_token: Decimal
    cached_input_per_token: Decimal | None = None
    cache_write_per_token: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_token: Decimal
    output_per_token: Decimal
    cached_input_per_token: Decimal | None = None
    # "genai-prices", "deployment", "config", or "interlock" (a table here that
    # fills a gap in genai-prices: `_OPENAI_EMBEDDINGS_PER_MILLION`).
    source: str = "genai-prices"
    cache_write_per_token: Decimal | None = None
    # Ascending by threshold; a call whose input passes a threshold pays that
    # tier's prices on all its tokens (the "cliff" the providers use).
    tiers: tuple[PriceTier, ...] = ()
    # What the source matched, e.g. "google/gemini-2.5-pro"; for display only.
    matched: str | None = None
    # The prices of the provider's service tiers that differ from these ("flex",
    # "priority"), by the name its answers give the tier (`service_tier`).
    service_tiers: tuple[tuple[str, ModelPrice], ...] = ()
    # One web search run for a call (Anthropic's web search, a Gemini grounding
    # query or grounded prompt); None: unknown.
    per_web_search: Decimal | None = None

    @classmethod
    def per_million(
        cls,
        input_usd: Decimal | str | float,
        output_usd: Decimal | str | float,
        cached_input_usd: Decimal | str | float | None = None,
        *,
        source: str = "config",
        matched: str | None = None,
    ) -> ModelPrice:
        def tok(value: Decimal | str | float) -> Decimal:
            return Decimal(str(value)) / MILLION

        return cls(
            input_per_token=tok(input_usd),
            output_per_token=tok(output_usd),
            cached_input_per_token=None if cached_input_usd is None else tok(cached_input_usd),
            source=source,
            matched=matched,
        )

    def for_tier(self, service_tier: str | None) -> ModelPrice:
        """The prices of a call served at `service_tier`: that tier's where they
        are known, else these (the standard tier, or a tier priced like it)."""
        if service_tier is not None:
            for name, price in self.service_tiers:
                if name == service_tier:
                    return price
        return self

    def rates(self, input_tokens: int) -> PriceTier:
        """The prices that apply to a call with this many input tokens."""
        chosen = PriceTier(
            0,
            self.input_per_token,
            self.output_per_token,
            self.cached_input_per_token,
            self.cache_write_per_token,
        )
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen

    def cost(self, usage: Usage) -> Decimal:
        """Dollars for one call's usage.

        Cached and cache-write tokens are subsets of `input_tokens`; reasoning
        tokens are a subset of `output_tokens` and billed as output.
        """
        rate = self.rates(usage.input_tokens)
        cached = max(0, min(usage.cached_input_tokens, usage.input_tokens))
        written = max(0, min(usage.cache_write_tokens, usage.input_tokens - cached))
        plain = usage.input_tokens - cached - written
        cached_rate = rate.input_per_token if rate.cached_input_per_token is None else (
            rate.cached_input_per_token
        )
        write_rate = rate.input_per_token if rate.cache_write_per_token is None else (
            rate.cache_write_per_token
        )
        searches = max(0, usage.web_searches) * (self.per_web_search or Decimal(0))
        return (
            plain * rate.input_per_token
            + cached * cached_rate
            + written * write_rate
            + max(0, usage.output_tokens) * rate.output_per_token
            + searches
        )

    def covers(self, usage: Usage) -> bool:
        """Whether every part of this usage has a price (a call that searched the
        web needs the price of a search)."""
        return not usage.web_searches or self.per_web_search is not None

    def describe(self) -> str:
        """'$3.00 / $15.00 per 1M (cached $0.30)' style text for tables."""
        text = f"${_per_m(self.input_per_token)} in / ${_per_m(self.output_per_token)} out per 1M"
        if self.cached_input_per_token is not None:
            text += f", cached ${_per_m(self.cached_input_per_token)}"
        if self.tiers:
            text += ", tiered above " + ", ".join(
                f"{t.above_input_tokens:,}" for t in self.tiers
            )
        if self.service_tiers:
            text += "; " + ", ".join(
                f"{name} ${_per_m(p.input_per_token)} / ${_per_m(p.output_per_token)}"
                for name, p in self.service_tiers
            )
        return text


def _per_m(per_token: Decimal) -> str:
    value = (per_token * MILLION).normalize()
    text = f"{value:f}"
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


# --------------------------------------------------------------------------- genai-prices


def lookup_model_price(model: str, provider: str | None = None) -> ModelPrice | None:
    """Today's price of `model` from genai-prices' bundled data, or None if it has none.

    `model` may carry a provider prefix ("anthropic/claude-sonnet-4-0"). With a
    provider that genai-prices does not know (an OpenAI-compatible local
    server, say), the model is looked up by name alone.
    """
    for found_provider, info in genai_models(model, provider):
        now = datetime.now(UTC)
        matched = f"{found_provider.id}/{info.id}"
        converted = _from_genai(info.get_prices(now), matched=matched)
        if converted is not None:
            return replace(converted,
                           service_tiers=_service_tiers(info, now, converted, matched))
    return _openai_embedding_price(model, provider)


def _openai_embedding_price(model: str, provider: str | None) -> ModelPrice | None:
    """The price of one of OpenAI's embedding models (`_OPENAI_EMBEDDINGS_PER_MILLION`),
    named with or without the "openai/" prefix, on the "openai" provider or none
    given (a name looked up alone); None for any other model or provider."""
    if provider not in (None, "openai"):
        return None
    prefix, slash, rest = model.partition("/")
    if slash and prefix == "openai":
        model = rest
    per_million = _OPENAI_EMBEDDINGS_PER_MILLION.get(model)
    if per_million is None:
        return None
    return ModelPrice(per_million / MILLION, Decimal(0), source="interlock",
                      matched=f"openai/{model}")


def _service_tiers(info: Any, now: datetime, standard: ModelPrice, matched: str
                   ) -> tuple[tuple[str, ModelPrice], ...]:
    """The model's service tiers whose prices differ from `standard`, as
    genai-prices gives them (variants that depend on `service_tier` alone)."""
    names = sorted({variant.when["service_tier"] for variant in info.price_variants or ()
                    if set(variant.when) == {"service_tier"}})
    found = []
    for name in names:
        price = _from_genai(info.get_prices(now, {"service_tier": name}), matched=matched)
        if price is not None and _rates(price) != _rates(standard):
            found.append((name, price))
    return tuple(found)


def _rates(price: ModelPrice) -> tuple[Any, ...]:
    return (price.input_per_token, price.output_per_token, price.cached_input_per_token,
            price.cache_write_per_token, price.tiers)


def genai_models(model: str, provider: str | None) -> Iterator[tuple[Any, Any]]:
    """The (provider, model info) genai-prices' data finds for `model` on our
    `provider`, most specific lookup first: by provider, by the model's own
    prefix, by name alone. The prices here and the context windows
    (`costs.context_windows`) find a model the same way."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    for model_ref, provider_id in _lookup_candidates(model, provider):
        try:
            found = snapshot.find_provider_model(model_ref, None, provider_id, None)
        except LookupError:
            continue
        yield found


def _lookup_candidates(model: str, provider: str | None) -> list[tuple[str, str | None]]:
    candidates: list[tuple[str, str | None]] = []
    if provider:
        candidates.append((model, genai_provider(provider)))
    prefix, slash, rest = model.partition("/")
    if slash:
        candidates.append((rest, genai_provider(prefix)))
        candidates.append((rest, None))
    candidates.append((model, None))
    return candidates


def _from_genai(prices: Any, *, matched: str) -> ModelPrice | None:
    fields = {
        "input": getattr(prices, "input_mtok", None),
        "output": getattr(prices, "output_mtok", None),
        "cached": getattr(prices, "cache_read_mtok", None),
        "write": getattr(prices, "cache_write_mtok", None),
    }
    if fields["input"] is None or fields["output"] is None:
        return None  # priced per request or per second: not a token model
    per_thousand_searches = getattr(prices, "web_searches_kcount", None)
    starts = sorted({t.start for v in fields.values() for t in getattr(v, "tiers", ())})
    base = {k: _tier_price(v, None) for k, v in fields.items()}
    tiers = tuple(_make_tier(start, {k: _tier_price(v, start) for k, v in fields.items()})
                  for start in starts)
    return ModelPrice(
        input_per_token=_per_token(base["input"]) or Decimal(0),
        output_per_token=_per_token(base["output"]) or Decimal(0),
        cached_input_per_token=_per_token(base["cached"]),
        cache_write_per_token=_per_token(base["write"]),
        tiers=tiers,
        source="genai-prices",
        matched=matched,
        per_web_search=(None if per_thousand_searches is None
                        else Decimal(per_thousand_searches) / 1000),
    )


def _tier_price(value: Any, start: int | None) -> Decimal | None:
    """The per-million price of one genai-prices field for calls above `start` tokens."""
    if value is None or isinstance(value, Decimal):
        return value
    price: Decimal = value.base
    if start is not None:
        for tier in value.tiers:
            if tier.start <= start:
                price = tier.price
    return price


def _make_tier(start: int, per_million: Mapping[str, Decimal | None]) -> PriceTier:
    return PriceTier(
        above_input_tokens=start,
        input_per_token=_per_token(per_million["input"]) or Decimal(0),
        output_per_token=_per_token(per_million["output"]) or Decimal(0),
        cached_input_per_token=_per_token(per_million["cached"]),
        cache_write_per_token=_per_token(per_million["write"]),
    )


def _per_token(per_million: Decimal | None) -> Decimal | None:
    return None if per_million is None else per_million / MILLION


# --------------------------------------------------------------------------- overrides


def price_from_override(override: PriceOverride, *, source: str = "config") -> _Partial:
    def pick(per_token: Decimal | None, per_million: Decimal | None) -> Decimal | None:
        if per_token is not None:
            return per_token
        return None if per_million is None else per_million / MILLION

    return _Partial(
        input=pick(override.input_cost_per_token, override.input_cost_per_million),
        output=pick(override.output_cost_per_token, override.output_cost_per_million),
        cached=pick(override.cached_input_cost_per_token, override.cached_input_cost_per_million),
        source=source,
    )


@dataclass(frozen=True, slots=True)
class _Partial:
    """Prices one layer (deployment or config) sets; fields it leaves empty fall through."""

    input: Decimal | None = None
    output: Decimal | None = None
    cached: Decimal | None = None
    source: str = "config"

    @property
    def empty(self) -> bool:
        return self.input is None and self.output is None and self.cached is None

    def over(self, below: ModelPrice | None) -> ModelPrice | None:
        """This layer laid over a lower price; None when input or output stays unknown."""
        if self.empty:
            return below
        if below is None:
            if self.input is None or self.output is None:
                return None
            return ModelPrice(self.input, self.output, self.cached, source=self.source)
        # Tiers from below, by length or by service, no longer fit prices that
        # someone set by hand: those apply at every tier.
        return replace(
            below,
            input_per_token=below.input_per_token if self.input is None else self.input,
            output_per_token=below.output_per_token if self.output is None else self.output,
            cached_input_per_token=(
                below.cached_input_per_token if self.cached is None else self.cached
            ),
            source=self.source,
            tiers=(),
            service_tiers=(),
        )


def _deployment_layer(deployment: Deployment) -> _Partial:
    output = deployment.output_cost_per_token
    if (output is None and deployment.input_cost_per_token is not None
            and deployment.model_info.get("mode") == "embedding"):
        # LiteLLM's marker for an embedding model, whose config sets only an input
        # price: it writes no tokens, so nothing is unknown.
        output = Decimal(0)
    return _Partial(
        input=deployment.input_cost_per_token,
        output=output,
        cached=deployment.cached_input_cost_per_token,
        source="deployment",
    )


def base_model(deployment: Deployment) -> str | None:
    """The model a deployment says it runs, for its price, as LiteLLM reads it:
    `model_info.base_model`, else `litellm_params.base_model`. LiteLLM's users
    name a fine-tune or an Azure deployment ("openai/my-finetune",
    "azure/prod-east") by what it is built on this way."""
    for found in (deployment.model_info.get("base_model"), deployment.extra.get("base_model")):
        if isinstance(found, str) and found.strip():
            return found.strip()
    return None


def listed_price(deployment: Deployment, find: Any = None) -> ModelPrice | None:
    """The price data gives the deployment's model (`find`: `lookup_model_price`),
    or, when it has none, its `base_model`'s; None when neither has one."""
    find = find or lookup_model_price
    price = find(deployment.model, deployment.provider)
    base = base_model(deployment)
    if price is None and base is not None:
        price = find(base, deployment.provider)
    return price


def unknown_price(deployment: Deployment) -> str:
    """What a warning says of a deployment with no known price: that its cost is
    recorded as unknown, and how to give it one."""
    base = base_model(deployment)
    said = (f"base_model {base!r} has no known price either; name one that has, or set "
            if base is not None else
            "set model_info.base_model to the priced model it runs, or ")
    return (f"its cost is recorded as unknown; {said}input_cost_per_token and "
            "output_cost_per_token, or a `prices:` entry for it")


def override_keys(deployment: Deployment) -> list[str]:
    """Config `prices:` keys that name this deployment, most specific first."""
    return [deployment.name, deployment.qualified_model, deployment.model, deployment.group]


# --------------------------------------------------------------------------- the book


@dataclass
class PriceBook:
    """The price in use for every deployment, resolved once at start-up."""

    prices: dict[str, ModelPrice | None] = field(default_factory=dict)
    # Models in config `prices:` that no deployment uses (still priced for the simulator).
    extra: dict[str, ModelPrice] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        catalog: Catalog,
        overrides: Mapping[str, PriceOverride] | None = None,
        *,
        lookup: Any = None,
    ) -> PriceBook:
        overrides = overrides or {}
        find = lookup or lookup_model_price
        book = cls()
        used: set[str] = set()
        for d in catalog.deployments():
            key = next((k for k in override_keys(d) if k in overrides), None)
            if key is not None:
                used.add(key)
            base = listed_price(d, find)
            config = price_from_override(overrides[key]) if key else _Partial()
            book.prices[d.name] = _deployment_layer(d).over(config.over(base))
        for key, override in overrides.items():
            if key not in used:
                price = price_from_override(override).over(None)
                if price is not None:
                    book.extra[key] = price
        return book

    def price_for(self, deployment: Deployment) -> ModelPrice | None:
        if deployment.name in self.prices:
            return self.prices[deployment.name]
        # A deployment added after start-up: resolve it on its own.
        return _deployment_layer(deployment).over(listed_price(deployment))

    def cost(self, deployment: Deployment, usage: Usage | None,
             service_tier: str | None = None) -> Decimal | None:
        """Dollars for one call served at `service_tier` (as the provider's answer
        reported it; None: the standard tier), or None when the price or the usage
        is unknown."""
        price = self.price_for(deployment)
        if price is None or usage is None or not price.covers(usage):
            return None
        return price.for_tier(service_tier).cost(usage)

    def expected_cost(self, deployment: Deployment, request: ChatRequest) -> Decimal | None:
        """A deliberately generous estimate before the call, for budget reservations."""
        price = self.price_for(deployment)
        if price is None:
            return None
        if request.max_tokens:  # no more than the deployment can write
            output = min(request.max_tokens,
                         deployment.max_output_tokens or UNKNOWN_MAX_OUTPUT_TOKENS)
        else:
            output = deployment.max_output_tokens or (
                DEFAULT_EXPECTED_OUTPUT_TOKENS + _thinking_tokens(request))
        usage = Usage(input_tokens=estimate_input_tokens(request), output_tokens=output,
                      web_searches=_searches_allowed(request))
        # At the tier the request asks for, where it has prices of its own.
        tier = request.extra.get("service_tier")
        return price.for_tier(tier if isinstance(tier, str) else None).cost(usage)

    def by_name(self, catalog: Catalog) -> dict[str, ModelPrice | None]:
        """The price of every name a config gives a model by: its `prices:` keys
        that no deployment uses, and each deployment's name, model id,
        provider/model and group. Where two deployments share a name (a group of
        several), the first with a known price gives it: the same answer
        wherever a command looks a name up."""
        out: dict[str, ModelPrice | None] = dict(self.extra)
        for d in catalog.deployments():
            price = self.price_for(d)
            for key in (d.name, d.model, d.qualified_model, d.group):
                if out.get(key) is None:
                    out[key] = price
        return out

    def unknown(self) -> list[str]:
        return sorted(name for name, price in self.prices.items() if price is None)

    def items(self) -> Iterable[tuple[str, ModelPrice | None]]:
        return self.prices.items()


def _thinking_tokens(request: ChatRequest) -> int:
    """Tokens a requested reasoning effort may think, billed as output. A call
    with no max_tokens can spend them all beyond its answer, so a reservation
    counts them; a call with max_tokens bills no more than that in any case."""
    try:
        effort = requested_effort(request)
    except InvalidRequest:
        return 0  # the adapter refuses it before any call
    return BUDGETS.get(effort, 0) if effort is not None else 0


def _searches_allowed(request: ChatRequest) -> int:
    """The web searches a request's web_search_options may bill (the cap for
    its context size)."""
    try:
        search = requested_web_search(request)
    except InvalidRequest:
        return 0  # the adapter refuses it before any call
    return MAX_SEARCHES[search.context_size] if search is not None else 0


def estimate_input_tokens(request: ChatRequest) -> int:
    return estimate_prompt_tokens(request, tokens_per_image=RESERVED_TOKENS_PER_IMAGE)
