"""The dollar axis of an evaluation: prices, token counts, cost per 1,000 requests.

Prices come from `costs.prices.lookup_model_price` (genai-prices' bundled data)
unless overridden (`MODEL=IN_PER_M,OUT_PER_M`, dollars per million tokens).
Token counts come from the data when it has them; otherwise the input is
estimated from the prompt (about four characters per token) and the output is
a fixed, configurable length; `TokenCounts.source` says which, and reports
must show it. Dollars are `Decimal`; the float copies exist only to draw and
sweep curves, and every dollar figure reported is recomputed exactly from the
routing assignment. Tiered (long-context) prices are not applied: the base
price is used for every call.

Imports: numpy, the standard library, `costs.prices`, `routing.data`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from interlock.costs.prices import ModelPrice, lookup_model_price
from interlock.routing.data import OutcomeTable
from interlock.tokens import CHARS_PER_TOKEN

DEFAULT_OUTPUT_TOKENS = 500
THOUSAND = Decimal(1000)


@dataclass(frozen=True)
class TokenCounts:
    """Input and output tokens per prompt and model, and where they came from."""

    input: np.ndarray  # (n, m) int64
    output: np.ndarray  # (n, m) int64
    source: str


def _whole_tokens(values: np.ndarray) -> np.ndarray:
    return np.rint(np.nan_to_num(np.asarray(values, dtype=np.float64))).astype(np.int64)


def token_counts(table: OutcomeTable, *, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> (
    TokenCounts
):
    """Token counts from the table, estimating whichever side it lacks."""
    n, m = table.scores.shape
    parts = []
    if table.input_tokens is not None:
        inputs = _whole_tokens(table.input_tokens)
        parts.append("input tokens from the data")
    else:
        per_prompt = np.array([-(-len(p) // CHARS_PER_TOKEN) for p in table.prompts], np.int64)
        inputs = np.repeat(per_prompt.reshape(n, 1), m, axis=1)
        parts.append(f"input tokens estimated as prompt characters / {CHARS_PER_TOKEN}")
    if table.output_tokens is not None:
        outputs = _whole_tokens(table.output_tokens)
        parts.append("output tokens from the data")
    else:
        outputs = np.full((n, m), int(output_tokens), dtype=np.int64)
        parts.append(f"output tokens assumed {int(output_tokens)} per request")
    return TokenCounts(inputs, outputs, "; ".join(parts))


def parse_price(text: str) -> tuple[str, ModelPrice]:
    """`MODEL=IN_PER_M,OUT_PER_M` (dollars per million tokens) as a price override."""
    model, sep, values = text.rpartition("=")
    pieces = values.split(",")
    if not sep or not model or len(pieces) != 2:
        raise ValueError(f"price must look like MODEL=IN_PER_M,OUT_PER_M; got {text!r}")
    try:
        ins, outs = (Decimal(p.strip()) for p in pieces)
    except InvalidOperation as exc:
        raise ValueError(f"price must be two numbers (dollars per million); got {text!r}") from exc
    if ins < 0 or outs < 0:
        raise ValueError(f"prices cannot be negative; got {text!r}")
    return model.strip(), ModelPrice.per_million(ins, outs, source="command line")


def resolve_prices(
    models: Sequence[str], overrides: Mapping[str, ModelPrice] | None = None
) -> dict[str, ModelPrice | None]:
    """A price per model: the override, else genai-prices, else None (unknown, not zero)."""
    given = dict(overrides or {})
    return {m: given[m] if m in given else lookup_model_price(m) for m in models}


@dataclass(frozen=True)
class CostTable:
    """What each model would cost on each prompt of an outcome table."""

    models: list[str]
    prices: list[ModelPrice]
    tokens: TokenCounts

    @classmethod
    def build(
        cls,
        table: OutcomeTable,
        prices: Mapping[str, ModelPrice | None],
        *,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> CostTable:
        unknown = [m for m in table.models if prices.get(m) is None]
        if unknown:
            raise LookupError(
                f"no price known for {unknown}; pass --price MODEL=IN_PER_M,OUT_PER_M"
            )
        chosen = [p for p in (prices[m] for m in table.models) if p is not None]
        return cls(list(table.models), chosen, token_counts(table, output_tokens=output_tokens))

    def per_request(self) -> np.ndarray:
        """(n, m) dollars per request as floats, for sweeping and drawing only."""
        ins = np.array([float(p.input_per_token) for p in self.prices])
        outs = np.array([float(p.output_per_token) for p in self.prices])
        return self.tokens.input * ins + self.tokens.output * outs

    def per_1k(self, choice: np.ndarray) -> Decimal:
        """Exact dollars per 1,000 requests when prompt i goes to model `choice[i]`."""
        pick = np.asarray(choice, dtype=np.int64)
        n = len(pick)
        if n == 0:
            raise ValueError("no prompts")
        rows = np.arange(n)
        total = Decimal(0)
        for j, price in enumerate(self.prices):
            mine = pick == j
            if not mine.any():
                continue
            ins = int(self.tokens.input[rows[mine], j].sum())
            outs = int(self.tokens.output[rows[mine], j].sum())
            total += ins * price.input_per_token + outs * price.output_per_token
        return total * THOUSAND / n

    def model_per_1k(self, model: int) -> Decimal:
        """Exact dollars per 1,000 requests when every prompt goes to one model."""
        return self.per_1k(np.full(self.tokens.input.shape[0], model, dtype=np.int64))


@dataclass(frozen=True)
class CheapestConfiguration:
    """The cheapest swept setting that keeps `fraction` of the best model's quality."""

    setting_name: str
    setting: float
    quality: float
    cost_per_1k: Decimal
    best_model: str
    best_model_cost_per_1k: Decimal
    fraction: float

    @property
    def saving_per_1k(self) -> Decimal:
        return self.best_model_cost_per_1k - self.cost_per_1k

    @property
    def saving_share(self) -> float:
        if self.best_model_cost_per_1k == 0:
            return float("nan")
        return float(self.saving_per_1k / self.best_model_cost_per_1k)

    def as_dict(self) -> dict[str, object]:
        return {
            "setting": {self.setting_name: _finite_or_none(self.setting)},
            "quality": self.quality,
            "usd_per_1k_requests": str(money(self.cost_per_1k)),
            "best_model": self.best_model,
            "best_model_usd_per_1k_requests": str(money(self.best_model_cost_per_1k)),
            "saving_usd_per_1k_requests": str(money(self.saving_per_1k)),
            "saving_share": self.saving_share,
            "quality_fraction_of_best": self.fraction,
        }


def money(value: Decimal) -> Decimal:
    """Dollars shown to a hundredth of a cent."""
    return value.quantize(Decimal("0.0001"))


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
