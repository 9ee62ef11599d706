"""The N-model choice: from predicted qualities and per-model costs to one model.

Two rules, both pure functions (table-tested):
- `cheapest_reaching(quality, costs, target)`: the cheapest model whose predicted
  quality reaches `target`; if none does, the one with the highest quality.
- `best_tradeoff(quality, costs, lam)`: the model maximising quality - lam x cost.

Costs are per 1,000 requests, Decimal or float (only their order and ratios
matter here, so they are compared as floats). Ties go to the cheaper model, then
to the earlier one. `choose_*` apply the same rules to (n, m) arrays.

`choose_group` applies them to a routed group's member groups, pricing each
group from its deployments' per-token prices. The prices come from a `PriceOf`
the caller gives (the gateway passes its `PriceBook`, so routing sees the same
deployment > config `prices:` > genai-prices layers that cost is recorded with);
without one, only prices written on the deployments are known. A member with no
known price is an error, never free: a free member would win every comparison.

Imports: numpy, the standard library, `catalog` (types only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from interlock.catalog import Catalog, Deployment, ModelGroup


class TokenPrice(Protocol):
    """Per-token prices in USD (`costs.prices.ModelPrice` has this shape)."""

    @property
    def input_per_token(self) -> Decimal: ...
    @property
    def output_per_token(self) -> Decimal: ...


# A deployment's price, or None when nothing prices it.
PriceOf = Callable[["Deployment"], "TokenPrice | None"]

# A typical request for pricing a group per 1,000 requests when the data has no
# token counts: only the ratio between groups matters for the choice.
TYPICAL_INPUT_TOKENS = 500
TYPICAL_OUTPUT_TOKENS = 300

Cost = Decimal | float | int


def _costs(costs: Sequence[Cost], m: int) -> np.ndarray:
    if len(costs) != m:
        raise ValueError(f"{len(costs)} costs for {m} models")
    out = np.array([float(c) for c in costs], dtype=np.float64)
    if (out < 0).any():
        raise ValueError("costs must not be negative")
    return out


def choose_cheapest_reaching(
    quality: np.ndarray, costs: Sequence[Cost], target: float
) -> np.ndarray:
    """Per row, the index of the cheapest model with quality >= target (else the best)."""
    q = np.atleast_2d(np.asarray(quality, dtype=np.float64))
    c = _costs(costs, q.shape[1])
    order = np.lexsort((np.arange(len(c)), c))  # cheapest first, then column order
    ranked = q[:, order]
    reach = ranked >= target
    best = order[np.argmax(ranked, axis=1)]  # argmax keeps the first (cheapest) of ties
    return np.where(reach.any(axis=1), order[np.argmax(reach, axis=1)], best)


def choose_tradeoff(quality: np.ndarray, costs: Sequence[Cost], lam: float) -> np.ndarray:
    """Per row, argmax of quality - lam x cost; ties to the cheaper model."""
    q = np.atleast_2d(np.asarray(quality, dtype=np.float64))
    c = _costs(costs, q.shape[1])
    order = np.lexsort((np.arange(len(c)), c))
    utility = (q - lam * c[None, :])[:, order]
    return order[np.argmax(utility, axis=1)]


def cheapest_reaching(quality: Sequence[float], costs: Sequence[Cost], target: float) -> int:
    return int(choose_cheapest_reaching(np.asarray([quality]), costs, target)[0])


def best_tradeoff(quality: Sequence[float], costs: Sequence[Cost], lam: float) -> int:
    return int(choose_tradeoff(np.asarray([quality]), costs, lam)[0])


def expected_cost(choice: np.ndarray, costs: Sequence[Cost]) -> float:
    """Mean cost per 1,000 requests of a vector of choices."""
    c = _costs(costs, int(max(choice.max(initial=0) + 1, len(costs))))
    return float(c[choice].mean()) if len(choice) else 0.0


# ---------------------------------------------------------------- routed groups


@dataclass(frozen=True)
class GroupChoice:
    group: str
    reason: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    cost_per_1k: Decimal | None = None


@dataclass(frozen=True)
class _WrittenPrice:
    input_per_token: Decimal
    output_per_token: Decimal


def written_price(deployment: Deployment) -> TokenPrice | None:
    """The price written on the deployment in config, if both sides are."""
    if deployment.input_cost_per_token is None or deployment.output_cost_per_token is None:
        return None
    return _WrittenPrice(deployment.input_cost_per_token, deployment.output_cost_per_token)


def group_cost_per_1k(group: ModelGroup, price_of: PriceOf | None = None) -> Decimal | None:
    """Mean price of a typical request over the group's priced deployments, x 1,000;
    None when no deployment of the group has a known price."""
    find = price_of or written_price
    prices = [
        p.input_per_token * TYPICAL_INPUT_TOKENS + p.output_per_token * TYPICAL_OUTPUT_TOKENS
        for p in (find(d) for d in group.deployments) if p is not None
    ]
    if not prices:
        return None
    return sum(prices, Decimal(0)) / len(prices) * 1000


class UnpricedMember(ValueError):
    """A member group whose price is unknown, where the choice compares prices."""


def member_costs(members: Sequence[str], catalog: Catalog,
                 price_of: PriceOf | None = None) -> list[Decimal]:
    """Each member's cost per 1,000 typical requests; raises `UnpricedMember` naming
    the first member nothing prices."""
    costs = []
    for name in members:
        group = catalog.groups.get(name)
        cost = group_cost_per_1k(group, price_of) if group is not None else None
        if cost is None:
            models = ", ".join(d.qualified_model for d in group.deployments) if group else "none"
            raise UnpricedMember(
                f"member group {name!r} has no known price (deployments' models: {models}); "
                "a quality_target or cost_weight compares members' prices, and an unpriced "
                "member would count as free and win every comparison. Expected a price: "
                "input_cost_per_million and output_cost_per_million in its litellm_params, "
                "or the model under the config's prices: section (docs/costs.md)")
        costs.append(cost)
    return costs


def member_column(group: ModelGroup | None, name: str, router_models: Sequence[str]) -> int:
    """The router's column for a member group: by group name, else a deployment's model."""
    if name in router_models:
        return list(router_models).index(name)
    for d in group.deployments if group is not None else []:
        for candidate in (d.qualified_model, d.model):
            if candidate in router_models:
                return list(router_models).index(candidate)
    raise ValueError(f"member group {name!r} matches none of the router's models "
                     f"{list(router_models)}")


def choose_group(
    members: Sequence[str], router_models: Sequence[str], quality: Sequence[float],
    catalog: Catalog, *, quality_target: float | None = None, cost_weight: float | None = None,
    price_of: PriceOf | None = None,
) -> GroupChoice:
    """Pick a member group from one prompt's predicted qualities.

    With `quality_target`: the cheapest member reaching it. With `cost_weight`
    (lambda): the best quality - lambda x cost per 1,000 requests. With neither:
    the highest predicted quality (no price needed). An unpriced member raises
    `UnpricedMember` when prices are compared.
    """
    groups = [catalog.groups.get(m) for m in members]
    q = np.array([float(quality[member_column(g, m, router_models)])
                  for g, m in zip(groups, members, strict=True)])
    scores = {m: float(v) for m, v in zip(members, q, strict=True)}
    if quality_target is None and cost_weight is None:
        i = int(np.argmax(q))
        return GroupChoice(members[i], "highest predicted quality", float(q[i]), scores)
    c = member_costs(members, catalog, price_of)
    if quality_target is not None:
        i = cheapest_reaching(q.tolist(), c, quality_target)
        met = q[i] >= quality_target
        reason = (f"cheapest member with predicted quality >= {quality_target:g}" if met
                  else f"no member reaches quality {quality_target:g}: the best predicted")
    else:
        i = best_tradeoff(q.tolist(), c, float(cost_weight or 0))
        reason = f"best predicted quality - {cost_weight:g} x cost per 1k requests"
    return GroupChoice(members[i], reason, float(q[i]), scores, c[i])
