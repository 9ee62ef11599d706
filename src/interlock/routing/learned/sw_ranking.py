"""The similarity-weighted ranking router (RouteLLM's `sw_ranking`): a
Bradley-Terry fit per query in which training battles on similar prompts weigh more.

An outcome table becomes one battle per prompt and model pair (higher score
wins, equal scores tie). For speed, battles are summed per training prompt into
wins and games for each model pair; a query's weights exp(gamma * similarity)
then aggregate them with one matrix product, and a few minorise-maximise steps
give the Bradley-Terry strengths.

Imports: numpy, `routing.learned.base`, `routing.params`.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, ClassVar

import numpy as np

from interlock.routing.learned.base import QualityRouter, TrainingData, to_pairs
from interlock.routing.params import NON_NEGATIVE, POSITIVE, POSITIVE_INT, ParamSpec


class SwRankingRouter(QualityRouter):
    name = "sw_ranking"
    PARAMS: ClassVar[dict[str, ParamSpec]] = {
        "gamma": NON_NEGATIVE,
        "prior": POSITIVE,
        "iterations": POSITIVE_INT,
    }

    def __init__(self, *, gamma: float = 10.0, prior: float = 1.0, iterations: int = 30,
                 **kw: Any) -> None:
        super().__init__(gamma=gamma, prior=prior, iterations=iterations, **kw)
        self.gamma, self.prior, self.iterations = float(gamma), float(prior), int(iterations)
        self.x = np.zeros((0, 0), dtype=np.float32)
        self.wins = np.zeros((0, 0))  # (n, pairs): wins of the pair's first model
        self.games = np.zeros((0, 0))
        self._pairs: tuple[np.ndarray, ...] | None = None

    def _pair_index(self) -> tuple[np.ndarray, np.ndarray]:
        m = len(self.models)
        pa, pb = zip(*combinations(range(m), 2), strict=True) if m > 1 else ((), ())
        return np.array(pa, dtype=np.int64), np.array(pb, dtype=np.int64)

    def _incidence(self) -> tuple[np.ndarray, ...]:
        """Pair indices and incidence matrices (pairs, m), which turn per-pair sums into
        per-model sums; built once, not on every decision."""
        if self._pairs is None or self._pairs[2].shape[1] != len(self.models):
            pa, pb = self._pair_index()
            eye = np.eye(len(self.models))
            first, second = eye[pa], eye[pb]
            self._pairs = (pa, pb, first, second, first + second)
        return self._pairs

    def _fit(self, data: TrainingData, seed: int) -> None:
        assert self.featurizer is not None
        pairs = to_pairs(data, self.models)
        self.x = self.featurizer.transform(pairs.prompts).astype(np.float32)
        m = len(self.models)
        lo, hi = np.minimum(pairs.a, pairs.b), np.maximum(pairs.a, pairs.b)
        won = np.where(pairs.a == lo, pairs.result, 1.0 - pairs.result)
        # Column of each (lo, hi) pair in combinations order.
        col = lo * m - lo * (lo + 1) // 2 + (hi - lo - 1)
        n_pairs = m * (m - 1) // 2
        self.wins = np.zeros((len(pairs.prompts), n_pairs))
        self.games = np.zeros((len(pairs.prompts), n_pairs))
        np.add.at(self.wins, (pairs.prompt, col), won)
        np.add.at(self.games, (pairs.prompt, col), 1.0)

    def strengths(self, x: Any) -> np.ndarray:
        """Bradley-Terry log-strengths per query, (q, m)."""
        sims = (self.x @ np.asarray(x, dtype=np.float32).T).T  # big matrix kept in C order
        w = np.exp(self.gamma * (sims - sims.max(axis=1, keepdims=True)))
        wins, games = w @ self.wins, w @ self.games  # (q, pairs)
        pa, pb, first, second, both = self._incidence()
        m = len(self.models)
        # A prior of `prior` tied games per pair keeps strengths finite.
        wins = wins + 0.5 * self.prior
        games = games + self.prior
        won = wins @ first + (games - wins) @ second
        p = np.ones((len(wins), m))
        for _ in range(self.iterations):
            denom = (games / (p[:, pa] + p[:, pb])) @ both
            new = won / np.maximum(denom, 1e-12)
            new /= new.sum(axis=1, keepdims=True)
            done = np.abs(new - p).max() < 1e-10
            p = new
            if done:
                break
        return np.asarray(np.log(np.maximum(p, 1e-12)))

    def _predict(self, x: Any) -> np.ndarray:
        """Each model's chance of beating a model drawn from the others."""
        theta = self.strengths(x)
        m = theta.shape[1]
        if m == 1:
            return np.full((len(theta), 1), 0.5)
        beat = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))
        return np.asarray((beat.sum(axis=2) - 0.5) / (m - 1))

    def _win_from_features(self, x: Any, s: int, w: int) -> np.ndarray:
        theta = self.strengths(x)
        return np.asarray(1.0 / (1.0 + np.exp(theta[:, w] - theta[:, s])))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"x": self.x, "wins": self.wins, "games": self.games}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.x, self.wins, self.games = arrays["x"], arrays["wins"], arrays["games"]
