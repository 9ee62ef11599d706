"""The classifier router (the analogue of RouteLLM's `bert`): one L2-regularised
logistic regression per model on the prompt's features, predicting the chance
that the model answers well.

With the default featuriser it reads the sparse hashed TF-IDF directly (a linear
model wants every n-gram, not the 32-dim projection) with the featuriser's
prompt-shape columns after it; other featurisers give dense vectors and the same
code runs. Scores in (0, 1) are soft targets. The default `c` 0.5 (weaker
penalty than the 0.3 of TF-IDF alone) was chosen together with the shape weight
on outer split seeds 1 and 2 of RouteLLM's MMLU outcomes, not on the reported
seed-0 folds (docs/routing.md).
Trained with scipy's L-BFGS, which is deterministic, so a seed is not needed
for reproducibility (it is recorded anyway).

Imports: numpy, scipy (optimize), `routing.learned.base`, `routing.params`,
`routing.row_gather`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from interlock.routing.learned.base import QualityRouter, TrainingData, to_observations
from interlock.routing.params import POSITIVE, POSITIVE_INT, ParamSpec
from interlock.routing.row_gather import take_rows


@dataclass(frozen=True, slots=True)
class _OneRow:
    """One prompt's sparse features: column indices and their values."""

    columns: np.ndarray
    values: np.ndarray


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(
    x: Any, y: np.ndarray, *, c: float, max_iter: int = 300
) -> tuple[np.ndarray, float]:
    """Weights and bias minimising mean log-loss + ||w||^2 / (2 c n)."""
    from scipy.optimize import minimize

    n, d = x.shape
    xt = x.T.tocsr() if hasattr(x, "tocsr") else x.T
    reg = 1.0 / (c * n)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = np.asarray(x @ w).ravel() + b
        # log(1 + e^z) - y z, written to stay finite for large |z|
        ll = np.logaddexp(0.0, z) - y * z
        r = (_sigmoid(z) - y) / n
        grad = np.concatenate([np.asarray(xt @ r).ravel() + reg * w, [r.sum()]])
        return float(ll.mean() + 0.5 * reg * (w @ w)), grad

    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    return res.x[:d].astype(np.float32), float(res.x[d])


class ClassifierRouter(QualityRouter):
    name = "classifier"
    PARAMS: ClassVar[dict[str, ParamSpec]] = {
        "c": POSITIVE,
        "max_iter": POSITIVE_INT,
    }
    features = "sparse"

    def __init__(self, *, c: float = 0.5, max_iter: int = 300, **kw: Any) -> None:
        super().__init__(c=c, max_iter=max_iter, **kw)
        self.c, self.max_iter = float(c), int(max_iter)
        self.w = np.zeros((0, 0), dtype=np.float32)
        self.b = np.zeros(0)

    def _fit(self, data: TrainingData, seed: int) -> None:
        obs = to_observations(data, self.models)
        # The batch path even for a single training prompt: the one-prompt
        # shortcut below is for decisions.
        x = super()._features(obs.prompts)
        m = len(self.models)
        self.w = np.zeros((x.shape[1], m), dtype=np.float32)
        self.b = np.zeros(m)
        for j in range(m):
            sums = np.bincount(obs.prompt[obs.model == j], obs.score[obs.model == j],
                               minlength=len(obs.prompts))
            counts = np.bincount(obs.prompt[obs.model == j], minlength=len(obs.prompts))
            rows = np.flatnonzero(counts > 0)
            if len(rows) == 0:
                continue
            self.w[:, j], self.b[j] = fit_logistic(
                x[rows], sums[rows] / counts[rows], c=self.c, max_iter=self.max_iter
            )

    def _features(self, prompts: Sequence[str]) -> Any:
        # One prompt (a routing decision): its columns and values straight from
        # the featuriser, without a scipy matrix; batches go the usual way.
        sparse_row = getattr(self.featurizer, "sparse_row", None)
        if len(prompts) == 1 and sparse_row is not None:
            return _OneRow(*sparse_row(prompts[0]))
        return super()._features(prompts)

    def _predict(self, x: Any) -> np.ndarray:
        if isinstance(x, _OneRow):
            # The prompt's rows of the weights (a fifth of a long prompt's decision
            # when fancy-indexed).
            z = x.values.astype(np.float32) @ take_rows(self.w, x.columns)
            return _sigmoid(np.asarray(z, dtype=np.float64)[None, :] + self.b)
        return _sigmoid(np.asarray(x @ self.w, dtype=np.float64) + self.b)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"w": self.w, "b": self.b}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.w, self.b = arrays["w"].astype(np.float32), arrays["b"]
