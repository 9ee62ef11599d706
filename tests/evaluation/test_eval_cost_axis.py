"""The dollar axis: Decimal prices, token counts, policy sweeps and the normalised area."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from interlock.costs.prices import ModelPrice
from interlock.evaluation import frontier as fr
from interlock.evaluation import metrics as mt
from interlock.evaluation.cost_axis import CostTable, parse_price, resolve_prices, token_counts
from interlock.routing.data import OutcomeTable


def _table(**tokens: np.ndarray) -> OutcomeTable:
    return OutcomeTable(
        prompts=["abcdefghij", "x" * 41],
        models=["big", "small"],
        scores=np.array([[1.0, 0.0], [1.0, 1.0]]),
        **tokens,
    )


PRICES = {
    "big": ModelPrice.per_million("3", "15"),
    "small": ModelPrice.per_million("0.075", "0.30"),
}


def test_parse_price_reads_dollars_per_million_as_decimal() -> None:
    model, price = parse_price("openai/gpt-4o=2.50,10")
    assert model == "openai/gpt-4o"
    assert price.input_per_token == Decimal("0.0000025")
    assert price.output_per_token == Decimal("0.00001")
    assert price.source == "command line"
    for bad in ("gpt-4o", "gpt-4o=1", "=1,2", "m=a,b", "m=-1,2"):
        with pytest.raises(ValueError):
            parse_price(bad)


def test_estimated_tokens_say_so() -> None:
    counts = token_counts(_table(), output_tokens=500)
    assert counts.input[:, 0].tolist() == [3, 11]  # ceil(10/4), ceil(41/4)
    assert (counts.output == 500).all()
    assert "estimated" in counts.source and "assumed 500" in counts.source


def test_tokens_from_the_data_are_used() -> None:
    table = _table(input_tokens=np.array([[1000, 900], [10, 9]]),
                   output_tokens=np.array([[500, 400], [5, 4]]))
    counts = token_counts(table)
    assert counts.input.tolist() == [[1000, 900], [10, 9]]
    assert counts.source == "input tokens from the data; output tokens from the data"


def test_cost_per_1k_is_exact_decimal_arithmetic() -> None:
    table = _table(input_tokens=np.array([[1000, 1000], [1000, 1000]]),
                   output_tokens=np.array([[500, 500], [500, 500]]))
    costs = CostTable.build(table, PRICES)
    # 1,000 in + 500 out: $0.0105 on big, $0.000225 on small per request.
    assert costs.model_per_1k(0) == Decimal("10.5")
    assert costs.model_per_1k(1) == Decimal("0.225")
    # Half and half: (0.0105 + 0.000225) / 2 * 1000
    assert costs.per_1k(np.array([0, 1])) == Decimal("5.3625")
    np.testing.assert_allclose(costs.per_request()[0], [0.0105, 0.000225])


def test_unknown_price_is_refused_not_zero() -> None:
    with pytest.raises(LookupError, match="--price"):
        CostTable.build(_table(), {"big": PRICES["big"], "small": None})
    resolved = resolve_prices(["big", "surely-no-such-model-xyz"], {"big": PRICES["big"]})
    assert resolved["big"] is PRICES["big"]
    assert resolved["surely-no-such-model-xyz"] is None


def test_policy_oracle_picks_the_cheapest_model_with_the_best_score() -> None:
    scores = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    cost = np.array([4.0, 2.0, 1.0])
    assert fr.policy_choice(scores, cost, 0.0).tolist() == [1, 0, 2]
    assert fr.policy_choice(scores, cost, np.inf).tolist() == [2, 2, 2]
    curve = fr.lambda_sweep(scores, scores, cost)
    assert curve.quality[0] == pytest.approx(2.5 / 3)
    assert curve.cost[0] == pytest.approx(7 / 3)
    assert curve.quality[-1] == pytest.approx(0.5 / 3) and curve.cost[-1] == 1.0
    cheapest = fr.cheapest_point(curve, 2.5 / 3)
    assert cheapest is not None and curve.cost[cheapest] == pytest.approx(7 / 3)


def _pair(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strong = (rng.random(n) < 0.8).astype(float)
    weak = (rng.random(n) < 0.6).astype(float)
    return strong, weak, rng.random(n) + 0.7 * (strong - weak)


def _cost_area(share_curve: mt.CallShareCurve, strong: np.ndarray, weak: np.ndarray) -> float:
    n = len(strong)
    cost_curve = fr.threshold_cost_curve(share_curve, np.full(n, 0.01), np.full(n, 0.001))
    return fr.normalised_area(cost_curve, (0.001, weak.mean()), (0.01, strong.mean()))


def test_area_on_the_cost_axis_equals_apgr_for_flat_token_counts() -> None:
    strong, weak, router = _pair(11, 4000)
    weak = np.minimum(weak, strong)  # a monotone curve: no running best to take
    share_curve = mt.call_share_curve(router, strong, weak)
    assert _cost_area(share_curve, strong, weak) == pytest.approx(mt.apgr(share_curve), abs=1e-3)


def test_area_on_the_cost_axis_credits_the_running_best() -> None:
    strong, weak, router = _pair(12, 4000)
    share_curve = mt.call_share_curve(router, strong, weak)
    # Past its peak this router loses quality by calling the strong model more;
    # on the cost axis one would stop spending there, so the area is larger.
    assert share_curve.performance.max() > share_curve.performance[-1]
    assert _cost_area(share_curve, strong, weak) > mt.apgr(share_curve)


def test_area_is_undefined_when_the_best_model_is_also_the_cheapest() -> None:
    curve = fr.CostQualityCurve(np.array([1.0, 2.0]), np.array([0.5, 0.6]),
                                np.array([1.0, 0.0]), "lambda")
    assert np.isnan(fr.normalised_area(curve, (2.0, 0.6), (1.0, 0.5)))


def test_pareto_front_drops_dominated_points() -> None:
    curve = fr.CostQualityCurve(np.array([3.0, 1.0, 2.0, 4.0]), np.array([0.7, 0.5, 0.8, 0.75]),
                                np.arange(4.0), "lambda")
    cost, quality = fr.pareto_front(curve)
    assert cost.tolist() == [1.0, 2.0] and quality.tolist() == [0.5, 0.8]


def test_evaluated_policy_is_the_one_the_gateway_runs() -> None:
    from interlock.routing.quality_policy import choose_tradeoff

    rng = np.random.default_rng(5)
    predicted = rng.random((50, 3))
    per_request = np.array([0.02, 0.004, 0.0005]) * rng.uniform(0.5, 1.5, (50, 3))
    per_1k = (per_request.mean(axis=0) * 1000).tolist()
    for lam in (0.0, 0.01, 0.1, 1.0):
        np.testing.assert_array_equal(fr.policy_choice(predicted, per_request, lam),
                                      choose_tradeoff(predicted, per_1k, lam))
    curve = fr.lambda_sweep(predicted, predicted, per_request)
    assert curve.setting_name == "lambda" and curve.settings[0] == 0.0
    assert (fr.policy_choice(predicted, per_request, np.inf) == 2).all()
