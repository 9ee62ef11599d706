"""Cross-validation: grouped, seeded folds and pooled held-out predictions without leakage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from interlock.evaluation.crossval import SharedFitFeaturizer, assign_folds, cross_validate
from interlock.routing.data import OutcomeTable


class MemorisingRouter:
    """Knows the outcome of every prompt it trained on and nothing else (0.5).

    Any held-out prediction other than 0.5 would mean the prompt leaked into training.
    """

    name = "memo"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.models: list[str] = []
        self.seen: dict[str, np.ndarray] = {}
        self.featurizer_fitted_on: list[str] = []

    def fit(self, data: OutcomeTable, featurizer: Any, *, seed: int = 0) -> None:
        self.models = list(data.models)
        self.seen = {p: data.scores[i] for i, p in enumerate(data.prompts)}
        featurizer.fit(data.prompts)
        self.featurizer_fitted_on = featurizer.prompts

    def predict_quality(self, prompts: list[str]) -> np.ndarray:
        default = np.full(len(self.models), 0.5)
        return np.array([self.seen.get(p, default) for p in prompts])

    def win_prob(self, prompts: list[str], strong: str, weak: str) -> np.ndarray:
        q = self.predict_quality(prompts)
        i, j = self.models.index(strong), self.models.index(weak)
        return 0.5 + 0.5 * (q[:, i] - q[:, j])


class RecordingFeaturizer:
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def fit(self, prompts: list[str]) -> None:
        self.prompts = list(prompts)


def _table(n: int = 60, duplicates: int = 3) -> OutcomeTable:
    rng = np.random.default_rng(4)
    prompts = [f"question {i % (n // duplicates)}" for i in range(n)]
    base = {p: rng.random(2).round() for p in set(prompts)}
    return OutcomeTable(prompts=prompts, models=["strong", "weak"],
                        scores=np.array([base[p] for p in prompts]))


def test_identical_prompts_share_a_fold_and_folds_are_balanced() -> None:
    prompts = [f"p{i % 37}" for i in range(200)] + ["same"] * 9
    folds = assign_folds(prompts, 5, seed=3)
    for p in set(prompts):
        assert len({int(f) for f, q in zip(folds, prompts, strict=True) if q == p}) == 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.sum() == len(prompts) and sizes.max() - sizes.min() <= 9


def test_folds_are_reproducible_and_depend_on_the_seed() -> None:
    prompts = [f"p{i}" for i in range(100)]
    assert (assign_folds(prompts, 5, 0) == assign_folds(prompts, 5, 0)).all()
    assert (assign_folds(prompts, 5, 0) != assign_folds(prompts, 5, 1)).any()
    with pytest.raises(ValueError):
        assign_folds(prompts[:3], 5, 0)


def test_held_out_predictions_never_come_from_training_rows() -> None:
    table = _table()
    built: list[MemorisingRouter] = []

    def factory(name: str, **params: Any) -> MemorisingRouter:
        router = MemorisingRouter(**params)
        built.append(router)
        return router

    held = cross_validate(table, "memo", params={"k": 3}, folds=4, seed=1,
                          pair=("strong", "weak"), router_factory=factory,
                          featurizer_factory=RecordingFeaturizer)
    assert held.win_prob is not None and held.quality is None
    assert np.allclose(held.win_prob, 0.5)  # nothing leaked
    assert len(built) == 4 and all(r.params == {"k": 3} for r in built)
    folds = assign_folds(table.prompts, 4, 1)
    for fold, router in enumerate(built):
        held_out = {p for p, f in zip(table.prompts, folds, strict=True) if f == fold}
        assert held_out.isdisjoint(router.featurizer_fitted_on)
        assert len(router.featurizer_fitted_on) == int((folds != fold).sum())


def test_a_leaky_split_would_be_caught() -> None:
    table = _table()
    # Folds that ignore the groups put copies of a prompt on both sides.
    leaky = np.arange(len(table)) % 3
    held = cross_validate(table, "memo", folds=3, fold_of=leaky,
                          router_factory=lambda name, **p: MemorisingRouter(**p),
                          featurizer_factory=RecordingFeaturizer)
    assert held.quality is not None
    assert not np.allclose(held.quality, 0.5)


def test_pooled_predictions_are_reproducible_and_in_model_order() -> None:
    table = _table()

    class Reordered(MemorisingRouter):
        def fit(self, data: OutcomeTable, featurizer: Any, *, seed: int = 0) -> None:
            super().fit(data.select_models(["weak", "strong"]), featurizer, seed=seed)
            self.bias = np.random.default_rng(seed).random()

        def predict_quality(self, prompts: list[str]) -> np.ndarray:
            q = super().predict_quality(prompts)
            return q + np.array([0.0, self.bias])  # column 1 is "strong" here

    def run() -> np.ndarray:
        held = cross_validate(table, "memo", folds=5, seed=7,
                              router_factory=lambda name, **p: Reordered(**p),
                              featurizer_factory=RecordingFeaturizer)
        assert held.quality is not None
        return held.quality

    first, second = run(), run()
    np.testing.assert_array_equal(first, second)
    assert np.allclose(first[:, 1], 0.5)  # "weak" is column 1 of the table
    assert (first[:, 0] > 0.5).all()


class CountingFeaturizer(RecordingFeaturizer):
    fits = 0

    def fit(self, prompts: list[str]) -> None:
        CountingFeaturizer.fits += 1
        super().fit(prompts)

    def transform(self, prompts: list[str]) -> np.ndarray:
        return np.array([[len(p)] for p in prompts], dtype=float)


def test_routers_on_the_same_folds_share_one_featuriser_fit_per_fold() -> None:
    table = _table()
    CountingFeaturizer.fits = 0
    shared: dict[int, SharedFitFeaturizer] = {}
    first = second = None
    for _ in range(2):
        held = cross_validate(table, "memo", folds=4, seed=2, shared_features=shared,
                              router_factory=lambda name, **p: MemorisingRouter(**p),
                              featurizer_factory=CountingFeaturizer)
        first, second = second, held.quality
    assert CountingFeaturizer.fits == 4  # not 8
    assert first is not None and second is not None
    np.testing.assert_array_equal(first, second)
    # A different training set (another seed's folds) refits rather than reuse.
    cross_validate(table, "memo", folds=4, seed=3, shared_features=shared,
                   router_factory=lambda name, **p: MemorisingRouter(**p),
                   featurizer_factory=CountingFeaturizer)
    assert CountingFeaturizer.fits == 8
    wrapped = shared[0]
    out = wrapped.transform(["ab", "abc"])
    out[0, 0] = 99.0  # callers may scribble on what they get back
    assert wrapped.transform(["ab", "abc"]).tolist() == [[2.0], [3.0]]
    assert wrapped.prompts == wrapped.inner.prompts  # other attributes pass through


def test_shared_featuriser_offers_sparse_features_only_when_the_inner_one_does() -> None:
    class Sparse(CountingFeaturizer):
        calls = 0

        def transform_sparse(self, prompts: list[str]) -> np.ndarray:
            Sparse.calls += 1
            return np.ones((len(prompts), 2))

    assert not hasattr(SharedFitFeaturizer(CountingFeaturizer()), "transform_sparse")
    wrapped = SharedFitFeaturizer(Sparse())
    assert hasattr(wrapped, "transform_sparse")
    wrapped.fit(["a", "b"])
    assert wrapped.transform_sparse(["a"]).shape == (1, 2)
    wrapped.transform_sparse(["a"])
    assert Sparse.calls == 1
