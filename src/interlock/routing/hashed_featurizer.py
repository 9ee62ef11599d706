"""The default featuriser: hashed word and character n-grams, TF-IDF weighted,
with a dense projection for the routers that compare prompts.

Offline, no downloads. IDF and the projection (a truncated SVD of the training
TF-IDF matrix) are fitted on the training prompts and saved with the artefact.
`transform_sparse` gives the TF-IDF rows for linear models, with the
standardised prompt-shape columns (`prompt_shape`) appended.

Imports: numpy, the standard library, `routing.artefacts`, `routing.featurizer_protocol`,
`routing.ngram_hashing`, `routing.prompt_shape`, `routing.row_gather`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interlock.routing.artefacts import read_arrays, write_arrays
from interlock.routing.featurizer_protocol import l2_normalise
from interlock.routing.ngram_hashing import (
    char_hashes,
    counted,
    csr_rows,
    mix_bucket,
    randomized_svd,
    word_hashes,
)
from interlock.routing.prompt_shape import FIRST_SHAPE_COUNT, head_and_tail, prompt_shape
from interlock.routing.row_gather import take_rows


class HashedNgramFeaturizer:
    """Hashed word n-grams (1..word_n) and char n-grams (char_min..char_max), TF-IDF.

    `n_features` buckets; sublinear term frequency; IDF and the `dim`-wide SVD
    projection are fitted on the training prompts and saved with the artefact.
    `fit` also standardises the `prompt_shape` features on the training prompts;
    `transform_sparse` then appends them, times `shape_weight`, after the TF-IDF
    buckets (0.05 with the classifier's `c` 0.5 was chosen on outer split seeds 1
    and 2 of RouteLLM's MMLU outcomes, docs/routing.md). `fit_idf` alone, and
    artefacts saved before shape features existed, give the TF-IDF columns only.

    The dense projection (knn, mf, sw_ranking) is 32 wide and reads at most
    `max_chars` (1,000) characters of a prompt, its head and tail: both bound a
    decision's time, which memory traffic and the longest prompts set, and on
    MMLU neither moved those routers' quality beyond split-to-split noise (128
    wide and whole prompts before; docs/routing.md). The sparse TF-IDF (the
    classifier's input, and what IDF is fitted on) reads at most
    `max_sparse_chars` (1,500), head and tail the same way: hashing and sorting
    a prompt's n-grams grows with its length, and the longest prompts set the
    classifier's P99 (on MMLU, 5 % of prompts are longer, and its quality did
    not move). The shape features read up to `SHAPE_MAX_CHARS` (20,000).
    """

    name = "hashed"

    def __init__(
        self,
        *,
        n_features: int = 2**18,
        dim: int = 32,
        word_n: int = 2,
        char_min: int = 3,
        char_max: int = 5,
        max_projected: int = 30_000,
        max_chars: int | None = 1000,
        max_sparse_chars: int | None = 1500,
        seed: int = 0,
        shape_weight: float = 0.05,
    ) -> None:
        self.n_features = n_features
        self.dim = dim
        self.word_n = word_n
        self.char_min = char_min
        self.char_max = char_max
        self.max_projected = max_projected
        for name, limit in (("max_chars", max_chars), ("max_sparse_chars", max_sparse_chars)):
            if limit is not None and limit < 2:
                raise ValueError(f"{name} must be at least 2 (or null for whole prompts), "
                                 f"got {limit}")
        self.max_chars = max_chars
        self.max_sparse_chars = max_sparse_chars
        self.seed = seed
        self.shape_weight = float(shape_weight)
        self.idf: np.ndarray | None = None
        # Training mean and standard deviation of each shape feature; None: no shape columns.
        self.shape_mean: np.ndarray | None = None
        self.shape_std: np.ndarray | None = None
        self.slot: np.ndarray | None = None  # bucket -> row of `components`, or -1
        self.components: np.ndarray | None = None

    # -- sparse TF-IDF

    def _buckets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        low = head_and_tail(text, self.max_sparse_chars).lower()
        hashes = np.concatenate(
            [word_hashes(low, self.word_n), char_hashes(low, self.char_min, self.char_max)]
        )
        buckets, counts = counted(mix_bucket(hashes, self.n_features))
        return buckets, 1.0 + np.log(counts.astype(np.float64))

    def _row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        if self.idf is None:
            raise RuntimeError("HashedNgramFeaturizer is not fitted: call fit() first")
        buckets, tf = self._buckets(text)
        w = tf * self.idf[buckets]
        return buckets, w / max(float(np.linalg.norm(w)), 1e-12)

    def transform_sparse(self, texts: Sequence[str]) -> Any:
        """L2-normalised TF-IDF rows as a scipy CSR matrix (n, n_features), and when
        shape statistics are fitted the weighted standardised shape features in
        one more column per shape feature after the buckets."""
        width = self.n_features
        stats = self._shape_stats()
        if stats is not None:
            width += len(stats[0])
        return csr_rows([self.sparse_row(t) for t in texts], width)

    def _shape_stats(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, std) of the shape features when fitted; None: TF-IDF columns only."""
        if self.shape_mean is None or self.shape_std is None:
            return None
        return self.shape_mean, self.shape_std

    def sparse_row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """One prompt's `transform_sparse` row as (column indices, values), with no
        scipy matrix around it: building one was about a fifth of a one-prompt
        classifier decision."""
        buckets, w = self._row(text)
        stats = self._shape_stats()
        if stats is None:
            return buckets, w
        mean, std = stats
        extra = np.arange(self.n_features, self.n_features + len(mean))
        # Older artefacts were fitted on the first shape features only.
        values = prompt_shape(text, option_set=len(mean) > FIRST_SHAPE_COUNT)
        shape = (np.array(values) - mean) * (self.shape_weight / std)
        return np.concatenate([buckets, extra]), np.concatenate([w, shape])

    def _tfidf(self, texts: Sequence[str]) -> Any:
        return csr_rows([self._row(t) for t in texts], self.n_features)

    # -- fitting

    def fit(self, texts: Sequence[str]) -> None:
        df = self.fit_idf(texts)
        self._fit_projection(texts, df)
        self._fit_shape(texts)

    def _fit_shape(self, texts: Sequence[str]) -> None:
        self.shape_mean = self.shape_std = None
        if self.shape_weight <= 0 or not texts:
            return
        shape = np.array([prompt_shape(t) for t in texts], dtype=np.float64)
        self.shape_mean = shape.mean(axis=0)
        # A feature constant in training gets unit scale, so it stays 0 rather than blowing up.
        std = shape.std(axis=0)
        self.shape_std = np.where(std > 1e-9, std, 1.0)

    def fit_idf(self, texts: Sequence[str]) -> np.ndarray:
        """Fit only the IDF weights (enough for `transform_sparse`); returns the
        document frequencies. The intent router uses this: a few dozen example
        utterances are too few for a projection."""
        self.shape_mean = self.shape_std = None
        df = np.zeros(self.n_features, dtype=np.float64)
        for t in texts:
            df[self._buckets(t)[0]] += 1.0
        self.idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
        return df

    def _fit_projection(self, texts: Sequence[str], df: np.ndarray) -> None:
        # Project only the commonest buckets that occur at least twice: rarer ones
        # cannot relate two prompts, and the matrix stays small on disk.
        order = np.argsort(-df, kind="stable")[: self.max_projected]
        kept = np.sort(order[df[order] >= 2])
        self.slot = np.full(self.n_features, -1, dtype=np.int32)
        self.slot[kept] = np.arange(len(kept), dtype=np.int32)
        x = self._tfidf([self._clipped(t) for t in texts])[:, kept].astype(np.float64).tocsr()
        vt = randomized_svd(x, self.dim, seed=self.seed)
        comps = np.zeros((len(kept), self.dim), dtype=np.float32)
        comps[:, : len(vt)] = vt.T
        self.components = comps

    # -- dense output

    def _clipped(self, text: str) -> str:
        """What the dense projection reads: at most `max_chars` characters."""
        return head_and_tail(text, self.max_chars)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.slot is None or self.components is None:
            raise RuntimeError("HashedNgramFeaturizer is not fitted: call fit() first")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            buckets, w = self._row(self._clipped(t))
            rows = self.slot[buckets]
            keep = rows >= 0
            out[i] = w[keep].astype(np.float32) @ take_rows(self.components, rows[keep])
        return l2_normalise(out)

    # -- persistence

    def params(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features, "dim": self.dim, "word_n": self.word_n,
            "char_min": self.char_min, "char_max": self.char_max,
            "max_projected": self.max_projected, "max_chars": self.max_chars,
            "max_sparse_chars": self.max_sparse_chars, "seed": self.seed,
            "shape_weight": self.shape_weight,
        }

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "params": self.params()}

    def save(self, directory: str | Path) -> None:
        if self.idf is None or self.slot is None or self.components is None:
            raise RuntimeError("cannot save an unfitted featuriser")
        kept = np.flatnonzero(self.slot >= 0).astype(np.int32)
        arrays = {"idf": self.idf, "kept": kept, "components": self.components}
        stats = self._shape_stats()
        if stats is not None:
            arrays |= {"shape_mean": stats[0], "shape_std": stats[1]}
        write_arrays(Path(directory) / "featurizer.npz", arrays)

    @classmethod
    def load(cls, directory: str | Path, manifest: dict[str, Any]) -> HashedNgramFeaturizer:
        # Artefacts from before `max_chars` / `max_sparse_chars` existed read whole
        # prompts, whatever today's defaults.
        f = cls(**{"max_chars": None, "max_sparse_chars": None, **manifest.get("params", {})})
        arrays = read_arrays(Path(directory) / "featurizer.npz")
        f.idf = arrays["idf"].astype(np.float64)
        f.slot = np.full(f.n_features, -1, dtype=np.int32)
        f.slot[arrays["kept"]] = np.arange(len(arrays["kept"]), dtype=np.int32)
        f.components = arrays["components"].astype(np.float32)
        # Artefacts from before shape features have no statistics: TF-IDF columns only,
        # which is what their weights were trained on.
        if "shape_mean" in arrays and "shape_std" in arrays:
            f.shape_mean = arrays["shape_mean"].astype(np.float64)
            f.shape_std = arrays["shape_std"].astype(np.float64)
        return f
