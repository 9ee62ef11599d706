"""The N-model choice: from predicted qualities and per-model costs to one model.

Two rules, both pure functions (table-tested):
- `cheapest_reaching(quality, costs, target)`: the cheapest model whose predicted
  quality reaches `target`; if none does, the one with the highest quality.
- `best_tradeoff(quality, costs, lam)`: the model maximising quality - lam x cost.

Costs are per 1,000 requests, Decimal or float (only their order and ratios
matter here, so they are compared as floats). Ties go to the cheaper model, then
to the earlier one. `choose_*` apply the same rules to (n, m) arrays.

`choose_group` applies them to a routed group's member groups, pricing each
group from its deployments' per-token prices in the catalog.

Imports: numpy, the standard library, `catalog` (types only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from interlock.catalog import Catalog, ModelGroup

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


def group_cost_per_1k(group: ModelGroup) -> Decimal | None:
    """Mean price of a typical request over the group's priced deployments, x 1,000."""
    prices = [
        d.input_cost_per_token * TYPICAL_INPUT_TOKENS + d.output_cost_per_token
        * TYPICAL_OUTPUT_TOKENS
        for d in group.deployments
        if d.input_cost_per_token is not None and d.output_cost_per_token is not None
    ]
    if not prices:
        return None
    return sum(prices, Decimal(0)) / len(prices) * 1000


def _column(group: ModelGroup | None, name: str, router_models: Sequence[str]) -> int:
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
) -> GroupChoice:
    """Pick a member group from one prompt's predicted qualities.

    With `quality_target`: the cheapest member reaching it. With `cost_weight`
    (lambda): the best quality - lambda x cost per 1,000 requests. With neither:
    the highest predicted quality. Unpriced groups count as free.
    """
    groups = [catalog.groups.get(m) for m in members]
    q = np.array([float(quality[_column(g, m, router_models)])
                  for g, m in zip(groups, members, strict=True)])
    costs = [group_cost_per_1k(g) if g is not None else None for g in groups]
    c = [x if x is not None else Decimal(0) for x in costs]
    scores = {m: float(v) for m, v in zip(members, q, strict=True)}
    if quality_target is not None:
        i = cheapest_reaching(q.tolist(), c, quality_target)
        met = q[i] >= quality_target
        reason = (f"cheapest member with predicted quality >= {quality_target:g}" if met
                  else f"no member reaches quality {quality_target:g}: the best predicted")
    elif cost_weight is not None:
        i = best_tradeoff(q.tolist(), c, cost_weight)
        reason = f"best predicted quality - {cost_weight:g} x cost per 1k requests"
    else:
        i = int(np.argmax(q))
        reason = "highest predicted quality"
    return GroupChoice(members[i], reason, float(q[i]), scores, costs[i])
