"""k-fold cross-validation of learned routers on an outcome table.

Folds are seeded and grouped: every copy of an identical prompt lands in the
same fold, so a router is never scored on a prompt it trained on. For each
fold a fresh router (from the factory) and a fresh featuriser are fitted on the
other k-1 folds only, then asked about the held-out prompts; the held-out
answers are pooled so every prompt is predicted exactly once, by a router that
never saw it.

Imports: numpy, the standard library, `routing.data`; `routing.learned` and
`routing.features` lazily (the default factories).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from interlock.routing.data import OutcomeTable

DEFAULT_FOLDS = 5

RouterFactory = Callable[..., Any]
FeaturizerFactory = Callable[[], Any]


def assign_folds(prompts: list[str], folds: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) of every prompt; identical prompts share a fold.

    Distinct prompts are shuffled with `seed` and dealt to the folds greedily,
    biggest groups first, into the fold with the fewest rows so far, which keeps
    the folds within one group's size of each other.
    """
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    groups: dict[str, int] = {}
    group_of = np.array([groups.setdefault(p, len(groups)) for p in prompts], dtype=np.int64)
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} distinct prompt(s) cannot fill {folds} folds: "
                         f"give at least {folds} distinct prompts, or fewer folds (--folds)")
    sizes = np.bincount(group_of, minlength=len(groups))
    shuffled = np.random.default_rng(seed).permutation(len(groups))
    # Stable sort keeps the shuffled order among groups of equal size.
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    fold_of_group = np.empty(len(groups), dtype=np.int64)
    load = np.zeros(folds, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return fold_of_group[group_of]


def _digest(texts: Sequence[str]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.digest()


class SharedFitFeaturizer:
    """A featuriser shared by the routers of one fold: fitted once per training set.

    Every learned router fits its featuriser on its training prompts; within a
    fold those are the same prompts, so the second and later fits are skipped and
    transforms of the same prompt list are reused. A fit on different prompts
    refits, so nothing from another fold can leak in. Everything else is
    delegated to the wrapped featuriser.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._fitted: bytes | None = None
        self._transforms: dict[bytes, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        attr = getattr(self.inner, name)
        if name == "transform_sparse":
            # Only offered when the wrapped featuriser has it, as routers check with hasattr.
            return lambda texts: self._cached("sparse", texts, attr)
        return attr

    def fit(self, texts: Sequence[str]) -> None:
        key = _digest(texts)
        if key != self._fitted:
            self.inner.fit(texts)
            self._fitted = key
            self._transforms.clear()

    def transform(self, texts: Sequence[str]) -> Any:
        return self._cached("dense", texts, self.inner.transform)

    def _cached(self, kind: str, texts: Sequence[str], compute: Callable[..., Any]) -> Any:
        key = kind.encode() + _digest(texts)
        if key not in self._transforms:
            self._transforms[key] = compute(texts)
        return self._transforms[key].copy()


@dataclass(frozen=True)
class HeldOut:
    """Pooled held-out predictions of one router over all folds.

    `win_prob` (two-model runs): P(strong beats weak) per prompt. `quality`
    (N-model runs): predicted quality per prompt and model, columns in the
    table's model order.
    """

    router: str
    win_prob: np.ndarray | None
    quality: np.ndarray | None
    fit_seconds: float
    predict_seconds: float


def _default_router_factory() -> RouterFactory:
    from interlock.routing.learned import make_router

    return make_router


def _default_featurizer_factory() -> FeaturizerFactory:
    from interlock.routing.features import HashedNgramFeaturizer

    return HashedNgramFeaturizer


def _predict_fold(
    router: Any, table: OutcomeTable, test: np.ndarray, pair: tuple[str, str] | None
) -> np.ndarray:
    prompts = [table.prompts[i] for i in test]
    if pair is not None:
        return np.asarray(router.win_prob(prompts, pair[0], pair[1]), dtype=np.float64)
    predicted = np.asarray(router.predict_quality(prompts), dtype=np.float64)
    columns = [list(router.models).index(m) for m in table.models]
    return predicted[:, columns]


def cross_validate(
    table: OutcomeTable,
    router: str,
    *,
    params: Mapping[str, Any] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    pair: tuple[str, str] | None = None,
    router_factory: RouterFactory | None = None,
    featurizer_factory: FeaturizerFactory | None = None,
    fold_of: np.ndarray | None = None,
    shared_features: dict[int, SharedFitFeaturizer] | None = None,
) -> HeldOut:
    """Train `router` on k-1 folds, predict the held-out fold, pool the predictions.

    `pair=(strong, weak)` asks for P(strong wins) per prompt; without it the
    router predicts every model's quality. `fold_of` reuses a fold assignment
    (so several routers see the same folds); by default it comes from `seed`.
    `shared_features`, a dict kept across calls, lets routers evaluated on the
    same folds share each fold's fitted featuriser (see `SharedFitFeaturizer`).
    """
    make = router_factory or _default_router_factory()
    featurize = featurizer_factory or _default_featurizer_factory()
    fold_of = assign_folds(table.prompts, folds, seed) if fold_of is None else fold_of
    n, m = table.scores.shape
    pooled = np.full(n if pair is not None else (n, m), np.nan, dtype=np.float64)
    fit_s = predict_s = 0.0
    for fold in range(int(fold_of.max()) + 1):
        test = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        model = make(router, **dict(params or {}))
        if shared_features is None:
            featurizer = featurize()
        else:
            featurizer = shared_features.setdefault(fold, SharedFitFeaturizer(featurize()))
        started = time.perf_counter()
        model.fit(table.take(train), featurizer, seed=seed + fold)
        fit_s += time.perf_counter() - started
        started = time.perf_counter()
        pooled[test] = _predict_fold(model, table, test, pair)
        predict_s += time.perf_counter() - started
    if np.isnan(pooled).any():
        raise RuntimeError(f"router {router!r} left some held-out prompts without a prediction")
    return HeldOut(
        router=router,
        win_prob=pooled if pair is not None else None,
        quality=pooled if pair is None else None,
        fit_seconds=fit_s,
        predict_seconds=predict_s,
    )
