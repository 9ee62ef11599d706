"""The learned-router interface and what every learned router shares.

A `QualityRouter` predicts, for each prompt, a quality in [0, 1] for each of its
models (`predict_quality`) and, for two of them, the probability that the strong
one beats the weak one (`win_prob`). It trains on an `OutcomeTable` or on
`Battles`; both become `Observations` (prompt, model, score) or `Pairs`
(prompt, model a, model b, result) here, so each router handles one shape.

Artefacts are a directory: manifest.json (router, params, models, featuriser,
data hash, seed, version), weights.npz, and featurizer/ with the featuriser's state.

Imports: numpy, `routing.data`, `routing.features`, `routing.featurizer_protocol`,
`routing.artefacts`, `routing.params` (and `routing.learned.registry` when loading).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from interlock.routing.artefacts import (
    ARTEFACT_FORMAT,
    ARTEFACT_VERSION,
    read_arrays,
    read_manifest,
    write_arrays,
    write_manifest,
)
from interlock.routing.data import Battles, OutcomeTable
from interlock.routing.features import featurizer_from_manifest
from interlock.routing.featurizer_protocol import Embed, Featurizer, atransform
from interlock.routing.params import ParamSpec

TrainingData = OutcomeTable | Battles


@dataclass
class Observations:
    """Pointwise training signal: model `model[k]` scored `score[k]` on prompt `prompt[k]`."""

    prompts: list[str]
    models: list[str]
    prompt: np.ndarray
    model: np.ndarray
    score: np.ndarray


@dataclass
class Pairs:
    """Pairwise signal: `result[k]` is 1 if model a won, 0 if b won, 0.5 for a tie."""

    prompts: list[str]
    models: list[str]
    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    result: np.ndarray


def _unique_prompts(prompts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    index: dict[str, int] = {}
    rows = np.array([index.setdefault(p, len(index)) for p in prompts], dtype=np.int64)
    return list(index), rows


def to_observations(data: TrainingData, models: Sequence[str] | None = None) -> Observations:
    """Outcome cells as observations; a battle gives each side 1, 0 or 0.5."""
    if isinstance(data, OutcomeTable):
        table = data.select_models(models) if models else data
        n, m = table.scores.shape
        return Observations(
            list(table.prompts), list(table.models),
            np.repeat(np.arange(n), m), np.tile(np.arange(m), n), table.scores.reshape(-1),
        )
    pairs = to_pairs(data, models)
    return Observations(
        pairs.prompts, pairs.models,
        np.concatenate([pairs.prompt, pairs.prompt]),
        np.concatenate([pairs.a, pairs.b]),
        np.concatenate([pairs.result, 1.0 - pairs.result]),
    )


def to_pairs(data: TrainingData, models: Sequence[str] | None = None) -> Pairs:
    """Battles as they are; an outcome table gives one battle per prompt and model pair."""
    if isinstance(data, Battles):
        names = list(models) if models else data.models
        col = {m: i for i, m in enumerate(names)}
        keep = [i for i in range(len(data)) if data.model_a[i] in col and data.model_b[i] in col]
        prompts, rows = _unique_prompts([data.prompts[i] for i in keep])
        outcome = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
        return Pairs(
            prompts, names, rows,
            np.array([col[data.model_a[i]] for i in keep], dtype=np.int64),
            np.array([col[data.model_b[i]] for i in keep], dtype=np.int64),
            np.array([outcome[data.winner[i]] for i in keep], dtype=np.float64),
        )
    table = data.select_models(models) if models else data
    n, m = table.scores.shape
    pa, pb = (np.array(x, dtype=np.int64) for x in zip(*combinations(range(m), 2), strict=True))
    diff = table.scores[:, pa] - table.scores[:, pb]
    result = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    return Pairs(
        list(table.prompts), list(table.models),
        np.repeat(np.arange(n), len(pa)), np.tile(pa, n), np.tile(pb, n), result.reshape(-1),
    )


def data_models(data: TrainingData, models: Sequence[str] | None) -> list[str]:
    return list(models) if models else list(data.models)


class QualityRouter(ABC):
    """Predicts each model's quality on a prompt; trained, saved and loaded by path."""

    name: ClassVar[str] = ""
    # "dense" (featuriser vectors), "sparse" (the hashed TF-IDF, when offered) or "none".
    features: ClassVar[str] = "dense"
    # The parameters a user may set (`--param`), checked by `make_router`.
    PARAMS: ClassVar[dict[str, ParamSpec]] = {}

    def __init__(self, *, models: Sequence[str] | None = None, **params: Any) -> None:
        self.models: list[str] = list(models) if models else []
        self.params: dict[str, Any] = dict(params)
        self.featurizer: Featurizer | None = None
        self.seed = 0
        self.data_hash: str | None = None
        # Each model's mean score in the training data: names the strong model by default.
        self.mean_quality: dict[str, float] = {}

    # -- training

    def fit(
        self, data: TrainingData, featurizer: Featurizer | None = None, *, seed: int = 0
    ) -> None:
        """Fit the featuriser on the training prompts, then the router on their features."""
        self.seed = seed
        self.models = data_models(data, self.models or None)
        if len(self.models) < 2:
            raise ValueError(
                f"router {self.name!r} chooses between models, but the data has outcomes "
                f"for {len(self.models)}: {', '.join(self.models) or 'none'}; give it at "
                "least two")
        self.featurizer = featurizer
        obs = to_observations(data, self.models)
        sums = np.bincount(obs.model, obs.score, len(self.models))
        counts = np.maximum(np.bincount(obs.model, minlength=len(self.models)), 1)
        self.mean_quality = {m: float(x) for m, x in zip(self.models, sums / counts, strict=True)}
        if featurizer is not None and self.features != "none":
            featurizer.fit(_unique_prompts(data.prompts)[0])
        self._fit(data, seed)

    @abstractmethod
    def _fit(self, data: TrainingData, seed: int) -> None: ...

    # -- prediction

    def _features(self, prompts: Sequence[str]) -> Any:
        if self.features == "none":
            return list(prompts)
        if self.featurizer is None:
            raise RuntimeError(f"router {self.name!r} has no featuriser: fit or load it first")
        if self.features == "sparse" and hasattr(self.featurizer, "transform_sparse"):
            return self.featurizer.transform_sparse(prompts)
        return self.featurizer.transform(prompts)

    @abstractmethod
    def _predict(self, x: Any) -> np.ndarray:
        """Quality per model, (n, m), from what `_features` returned."""

    def predict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._predict(self._features(prompts)), dtype=np.float64)

    async def apredict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        """Like predict_quality, for featurisers (or routers) that await a service."""
        if self.features == "dense" and self.featurizer is not None:
            x = await atransform(self.featurizer, prompts)
            return np.asarray(self._predict(x), dtype=np.float64)
        return self.predict_quality(prompts)

    def model_index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise ValueError(f"router {self.name!r} knows {self.models}, not {model!r}") from None

    def _win_from_features(self, x: Any, s: int, w: int) -> np.ndarray:
        """P(strong beats weak), ties split evenly, if the two outcomes were independent.

        Routers with a pairwise model (mf, sw_ranking) override this.
        """
        q = np.asarray(self._predict(x), dtype=np.float64)
        return np.clip(0.5 + 0.5 * (q[:, s] - q[:, w]), 0.0, 1.0)

    def win_prob(self, prompts: Sequence[str], strong: str, weak: str) -> np.ndarray:
        s, w = self.model_index(strong), self.model_index(weak)
        return self._win_from_features(self._features(prompts), s, w)

    async def awin_prob(self, prompts: Sequence[str], strong: str, weak: str) -> np.ndarray:
        s, w = self.model_index(strong), self.model_index(weak)
        if self.features == "dense" and self.featurizer is not None:
            return self._win_from_features(await atransform(self.featurizer, prompts), s, w)
        return self.win_prob(prompts, strong, weak)

    # -- persistence

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None: ...

    def manifest(self) -> dict[str, Any]:
        return {
            "format": ARTEFACT_FORMAT,
            "version": ARTEFACT_VERSION,
            "router": self.name,
            "params": self.params,
            "models": self.models,
            "featurizer": None if self.featurizer is None or self.features == "none"
            else self.featurizer.manifest(),
            "data_hash": self.data_hash,
            "seed": self.seed,
            "mean_quality": self.mean_quality,
        }

    def strong_weak(self) -> tuple[str, str]:
        """The best and worst model by training mean: the default strong and weak pair."""
        if not self.mean_quality:
            raise ValueError(f"router {self.name!r} has no training means: name strong and weak")
        ranked = self.ranked()
        return ranked[0], ranked[-1]

    def ranked(self) -> list[str]:
        """The models, strongest first by training mean (ties in training order)."""
        return sorted(self.models, key=lambda m: -self.mean_quality.get(m, 0.0))

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_arrays(out / "weights.npz", self._arrays())
        if self.featurizer is not None and self.features != "none":
            self.featurizer.save(out / "featurizer")
        write_manifest(out / "manifest.json", self.manifest())

    @classmethod
    def load(cls, path: str | Path, *, embed: Embed | None = None,
             manifest: dict[str, Any] | None = None) -> QualityRouter:
        """Rebuild a saved router; `embed` serves an endpoint featuriser. `manifest`:
        its manifest.json as the caller read it already (`load_router`, to check it)."""
        p = Path(path)
        if manifest is None:
            manifest = read_manifest(p / "manifest.json")
        router = cls(models=manifest["models"], **manifest.get("params", {}))
        router.seed = int(manifest.get("seed", 0))
        router.data_hash = manifest.get("data_hash")
        router.mean_quality = dict(manifest.get("mean_quality") or {})
        fz = manifest.get("featurizer")
        if fz is not None:
            router.featurizer = featurizer_from_manifest(fz, p / "featurizer", embed=embed)
        router._restore(read_arrays(p / "weights.npz"))
        return router


def run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code; refuse inside a running loop (use the a-method)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("inside an event loop, use the async method (apredict_quality)")


def load_router(path: str | Path, **kwargs: Any) -> QualityRouter:
    """`registry.load_router`, reachable from here (the registry imports this module)."""
    from interlock.routing.learned.registry import load_router as load

    return load(path, **kwargs)
