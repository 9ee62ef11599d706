"""The cost simulator: what a month of traffic costs under each routing strategy.

A `Strategy` is a named mix of shares over models ("mix=claude-sonnet-4:30%,
gemini-2.5-pro:50%,gemini-2.0-flash-lite:20%"). `simulate` prices a traffic
profile (requests, mean input and output tokens) under each one, against a
baseline. `replay` does the same for the traffic recorded in the ledger: what
it cost, and what it would have cost on each single model.

The seed's prices are kept here so that `--prices seed` reproduces its table
to the cent whatever genai-prices says today.

Imports: the standard library, `types`, `costs.prices`, `costs.queries`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from interlock.costs.prices import ModelPrice, lookup_model_price
from interlock.costs.queries import UsageRecord
from interlock.types import Usage

# (model, $ per 1M input, $ per 1M output): the figures the seed's table used.
_SEED = (
    ("claude-opus-4.5", "15", "75"),
    ("gemini-2.5-pro", "1.25", "10"),
    ("claude-sonnet-4", "3", "15"),
    ("gemini-2.0-flash-lite", "0.075", "0.30"),
)
# With no --strategy: the seed's three rows.
_DEFAULT_STRATEGIES = (
    "all-opus=claude-opus-4.5",
    "all-gemini-pro=gemini-2.5-pro",
    "mix=claude-sonnet-4:30%,gemini-2.5-pro:50%,gemini-2.0-flash-lite:20%",
)
# Our short names -> what genai-prices calls them, where the name alone is ambiguous.
_GENAI_NAMES = {"claude-sonnet-4": "claude-sonnet-4-0", "claude-opus-4.5": "claude-opus-4-5"}


def seed_prices() -> dict[str, ModelPrice]:
    return {m: ModelPrice.per_million(i, o, source="seed") for m, i, o in _SEED}


def default_strategies() -> list[Strategy]:
    return [Strategy.parse(text) for text in _DEFAULT_STRATEGIES]


def default_price(model: str) -> ModelPrice | None:
    """Today's price from genai-prices, trying the name genai-prices knows it by first."""
    return lookup_model_price(_GENAI_NAMES.get(model, model)) or lookup_model_price(model)


def resolve_prices(models: Iterable[str], *, seed: bool = False,
                   given: Mapping[str, ModelPrice] | None = None,
                   named: Mapping[str, ModelPrice | None] | None = None
                   ) -> dict[str, ModelPrice | None]:
    """Price per model name: `given` (the command line) > `named` (a config's
    names, `PriceBook.by_name`) > the seed's, when asked for > genai-prices.
    `interlock prices` and `cost simulate` both answer through this, so one
    name has one price in both."""
    seeded = seed_prices() if seed else {}
    out: dict[str, ModelPrice | None] = {}
    for model in models:
        if given and model in given:
            out[model] = given[model]
        elif named and named.get(model) is not None:
            out[model] = named[model]
        elif model in seeded:
            out[model] = seeded[model]
        else:
            out[model] = default_price(model)
    return out


class StrategyError(ValueError):
    pass


@dataclass(frozen=True)
class Strategy:
    name: str
    shares: tuple[tuple[str, Decimal], ...]

    @classmethod
    def parse(cls, text: str) -> Strategy:
        """`NAME=MODEL[:SHARE][,MODEL:SHARE...]`; shares as 0.3 or 30%, summing to 1.

        Without `NAME=` the strategy is named after its text; a lone model
        takes all the traffic.
        """
        name, eq, spec = text.partition("=")
        if not eq:
            name, spec = text, text
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not name.strip() or not parts:
            raise StrategyError(f"strategy {text!r}: expected NAME=MODEL[:SHARE],...")
        if len(parts) == 1 and ":" not in parts[0]:
            return cls(name.strip(), ((parts[0], Decimal(1)),))
        shares = tuple(_share(text, p) for p in parts)
        total = sum((s for _, s in shares), Decimal(0))
        if total != 1:
            raise StrategyError(f"strategy {text!r}: shares add up to {total}, not 1 (100%)")
        return cls(name.strip(), shares)

    @property
    def models(self) -> list[str]:
        return [m for m, _ in self.shares]

    def describe(self) -> str:
        return ", ".join(f"{m} {_pct(s)}%" for m, s in self.shares)


def _pct(share: Decimal) -> str:
    return f"{(share * 100).normalize():f}"


def _share(text: str, part: str) -> tuple[str, Decimal]:
    model, colon, raw = part.rpartition(":")
    if not colon or not model:
        raise StrategyError(f"strategy {text!r}: {part!r} needs MODEL:SHARE")
    raw = raw.strip()
    try:
        share = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise StrategyError(f"strategy {text!r}: {raw!r} is not a share") from None
    if not 0 <= share <= 1:
        raise StrategyError(f"strategy {text!r}: share {raw!r} is outside 0..1")
    return model.strip(), share


@dataclass(frozen=True)
class Profile:
    requests: int = 100_000
    input_tokens: int = 1_000
    output_tokens: int = 500


@dataclass
class StrategyCost:
    strategy: Strategy
    # None when a model in the mix has no known price.
    monthly_usd: Decimal | None
    per_model: dict[str, Decimal] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    saving_usd: Decimal | None = None
    saving_pct: Decimal | None = None


