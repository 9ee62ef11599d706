"""One evaluation run: cross-validate routers, add the baselines, compute every metric.

`evaluate(table, options)` returns an `EvaluationReport`. With two models (the
table has two, or `strong` and `weak` are named) it computes RouteLLM's
call-share metrics; with more it evaluates the quality-versus-cost policy.
Either way, when every model has a price, it adds the dollar axis: the curve
of quality against dollars per 1,000 requests, its normalised area, and the
cheapest setting keeping 95 % of the best model's quality. The baselines are
always there: random (mean of `random_seeds` seeds), the oracle, and each
model alone.

Imports: numpy, the standard library, `costs.prices`, `routing.data`,
`evaluation.*` (not `plots` or `report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from interlock.costs.prices import ModelPrice
from interlock.evaluation import frontier as fr
from interlock.evaluation import metrics as mt
from interlock.evaluation.cost_axis import (
    DEFAULT_OUTPUT_TOKENS,
    CheapestConfiguration,
    CostTable,
    resolve_prices,
)
from interlock.evaluation.crossval import (
    DEFAULT_FOLDS,
    FeaturizerFactory,
    RouterFactory,
    SharedFitFeaturizer,
    assign_folds,
    cross_validate,
)
from interlock.routing.data import OutcomeTable

QUALITY_FRACTION = 0.95
RANDOM = "random (mean of seeds)"
# Routers that need a live model to decide cannot be cross-validated offline.
_NEEDS_A_MODEL = {"llm"}
ORACLE = "oracle"


@dataclass
class EvalOptions:
    routers: list[str]
    folds: int = DEFAULT_FOLDS
    seed: int = 0
    strong: str | None = None
    weak: str | None = None
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    random_seeds: int = mt.RANDOM_SEEDS
    router_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    router_factory: RouterFactory | None = None
    featurizer_factory: FeaturizerFactory | None = None


@dataclass
class RouterResult:
    """Everything measured for one router or baseline; fields it has no meaning for are None."""

    name: str
    kind: str  # "router", "random", "oracle"
    summary: mt.TwoModelSummary | None = None
    share_curve: tuple[np.ndarray, np.ndarray] | None = None  # (share grid, performance)
    cost_curve: fr.CostQualityCurve | None = None
    cost_area: float | None = None
    cheapest: CheapestConfiguration | None = None
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class EvaluationReport:
    mode: str  # "two-model" or "n-model"
    prompts: int
    models: list[str]
    model_quality: dict[str, float]
    strong: str | None
    weak: str | None
    folds: int
    seed: int
    results: list[RouterResult]
    cost_note: str
    model_cost_per_1k: dict[str, Decimal] | None
    prices: dict[str, str]
    # ((cost, quality) of the cheapest model alone, same for the best model); cost per request.
    cost_bounds: tuple[tuple[float, float], tuple[float, float]] | None = None
    seconds: float = 0.0


def two_model_pair(table: OutcomeTable, strong: str | None, weak: str | None) -> (
    tuple[str, str] | None
):
    """(strong, weak) when the run is a two-model one, else None (N models)."""
    if len(table.models) < 2:
        # Said here: the N-model path would ask for prices, as if those were missing.
        raise ValueError(f"routing chooses between models, but the data has outcomes for "
                         f"{len(table.models)}: {', '.join(table.models) or '(none)'}; give "
                         "it a score column for at least two models")
    if strong is None and weak is None:
        if len(table.models) != 2:
            return None
        means = table.scores.mean(axis=0)
        hi = int(np.argmax(means))
        return table.models[hi], table.models[1 - hi]
    if strong is None or weak is None:
        raise ValueError("name both --strong and --weak, or neither")
    for name in (strong, weak):
        if name not in table.models:
            raise ValueError(f"model {name!r} is not in the data; it has {table.models}")
    if strong == weak:
        raise ValueError("strong and weak must be different models")
    return strong, weak


@dataclass(frozen=True)
class _CostContext:
    table: CostTable
    per_request: np.ndarray  # (n, m) float dollars
    low: tuple[float, float]  # (cost, quality) of the cheapest model alone
    high: tuple[float, float]  # ... of the best model alone
    best: int


def _cost_context(
    table: OutcomeTable, options: EvalOptions, models: list[str]
) -> tuple[_CostContext | None, str, dict[str, str]]:
    prices = resolve_prices(table.models, options.prices)
    shown = {m: (p.describe() + f" ({p.source})") if p else "unknown" for m, p in prices.items()}
    unknown = [m for m in models if prices.get(m) is None]
    if unknown:
        return None, f"no cost axis: no price for {unknown} (pass --price MODEL=IN,OUT)", shown
    costs = CostTable.build(table, prices, output_tokens=options.output_tokens)
    per_request = costs.per_request()
    cols = [table.models.index(m) for m in models]
    mean_cost = per_request.mean(axis=0)
    quality = table.scores.mean(axis=0)
    cheap = min(cols, key=lambda j: (mean_cost[j], -quality[j]))
    best = max(cols, key=lambda j: (quality[j], -mean_cost[j]))
    ctx = _CostContext(
        table=costs,
        per_request=per_request,
        low=(float(mean_cost[cheap]), float(quality[cheap])),
        high=(float(mean_cost[best]), float(quality[best])),
        best=best,
    )
    return ctx, costs.tokens.source, shown


def _cheapest(
    ctx: _CostContext, curve: fr.CostQualityCurve, choice_at: Any, models: list[str]
) -> CheapestConfiguration | None:
    target = QUALITY_FRACTION * ctx.high[1]
    point = fr.cheapest_point(curve, target)
    if point is None:
        return None
    return CheapestConfiguration(
        setting_name=curve.setting_name,
        setting=float(curve.settings[point]),
        quality=float(curve.quality[point]),
        cost_per_1k=ctx.table.per_1k(choice_at(point)),
        best_model=ctx.table.models[ctx.best],
        best_model_cost_per_1k=ctx.table.model_per_1k(ctx.best),
        fraction=QUALITY_FRACTION,
    )


def _add_cost_axis(
    result: RouterResult, ctx: _CostContext, curve: fr.CostQualityCurve, choice_at: Any,
    models: list[str],
) -> None:
    result.cost_curve = curve
    result.cost_area = fr.normalised_area(curve, ctx.low, ctx.high)
    result.cheapest = _cheapest(ctx, curve, choice_at, models)


# ---------------------------------------------------------------- two models


def _pair_columns(table: OutcomeTable, pair: tuple[str, str]) -> tuple[int, int]:
    return table.models.index(pair[0]), table.models.index(pair[1])


def _threshold_result(
    name: str, kind: str, curve: mt.CallShareCurve, summary: mt.TwoModelSummary,
    cols: tuple[int, int], ctx: _CostContext | None, models: list[str],
) -> RouterResult:
    result = RouterResult(name, kind, summary=summary, share_curve=curve.on_grid())
    if ctx is not None:
        js, jw = cols
        cost_curve = fr.threshold_cost_curve(
            curve, ctx.per_request[:, js], ctx.per_request[:, jw]
        )

        def choice_at(point: int) -> np.ndarray:
            return np.where(curve.strong_mask(point), js, jw)

        _add_cost_axis(result, ctx, cost_curve, choice_at, models)
    return result


def _scored_router(
    name: str, win_prob: np.ndarray, table: OutcomeTable, cols: tuple[int, int],
    ctx: _CostContext | None, models: list[str],
) -> RouterResult:
    s, w = table.scores[:, cols[0]], table.scores[:, cols[1]]
    curve = mt.call_share_curve(win_prob, s, w)
    summary = mt.summarise(curve, mt.quantile_apgr(win_prob, s, w))
    return _threshold_result(name, "router", curve, summary, cols, ctx, models)


def _random_two_model(
    table: OutcomeTable, cols: tuple[int, int], ctx: _CostContext | None, seeds: int,
) -> RouterResult:
    s, w = table.scores[:, cols[0]], table.scores[:, cols[1]]
    base = mt.random_baseline(s, w, seeds=seeds)
    result = RouterResult(RANDOM, "random", summary=base.summary,
                          share_curve=(base.grid, base.performance))
    result.notes.append(f"{seeds} seeds; APGR std {base.apgr_std:.4f}")
    if ctx is None:
        return result
    # A random router's expected cost is linear in its strong share.
    cs, cw = ctx.per_request[:, cols[0]].mean(), ctx.per_request[:, cols[1]].mean()
    curve = fr.CostQualityCurve(cw + base.grid * (cs - cw), base.performance, base.grid, "share")
    result.cost_curve = curve
    result.cost_area = fr.normalised_area(curve, ctx.low, ctx.high)
    point = fr.cheapest_point(curve, QUALITY_FRACTION * ctx.high[1])
    if point is not None:
        share = Decimal(str(round(float(base.grid[point]), 6)))
        strong_1k, weak_1k = ctx.table.model_per_1k(cols[0]), ctx.table.model_per_1k(cols[1])
        result.cheapest = CheapestConfiguration(
            "share", float(base.grid[point]), float(base.performance[point]),
            weak_1k + share * (strong_1k - weak_1k), ctx.table.models[ctx.best],
            ctx.table.model_per_1k(ctx.best), QUALITY_FRACTION,
        )
        result.notes.append("cost at 95 % is the expected cost of the mean curve")
    return result


def _two_model_baselines(
    table: OutcomeTable, cols: tuple[int, int], ctx: _CostContext | None,
    options: EvalOptions, models: list[str],
) -> list[RouterResult]:
    s, w = table.scores[:, cols[0]], table.scores[:, cols[1]]
    oracle = mt.oracle_curve(s, w)
    return [
        _threshold_result(ORACLE, "oracle", oracle, mt.summarise(oracle), cols, ctx, models),
        _random_two_model(table, cols, ctx, options.random_seeds),
    ]


# ---------------------------------------------------------------- N models


def _lambda_result(
    name: str, kind: str, predicted: np.ndarray, table: OutcomeTable, ctx: _CostContext,
    models: list[str],
) -> RouterResult:
    curve = fr.lambda_sweep(predicted, table.scores, ctx.per_request)

    def choice_at(point: int) -> np.ndarray:
        return fr.policy_choice(predicted, ctx.per_request, float(curve.settings[point]))

    result = RouterResult(name, kind)
    _add_cost_axis(result, ctx, curve, choice_at, models)
    return result


def _random_n_model(table: OutcomeTable, ctx: _CostContext, seeds: int) -> RouterResult:
    runs = [
        _lambda_result(RANDOM, "random", np.random.default_rng(seed).random(table.scores.shape),
                       table, ctx, table.models)
        for seed in range(seeds)
    ]
    grids = [fr.on_cost_grid(r.cost_curve, ctx.low, ctx.high) for r in runs if r.cost_curve]
    budget = grids[0][0]
    quality = np.mean([np.interp(budget, b, q) for b, q in grids], axis=0)
    result = RouterResult(RANDOM, "random")
    result.cost_curve = fr.CostQualityCurve(budget, quality, budget, "budget")
    result.cost_area = float(np.mean([r.cost_area for r in runs if r.cost_area is not None]))
    found = [r.cheapest for r in runs if r.cheapest is not None]
    if len(found) == len(runs):
        first = found[0]
        mean_cost = sum((c.cost_per_1k for c in found), Decimal(0)) / len(found)
        result.cheapest = CheapestConfiguration(
            "lambda", float("nan"), float(np.mean([c.quality for c in found])), mean_cost,
            first.best_model, first.best_model_cost_per_1k, QUALITY_FRACTION,
        )
    result.notes.append(f"{seeds} seeds of uniform noise as predicted quality")
    return result


# ---------------------------------------------------------------- the run


def _router_results(
    table: OutcomeTable, options: EvalOptions, pair: tuple[str, str] | None,
    ctx: _CostContext | None,
) -> list[RouterResult]:
    fold_of = assign_folds(table.prompts, options.folds, options.seed)
    models = list(pair) if pair else table.models
    shared: dict[int, SharedFitFeaturizer] = {}
    results = []
    for name in options.routers:
        held = cross_validate(
            table, name, params=options.router_params.get(name), folds=options.folds,
            seed=options.seed, pair=pair, router_factory=options.router_factory,
            featurizer_factory=options.featurizer_factory, fold_of=fold_of,
            shared_features=shared,
        )
        if pair is not None and held.win_prob is not None:
            result = _scored_router(name, held.win_prob, table, _pair_columns(table, pair),
                                    ctx, models)
        elif ctx is not None and held.quality is not None:
            result = _lambda_result(name, "router", held.quality, table, ctx, models)
        else:
            raise LookupError("evaluating N models needs a price for every model (--price)")
        result.fit_seconds, result.predict_seconds = held.fit_seconds, held.predict_seconds
        results.append(result)
    return results


def evaluate(table: OutcomeTable, options: EvalOptions) -> EvaluationReport:
    """Cross-validate `options.routers` on `table` and measure them against the baselines."""
    import time

    started = time.perf_counter()
    live = sorted(_NEEDS_A_MODEL & set(options.routers))
    if live and options.router_factory is None:
        raise ValueError(f"{', '.join(live)}: asks a live model to rate each prompt, so it "
                         "cannot be cross-validated offline; leave it out of --routers")
    pair = two_model_pair(table, options.strong, options.weak)
    models = list(pair) if pair else list(table.models)
    ctx, cost_note, shown = _cost_context(table, options, models)
    if pair is None and ctx is None:
        raise LookupError(f"evaluating N models needs every model's price: {cost_note}")
    results = _router_results(table, options, pair, ctx)
    if pair is not None:
        results += _two_model_baselines(table, _pair_columns(table, pair), ctx, options, models)
    elif ctx is not None:
        results.append(_lambda_result(ORACLE, "oracle", table.scores, table, ctx, models))
        results.append(_random_n_model(table, ctx, options.random_seeds))
    quality = table.scores.mean(axis=0)
    return EvaluationReport(
        mode="two-model" if pair else "n-model",
        prompts=len(table),
        models=models,
        model_quality={m: float(quality[table.models.index(m)]) for m in models},
        strong=pair[0] if pair else None,
        weak=pair[1] if pair else None,
        folds=options.folds,
        seed=options.seed,
        results=results,
        cost_note=cost_note,
        model_cost_per_1k=None if ctx is None else {
            m: ctx.table.model_per_1k(table.models.index(m)) for m in models
        },
        prices={m: shown[m] for m in models},
        cost_bounds=None if ctx is None else (ctx.low, ctx.high),
        seconds=time.perf_counter() - started,
    )

