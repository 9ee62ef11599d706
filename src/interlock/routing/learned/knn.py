"""The k-nearest-neighbours router: a model's quality on a prompt is its mean
score on the k most similar training prompts.

Neighbours are weighted by their similarity, and the estimate shrinks towards
the model's overall mean by `prior` pseudo-observations, so a prompt with few
close neighbours does not swing to 0 or 1. Brute-force dot products over the
featuriser's dense vectors: 10,000 prompts x 32 dims is 1.3 MB, which a core's
cache holds (at 128 dims the product alone took 0.2 ms, waiting on memory).

Imports: numpy, `routing.learned.base`, `routing.params`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from interlock.routing.learned.base import QualityRouter, TrainingData, to_observations
from interlock.routing.params import NON_NEGATIVE, POSITIVE_INT, ParamSpec


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, in index order.

    Partitioning the values alone and selecting by the k-th largest is a third
    faster than np.argpartition, which carries the indices along (90 against
    60 us for 10,000 similarities, most of a decision's neighbour search).
    Values tied with the k-th largest are cut to make exactly k."""
    n = len(values)
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    kth = np.partition(values, n - k)[n - k]
    top = np.flatnonzero(values >= kth)
    if len(top) < k:  # NaNs (from an embedding service, say) compare false
        return np.sort(np.argpartition(values, n - k)[n - k :])
    if len(top) > k:
        above = top[values[top] > kth]
        tied = top[values[top] == kth]
        top = np.sort(np.concatenate([above, tied[: k - len(above)]]))
    return top


class KnnRouter(QualityRouter):
    name = "knn"
    PARAMS: ClassVar[dict[str, ParamSpec]] = {
        "k": POSITIVE_INT,
        "power": NON_NEGATIVE,
        "prior": NON_NEGATIVE,
    }

    def __init__(self, *, k: int = 100, power: float = 4.0, prior: float = 2.0, **kw: Any):
        super().__init__(k=k, power=power, prior=prior, **kw)
        self.k, self.power, self.prior = int(k), float(power), float(prior)
        self.x = np.zeros((0, 0), dtype=np.float32)
        self.sums = np.zeros((0, 0))
        self.counts = np.zeros((0, 0))
        self._overall: np.ndarray | None = None  # each model's mean, computed once
        self._stacked: np.ndarray | None = None  # sums beside counts, for one gather

    def _fit(self, data: TrainingData, seed: int) -> None:
        obs = to_observations(data, self.models)
        assert self.featurizer is not None
        self.x = self.featurizer.transform(obs.prompts).astype(np.float32)
        n, m = len(obs.prompts), len(obs.models)
        self.sums = np.zeros((n, m))
        self.counts = np.zeros((n, m))
        np.add.at(self.sums, (obs.prompt, obs.model), obs.score)
        np.add.at(self.counts, (obs.prompt, obs.model), 1.0)
        self._overall = self._stacked = None

    def _predict(self, x: Any) -> np.ndarray:
        q = np.asarray(x, dtype=np.float32)
        if len(q) == 1:
            return self._predict_one(q[0])[None, :]
        # (n, d) @ (d, q) keeps the big matrix in its C order: a transposed view is far slower.
        sims = (self.x @ q.T).T  # (q, n)
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None) ** self.power + 1e-9
        sums = np.einsum("qk,qkm->qm", w, self.sums[top])
        counts = np.einsum("qk,qkm->qm", w, self.counts[top])
        # The prior is in units of an average neighbour's weight.
        prior = self.prior * w.mean(axis=1, keepdims=True)
        return (sums + prior * self._mean()) / (counts + prior)

    def _predict_one(self, x: np.ndarray) -> np.ndarray:
        """`_predict` for one prompt with 1-d arithmetic (the decision path): the
        batched einsums cost more than the neighbour search they follow."""
        sims = self.x @ x
        top = _top_k(sims, min(self.k, len(sims)))
        w = np.clip(sims[top], 0.0, None) ** self.power + 1e-9
        m = self.sums.shape[1]
        both = w @ self._sums_counts()[top]  # (2m,): weighted sums, then weighted counts
        prior = self.prior * w.mean()
        return np.asarray((both[:m] + prior * self._mean()) / (both[m:] + prior))

    def _sums_counts(self) -> np.ndarray:
        if self._stacked is None:
            self._stacked = np.hstack([self.sums, self.counts])
        return self._stacked

    def _mean(self) -> np.ndarray:
        if self._overall is None:
            self._overall = self.sums.sum(0) / np.maximum(self.counts.sum(0), 1e-12)
        return self._overall

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"x": self.x, "sums": self.sums, "counts": self.counts}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.x, self.sums, self.counts = arrays["x"], arrays["sums"], arrays["counts"]
        self._overall = self._stacked = None