def simulate(profile: Profile, strategies: Sequence[Strategy],
             prices: Mapping[str, ModelPrice | None], baseline: str | None = None
             ) -> list[StrategyCost]:
    """Monthly cost of each strategy, and its saving against the baseline (the first by default)."""
    usage = Usage(input_tokens=profile.input_tokens, output_tokens=profile.output_tokens)
    results = []
    for strategy in strategies:
        result = StrategyCost(strategy, Decimal(0))
        for model, share in strategy.shares:
            price = prices.get(model)
            if price is None:
                result.missing.append(model)
                continue
            result.per_model[model] = price.cost(usage) * profile.requests * share
        if result.missing:
            result.monthly_usd = None
        else:
            result.monthly_usd = sum(result.per_model.values(), Decimal(0))
        results.append(result)
    _savings(results, baseline)
    return results


def check_strategies(strategies: Sequence[Strategy], baseline: str | None = None) -> None:
    """Raise StrategyError when two strategies share a name (their rows could not
    be told apart) or when `baseline` names none of them."""
    names = [s.name for s in strategies]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StrategyError(f"two strategies are named {repeated[0]!r}; give each its own "
                            "NAME= (NAME=MODEL[:SHARE],...)")
    if baseline is not None and baseline not in names:
        raise StrategyError(f"baseline {baseline!r} is not one of the strategies "
                            f"({', '.join(names)}); name one of them, or leave --baseline out")


def _savings(results: list[StrategyCost], baseline: str | None) -> None:
    if not results:
        return
    names = [r.strategy.name for r in results]
    check_strategies([r.strategy for r in results], baseline)
    base = results[names.index(baseline) if baseline else 0].monthly_usd
    for r in results:
        if base is None or r.monthly_usd is None:
            continue
        r.saving_usd = base - r.monthly_usd
        r.saving_pct = (r.saving_usd / base * 100) if base else None


def price_differences(current: Mapping[str, ModelPrice | None],
                      reference: Mapping[str, ModelPrice]) -> list[str]:
    """Lines saying where today's prices differ from the seed's."""
    lines = []
    for model, ref in reference.items():
        if model not in current:
            continue
        now = current.get(model)
        if now is None:
            lines.append(f"{model}: no price known today (seed: {ref.describe()})")
        elif (now.input_per_token, now.output_per_token) != (
                ref.input_per_token, ref.output_per_token):
            lines.append(f"{model}: {now.describe()} today, {ref.describe()} in the seed")
    return lines


# --------------------------------------------------------------------------- ledger replay


@dataclass
class Replay:
    requests: int = 0
    # What the requests replayed cost as recorded: their own rows, and the first
    # calls of those that were streams continued on another deployment (billed,
    # so paid for by routing, though the replay counts one request each).
    recorded_usd: Decimal = Decimal(0)
    # Requests whose recorded cost is unknown: left out of `recorded_usd` and of
    # `single_model` alike, so the two compare the same requests.
    unpriced: int = 0
    # Per model: what the same (priced) requests would have cost there.
    single_model: dict[str, Decimal] = field(default_factory=dict)
    by_group: dict[str, int] = field(default_factory=dict)
    # Continued streams' first calls in `recorded_usd`, and their cost.
    continued_calls: int = 0
    continued_usd: Decimal = Decimal(0)
    # Those of unknown cost, whose request is priced: the recorded side lacks them.
    continued_unpriced: int = 0


def replay(records: Iterable[UsageRecord], prices: Mapping[str, ModelPrice | None]) -> Replay:
    """What recorded successful requests cost, and would have cost on each single model.

    Each request is priced on its own, so long-context tiers apply where they would have,
    and at the service tier it was served at, on each model that prices that tier (a
    flex request would have been a flex request elsewhere too; where a model has no
    such tier, its standard prices). A request whose recorded cost is unknown is
    counted in `unpriced` and priced nowhere: at $0 on one side and its full
    price on the other, it would make routing look cheaper than it was.

    A stream continued on another deployment is one request, priced elsewhere on
    its answering call's tokens, and its recorded cost includes its first call's:
    `continued` records come first (`LedgerReader.usage`), each with its request
    id, and are added with the successful request of that id (none added with
    an unpriced request, left out of both sides; none for a request that failed
    after all, not replayed).
    """
    out = Replay(single_model={m: Decimal(0) for m, p in prices.items() if p is not None})
    known = [(m, p) for m, p in prices.items() if p is not None]
    first_calls: dict[str | None, Decimal | None] = {}
    for rec in records:
        if rec.continued:
            first_calls[rec.request_id] = rec.cost_usd
            continue
        out.requests += 1
        group = rec.routed_group or "(none)"
        out.by_group[group] = out.by_group.get(group, 0) + 1
        if rec.cost_usd is None:
            out.unpriced += 1
            continue
        if first_calls and rec.request_id in first_calls:
            first_cost = first_calls.pop(rec.request_id)
            if first_cost is None:
                out.continued_unpriced += 1
            else:
                out.continued_calls += 1
                out.continued_usd += first_cost
                out.recorded_usd += first_cost
        out.recorded_usd += rec.cost_usd
        # The searches would have run on any model; each priced at its own search price.
        usage = Usage(input_tokens=rec.input_tokens, output_tokens=rec.output_tokens,
                      cached_input_tokens=rec.cached_input_tokens,
                      web_searches=rec.web_searches)
        for model, price in known:
            out.single_model[model] += price.for_tier(rec.service_tier).cost(usage)
    return out
