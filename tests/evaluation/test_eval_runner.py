"""A whole evaluation run on synthetic data: routers beside the baselines, JSON, table, PNG."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interlock.costs.prices import ModelPrice
from interlock.evaluation.plots import save_plot
from interlock.evaluation.report import render_table, report_json
from interlock.evaluation.runner import ORACLE, RANDOM, EvalOptions, evaluate
from interlock.routing.data import OutcomeTable


class KeywordRouter:
    """Learns each model's mean score per leading word of the prompt; a real if tiny learner."""

    def __init__(self, **params: Any) -> None:
        self.models: list[str] = []
        self.means: dict[str, np.ndarray] = {}
        self.overall = np.zeros(0)

    def fit(self, data: OutcomeTable, featurizer: Any, *, seed: int = 0) -> None:
        self.models = list(data.models)
        self.overall = data.scores.mean(axis=0)
        keys = [p.split()[0] for p in data.prompts]
        for key in set(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            self.means[key] = data.scores[rows].mean(axis=0)

    def predict_quality(self, prompts: list[str]) -> np.ndarray:
        return np.array([self.means.get(p.split()[0], self.overall) for p in prompts])

    def win_prob(self, prompts: list[str], strong: str, weak: str) -> np.ndarray:
        q = self.predict_quality(prompts)
        i, j = self.models.index(strong), self.models.index(weak)
        return 0.5 + 0.5 * (q[:, i] - q[:, j])


def _factory(name: str, **params: Any) -> KeywordRouter:
    assert name == "keyword"
    return KeywordRouter(**params)


def _table(models: list[str], n: int = 400) -> OutcomeTable:
    rng = np.random.default_rng(8)
    kinds = rng.choice(["easy", "medium", "hard"], size=n)
    p_right = {"easy": [0.95, 0.9, 0.85], "medium": [0.9, 0.6, 0.4], "hard": [0.7, 0.2, 0.1]}
    scores = np.array([rng.random(3) < p_right[k] for k in kinds], dtype=float)
    prompts = [f"{k} question number {i}" for i, k in enumerate(kinds)]
    return OutcomeTable(prompts=prompts, models=["big", "mid", "small"], scores=scores
                        ).select_models(models)


PRICES = {
    "big": ModelPrice.per_million("10", "30"),
    "mid": ModelPrice.per_million("1", "2"),
    "small": ModelPrice.per_million("0.1", "0.2"),
}


def _options(**kw: Any) -> EvalOptions:
    return EvalOptions(routers=["keyword"], folds=4, seed=0, prices=dict(PRICES),
                       router_factory=_factory, featurizer_factory=lambda: None, **kw)


def test_two_model_run_beats_random_and_stays_under_the_oracle(tmp_path: Path) -> None:
    report = evaluate(_table(["big", "small"]), _options(output_tokens=100))
    assert report.mode == "two-model" and (report.strong, report.weak) == ("big", "small")
    by_name = {r.name: r for r in report.results}
    router, oracle, rand = by_name["keyword"], by_name[ORACLE], by_name[RANDOM]
    assert router.summary and oracle.summary and rand.summary
    assert rand.summary.apgr < router.summary.apgr < oracle.summary.apgr
    assert router.summary.cpt50 < rand.summary.cpt50
    assert "10 seeds" in rand.notes[0]
    # Dollars: exact Decimals, cheaper than always using the best model.
    assert report.model_cost_per_1k is not None
    cheap = router.cheapest
    assert cheap is not None and isinstance(cheap.cost_per_1k, Decimal)
    assert report.model_cost_per_1k["small"] < cheap.cost_per_1k < report.model_cost_per_1k["big"]
    assert cheap.quality >= 0.95 * report.model_quality["big"]
    assert 0 < cheap.saving_share < 1
    assert "estimated" in report.cost_note and "assumed 100" in report.cost_note

    data = json.loads(json.dumps(report_json(report)))
    names = [r["name"] for r in data["results"]]
    assert names == ["keyword", ORACLE, RANDOM]
    first = data["results"][0]
    assert first["apgr"] == pytest.approx(router.summary.apgr, abs=1e-6)
    assert len(first["share_curve"]["strong_share"]) == 101
    assert Decimal(first["cheapest_95"]["usd_per_1k_requests"]) > 0

    text = render_table(report)
    assert "keyword" in text and "APGR" in text and "CPT(50%)" in text and "$/1k@95%" in text

    png = save_plot(report, tmp_path / "img" / "plot.png", title="synthetic")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_n_model_run_traces_quality_against_cost(tmp_path: Path) -> None:
    report = evaluate(_table(["big", "mid", "small"]), _options())
    assert report.mode == "n-model" and report.strong is None
    by_name = {r.name: r for r in report.results}
    router, oracle, rand = by_name["keyword"], by_name[ORACLE], by_name[RANDOM]
    assert router.cost_area is not None and oracle.cost_area is not None
    assert rand.cost_area is not None
    assert rand.cost_area < router.cost_area < oracle.cost_area
    assert router.cheapest is not None and router.cheapest.setting_name == "lambda"
    assert router.cheapest.saving_share > 0
    png = save_plot(report, tmp_path / "n.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_two_model_run_without_prices_skips_only_the_cost_axis() -> None:
    table = _table(["big", "small"]).select_models(["big", "small"])
    table.models = ["no-such-model-a", "no-such-model-b"]
    report = evaluate(table, EvalOptions(routers=["keyword"], folds=3, router_factory=_factory,
                                         featurizer_factory=lambda: None))
    assert "no price" in report.cost_note and report.model_cost_per_1k is None
    assert all(r.cheapest is None and r.summary is not None for r in report.results)


def test_naming_only_one_of_strong_and_weak_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        evaluate(_table(["big", "mid", "small"]), _options(strong="big"))
