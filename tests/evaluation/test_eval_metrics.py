"""RouteLLM's two-model metrics against hand-computed values and known baselines."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from interlock.evaluation import metrics as mt

# Four prompts: the strong model helps on prompts 0 and 3 only.
STRONG = np.array([1.0, 1.0, 0.0, 1.0])
WEAK = np.array([0.0, 1.0, 0.0, 0.0])


def test_curve_and_metrics_match_hand_computation() -> None:
    curve = mt.call_share_curve(np.array([0.9, 0.1, 0.2, 0.8]), STRONG, WEAK)
    assert curve.weak == 0.25 and curve.strong == 0.75
    np.testing.assert_allclose(curve.shares, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.performance, [0.25, 0.5, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(curve.pgr, [0, 0.5, 1, 1, 1])
    # Trapezoids: .25*(0+.5)/2 + .25*(.5+1)/2 + .25 + .25
    assert mt.apgr(curve) == pytest.approx(0.75)
    assert mt.cpt(curve, 0.5) == pytest.approx(0.25)
    assert mt.cpt(curve, 0.8) == pytest.approx(0.25 + 0.3 / 0.5 * 0.25)
    # 95 % of 0.75 = 0.7125, reached between shares .25 (0.5) and .5 (0.75).
    assert mt.share_for_strong_quality(curve) == pytest.approx(0.25 + 0.2125 / 0.25 * 0.25)
    assert curve.thresholds[1] == 0.9 and math.isinf(curve.thresholds[0])
    assert curve.strong_mask(2).tolist() == [True, False, False, True]


def test_tied_scores_give_the_straight_line() -> None:
    curve = mt.call_share_curve(np.zeros(4), STRONG, WEAK)
    np.testing.assert_allclose(curve.shares, [0.0, 1.0])
    assert mt.apgr(curve) == pytest.approx(0.5)
    assert mt.cpt(curve, 0.5) == pytest.approx(0.5)


def _synthetic(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strong = (rng.random(n) < 0.8).astype(float)
    weak = (rng.random(n) < 0.65).astype(float)
    return strong, weak


def test_perfect_router_equals_oracle_when_strong_never_hurts() -> None:
    strong, weak = _synthetic(2000)
    weak = np.minimum(weak, strong)  # the strong model is never worse
    perfect = mt.call_share_curve(strong - weak, strong, weak)
    oracle = mt.oracle_curve(strong, weak)
    assert mt.apgr(perfect) == pytest.approx(mt.apgr(oracle))
    # PGR climbs linearly to 1 over the helpful share h, then stays: area 1 - h/2.
    helpful = float((strong > weak).mean())
    assert mt.apgr(oracle) == pytest.approx(1 - helpful / 2)


def test_oracle_bounds_every_router_and_flattens() -> None:
    strong, weak = _synthetic(3000)
    oracle = mt.oracle_curve(strong, weak)
    assert np.all(np.diff(oracle.performance) >= 0)
    helpful = float(np.maximum(strong - weak, 0).mean())
    assert oracle.performance[-1] == pytest.approx(weak.mean() + helpful)
    grid = np.linspace(0, 1, 101)
    bound = np.interp(grid, oracle.shares, oracle.performance)
    for seed in range(3):
        router = np.random.default_rng(seed).random(len(strong)) + (strong - weak)
        _, perf = mt.call_share_curve(router, strong, weak).on_grid()
        assert np.all(perf <= bound + 1e-12)
    assert mt.apgr(oracle) > 1.0  # the weak model is right where the strong one is wrong


def test_reversed_router_is_below_random() -> None:
    strong, weak = _synthetic(5000)
    good = mt.call_share_curve(strong - weak, strong, weak)
    reversed_ = mt.call_share_curve(weak - strong, strong, weak)
    base = mt.random_baseline(strong, weak, seeds=10)
    assert mt.apgr(reversed_) < base.summary.apgr < mt.apgr(good)
    assert mt.apgr(reversed_) < 0.4


def test_random_router_is_about_one_half_on_large_data() -> None:
    strong, weak = _synthetic(40_000, seed=123)
    base = mt.random_baseline(strong, weak, seeds=10)
    assert base.seeds == 10
    assert base.summary.apgr == pytest.approx(0.5, abs=0.01)
    assert base.summary.cpt50 == pytest.approx(0.5, abs=0.02)
    assert base.summary.apgr_10_bins == pytest.approx(0.5, abs=0.01)
    assert base.apgr_std < 0.02
    np.testing.assert_allclose(base.performance[[0, -1]], [weak.mean(), strong.mean()])


def test_cpt_is_monotone_in_the_target() -> None:
    strong, weak = _synthetic(3000)
    router = np.random.default_rng(5).random(len(strong)) + 0.6 * (strong - weak)
    curve = mt.call_share_curve(router, strong, weak)
    targets = np.linspace(0.05, 1.0, 40)
    shares = [mt.cpt(curve, t) for t in targets]
    assert all(0 <= s <= 1 for s in shares)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(shares))
    # The PGR at the returned share really reaches the target.
    for t, s in zip(targets, shares, strict=True):
        assert np.interp(s, curve.shares, curve.pgr) >= t - 1e-9


def test_quantile_apgr_tracks_the_exact_area() -> None:
    strong, weak = _synthetic(10_000)
    router = np.random.default_rng(2).random(len(strong)) + 0.5 * (strong - weak)
    exact = mt.apgr(mt.call_share_curve(router, strong, weak))
    binned = mt.quantile_apgr(router, strong, weak, bins=10)
    assert binned == pytest.approx(exact, abs=0.02)
    assert binned < exact  # trapezoids under-read a concave curve


def test_equal_models_have_no_pgr() -> None:
    with pytest.raises(ValueError, match="PGR is undefined"):
        mt.apgr(mt.call_share_curve(np.arange(3.0), np.ones(3), np.ones(3)))


def test_summary_dict_names_every_metric() -> None:
    curve = mt.call_share_curve(np.array([0.9, 0.1, 0.2, 0.8]), STRONG, WEAK)
    data = mt.summarise(curve, 0.7).as_dict()
    assert data["apgr"] == pytest.approx(0.75)
    assert data["apgr_10_bins"] == 0.7
    assert set(data) == {"apgr", "apgr_10_bins", "cpt50", "cpt80", "share_for_95pct_strong"}
