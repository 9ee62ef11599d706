"""Quality against cost: the curve a router traces as its cost setting moves, and its area.

For N models a router predicts a quality per model; the policy picks, per
prompt, the model that maximises `predicted quality - lambda x cost`, with cost
in dollars per 1,000 requests: the same rule (`routing.quality_policy`) that a
routed group with `cost_weight: lambda` applies at run time. Sweeping lambda
from 0 (best predicted quality, ties to the cheaper model) to infinity
(cheapest model) traces the curve. For two models the threshold sweep of `metrics` is mapped to
dollars the same way.

Area under the curve, normalised (`normalised_area`): the x axis runs from the
cost of always using the cheapest model (0) to the cost of always using the
best-quality model (1); the y axis is the quality gap recovered between the
cheapest model (0) and the best model (1), so for two models with flat token
counts it equals APGR. Points between two configurations are reachable by
mixing them, so the curve is the running best quality joined by straight lines
and held flat to the right of its last point.

Imports: numpy, `evaluation.metrics`, `routing.quality_policy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interlock.evaluation.metrics import CallShareCurve
from interlock.routing.quality_policy import choose_tradeoff

_AREA_GRID = 2001


@dataclass(frozen=True)
class CostQualityCurve:
    """Mean cost per request (dollars) and mean quality at each setting of a sweep."""

    cost: np.ndarray
    quality: np.ndarray
    settings: np.ndarray
    setting_name: str  # "lambda" or "threshold"


def lambda_grid(points: int = 160) -> np.ndarray:
    """0, a geometric sweep from 1e-4 to 1e4, and infinity (relative: see `lambda_sweep`)."""
    return np.concatenate([[0.0], np.geomspace(1e-4, 1e4, points), [np.inf]])


def decision_costs(cost: np.ndarray) -> np.ndarray:
    """Per-model mean dollars per 1,000 requests: the costs the deployed policy weighs."""
    c = np.asarray(cost, dtype=np.float64)
    return (c.mean(axis=0) if c.ndim == 2 else c) * 1000.0


def policy_choice(predicted: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    """Per prompt, the model the gateway's policy would pick with `cost_weight = lam`.

    `cost` is dollars per request, (n, m) or (m,); the policy weighs each model's
    mean cost per 1,000 requests, as `routing.quality_policy` does at run time.
    """
    pred = np.atleast_2d(np.asarray(predicted, dtype=np.float64))
    per_1k = decision_costs(cost)
    if np.isinf(lam):
        cheapest = int(np.lexsort((np.arange(len(per_1k)), per_1k))[0])
        return np.full(len(pred), cheapest, dtype=np.int64)
    return choose_tradeoff(pred, per_1k.tolist(), lam)


def lambda_sweep(
    predicted: np.ndarray,
    scores: np.ndarray,
    cost: np.ndarray,
    lambdas: np.ndarray | None = None,
) -> CostQualityCurve:
    """Realised (cost, quality) of the lambda policy over predicted qualities.

    The default grid is `lambda_grid()` divided by the dearest model's cost per
    1,000 requests, so it spans the same trade-offs whatever the prices; the
    settings recorded are the raw lambdas, usable as a routed group's `cost_weight`.
    """
    s = np.asarray(scores, dtype=np.float64)
    c = np.broadcast_to(np.asarray(cost, dtype=np.float64), s.shape)
    scale = float(decision_costs(c).max()) or 1.0
    grid = lambda_grid() / scale if lambdas is None else np.asarray(lambdas, dtype=np.float64)
    rows = np.arange(len(s))
    costs, quality = [], []
    for lam in grid:
        pick = policy_choice(predicted, c, float(lam))
        costs.append(c[rows, pick].mean())
        quality.append(s[rows, pick].mean())
    return CostQualityCurve(np.asarray(costs), np.asarray(quality), grid, "lambda")


def threshold_cost_curve(
    curve: CallShareCurve, strong_cost: np.ndarray, weak_cost: np.ndarray
) -> CostQualityCurve:
    """A two-model threshold curve on the dollar axis (per-prompt costs of each model)."""
    cs = np.asarray(strong_cost, dtype=np.float64)
    cw = np.asarray(weak_cost, dtype=np.float64)
    n = len(curve.order)
    extra = np.concatenate([[0.0], np.cumsum((cs - cw)[curve.order])])
    counts = np.rint(curve.shares * n).astype(np.int64)
    return CostQualityCurve(
        cost=cw.mean() + extra[counts] / n,
        quality=curve.performance.copy(),
        settings=curve.thresholds.copy(),
        setting_name="threshold",
    )


def pareto_front(curve: CostQualityCurve) -> tuple[np.ndarray, np.ndarray]:
    """(cost, quality) of the points no cheaper point beats, cost ascending."""
    order = np.lexsort((-curve.quality, curve.cost))
    cost, quality = curve.cost[order], curve.quality[order]
    best = np.maximum.accumulate(quality)
    keep = np.concatenate([[True], best[1:] > best[:-1]])
    return cost[keep], best[keep]


def quality_at_cost(
    curve: CostQualityCurve, budget: np.ndarray, floor: tuple[float, float]
) -> np.ndarray:
    """Best quality reachable at each budget, mixing neighbouring configurations.

    `floor` is the (cost, quality) of always using the cheapest model, which is
    always reachable and anchors the left end.
    """
    cost, quality = pareto_front(curve)
    if cost[0] > floor[0]:
        cost = np.concatenate([[floor[0]], cost])
        quality = np.concatenate([[floor[1]], quality])
    return np.interp(budget, cost, quality, left=quality[0], right=quality[-1])


def normalised_area(
    curve: CostQualityCurve, low: tuple[float, float], high: tuple[float, float]
) -> float:
    """Area under quality-against-cost, both axes scaled so the cheapest model is 0 and
    the best model is 1 (see the module docstring). NaN when the best model is not dearer
    than the cheapest or not better (routing cannot help)."""
    (c_lo, q_lo), (c_hi, q_hi) = low, high
    if c_hi <= c_lo or q_hi <= q_lo:
        return float("nan")
    budget = np.linspace(c_lo, c_hi, _AREA_GRID)
    quality = quality_at_cost(curve, budget, low)
    x = (budget - c_lo) / (c_hi - c_lo)
    return float(np.trapezoid((quality - q_lo) / (q_hi - q_lo), x))


def cheapest_point(curve: CostQualityCurve, quality_target: float) -> int | None:
    """Index of the cheapest swept configuration whose quality reaches the target."""
    ok = np.flatnonzero(curve.quality >= quality_target - 1e-12)
    if len(ok) == 0:
        return None
    return int(ok[np.argmin(curve.cost[ok])])


def on_cost_grid(
    curve: CostQualityCurve, low: tuple[float, float], high: tuple[float, float],
    points: int = 101,
) -> tuple[np.ndarray, np.ndarray]:
    """(cost, quality) of the reachable front sampled evenly between `low` and `high` cost."""
    budget = np.linspace(min(low[0], float(curve.cost.min())),
                         max(high[0], float(curve.cost.max())), points)
    return budget, quality_at_cost(curve, budget, low)
