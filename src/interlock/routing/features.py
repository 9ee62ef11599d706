"""Prompt featurisers: text -> L2-normalised float32 vectors, behind one protocol.

- `HashedNgramFeaturizer`, the default: offline, no downloads. Hashed word and
  character n-grams, TF-IDF weighted (IDF fitted on the training prompts), plus
  a dense projection (truncated SVD of the training TF-IDF matrix) for routers
  that compare prompts. `transform_sparse` gives the raw TF-IDF for linear models,
  with a few standardised prompt-shape columns (`prompt_shape`) appended.
- `SentenceTransformerFeaturizer`: a local sentence-transformers model
  (optional extra, imported lazily).
- `EmbeddingEndpointFeaturizer`: any embeddings endpoint through an injected
  async `embed` function (routing makes no network call itself).
- `HybridFeaturizer`: the hashed TF-IDF with a dense embedding appended
  ("hashed+st:PATH"), for the classifier router.
- `CachedFeaturizer`: an LRU cache by text hash in front of any featuriser.

Imports: numpy, scipy (sparse matrices, SVD), the standard library, `routing.artefacts`,
`routing.featurizer_protocol`, `routing.ngram_hashing`, `routing.params`, `routing.prompt_shape`,
`routing.row_gather`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interlock.routing.artefacts import read_arrays, write_arrays
from interlock.routing.featurizer_protocol import Embed, Featurizer, atransform, l2_normalise
from interlock.routing.ngram_hashing import (
    char_hashes,
    counted,
    csr_rows,
    mix_bucket,
    randomized_svd,
    word_hashes,
)
from interlock.routing.params import NON_NEGATIVE, POSITIVE_INT, ParamSpec, check_params
from interlock.routing.prompt_shape import (
    FIRST_SHAPE_COUNT,
    SHAPE_FEATURES,
    SHAPE_MAX_CHARS,
    head_and_tail,
    prompt_shape,
)
from interlock.routing.row_gather import take_rows

# Importable from here as before the featurisers' parts moved to modules of their own.
__all__ = [
    "FIRST_SHAPE_COUNT", "HASHED_PARAMS", "SHAPE_FEATURES", "SHAPE_MAX_CHARS",
    "CachedFeaturizer", "Embed", "EmbeddingEndpointFeaturizer", "Featurizer",
    "HashedNgramFeaturizer", "HybridFeaturizer", "SentenceTransformerFeaturizer", "atransform",
    "featurizer_from_manifest", "l2_normalise", "make_featurizer", "prompt_shape",
    "randomized_svd",
]


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


# ---------------------------------------------------------------- sentence-transformers


class SentenceTransformerFeaturizer:
    """A sentence-transformers model loaded from a local path (no downloads).

    The path is a model folder as sentence-transformers saves it (modules.json,
    config, weights); it is loaded with `local_files_only`, on CPU unless
    `device` says otherwise. Set HF_HUB_OFFLINE=1 in the environment as well, so
    the Hugging Face libraries never try the network for anything else.
    """

    name = "sentence-transformers"

    def __init__(
        self, model_path: str | Path, *, batch_size: int = 32, device: str = "cpu"
    ) -> None:
        self.model_path = str(model_path)
        self.batch_size = batch_size
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(
                "the sentence-transformers featuriser needs the optional extra: "
                "pip install 'interlock[embeddings]'"
            ) from exc
        if not (Path(self.model_path) / "modules.json").is_file() and not (
            Path(self.model_path) / "config.json"
        ).is_file():
            raise FileNotFoundError(
                f"no sentence-transformers model at {self.model_path} (a local model folder "
                "is required; Interlock never downloads models)"
            )
        self._model = SentenceTransformer(self.model_path, device=device, local_files_only=True)
        # `get_embedding_dimension` is the newer name; older releases only have the long one.
        model: Any = self._model
        dim_of = getattr(model, "get_embedding_dimension", None)
        if dim_of is None:
            dim_of = model.get_sentence_embedding_dimension
        self.dim = int(dim_of() or 0)

    def fit(self, texts: Sequence[str]) -> None:
        return None

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=False,
            convert_to_numpy=True,
        )
        return l2_normalise(np.asarray(vectors, dtype=np.float32))

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "params": {"model_path": self.model_path}}

    def save(self, directory: str | Path) -> None:
        return None


# ---------------------------------------------------------------- embeddings endpoint


class EmbeddingEndpointFeaturizer:
    """Vectors from an embeddings endpoint through an injected async `embed`."""

    name = "endpoint"

    def __init__(self, embed: Embed | None, *, dim: int, model: str = "") -> None:
        self._embed = embed
        self.dim = dim
        self.model = model

    def fit(self, texts: Sequence[str]) -> None:
        return None

    async def atransform(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            raise RuntimeError(
                f"the embeddings featuriser for {self.model or 'this router'} has no embed "
                "function: the gateway must pass one"
            )
        vectors = np.asarray(await self._embed(list(texts)), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"embed returned shape {vectors.shape}, expected ({len(texts)}, "
                             f"{self.dim})")
        return l2_normalise(vectors)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.atransform(texts))
        raise RuntimeError("inside an event loop, use atransform() for endpoint features")

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "params": {"model": self.model}}

    def save(self, directory: str | Path) -> None:
        return None


# ---------------------------------------------------------------- hashed + dense


class HybridFeaturizer:
    """The hashed TF-IDF beside a dense embedding model ("hashed+st:PATH").

    `transform_sparse` (what linear routers read) is the TF-IDF row with the
    embedding appended, scaled by `weight`; `transform` (what similarity routers
    read) is the L2-normalised concatenation of both dense vectors. The default
    weight 0.5 was the best of 0.3/0.5/1/2 for the classifier on RouteLLM's MMLU
    outcomes with all-MiniLM-L6-v2 (docs/routing.md).
    """

    name = "hybrid"

    def __init__(
        self, hashed: HashedNgramFeaturizer, dense: Featurizer, *, weight: float = 0.5
    ) -> None:
        self.hashed = hashed
        self.dense = dense
        self.weight = float(weight)
        self.dim = hashed.dim + dense.dim

    def fit(self, texts: Sequence[str]) -> None:
        self.hashed.fit(texts)
        self.dense.fit(texts)

    def transform_sparse(self, texts: Sequence[str]) -> Any:
        from scipy import sparse

        emb = self.weight * self.dense.transform(texts)
        return sparse.hstack(
            [self.hashed.transform_sparse(texts), sparse.csr_matrix(emb.astype(np.float32))],
            format="csr",
        )

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(
            np.hstack([self.hashed.transform(texts), self.dense.transform(texts)])
        )

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name, "dim": self.dim, "params": {"weight": self.weight},
            "parts": [self.hashed.manifest(), self.dense.manifest()],
        }

    def save(self, directory: str | Path) -> None:
        self.hashed.save(directory)
        self.dense.save(directory)


# ---------------------------------------------------------------- cache


class CachedFeaturizer:
    """An LRU cache (by SHA-1 of the text) in front of another featuriser."""

    def __init__(self, inner: Featurizer, *, size: int = 4096) -> None:
        self.inner = inner
        self.size = size
        self.name = inner.name
        self.dim = inner.dim
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()

    def fit(self, texts: Sequence[str]) -> None:
        self._cache.clear()
        self.inner.fit(texts)

    def _lookup(self, texts: Sequence[str]) -> tuple[list[bytes], list[int]]:
        """Keys of all texts and the positions of the first copy of each uncached one."""
        keys = [self._key(t) for t in texts]
        seen: set[bytes] = set()
        missing = []
        for i, k in enumerate(keys):
            if k not in self._cache and k not in seen:
                seen.add(k)
                missing.append(i)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return keys, missing

    def _store(self, keys: list[bytes], missing: list[int], fresh: np.ndarray) -> np.ndarray:
        for j, i in enumerate(missing):
            self._cache[keys[i]] = fresh[j]
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = self._cache[k]
            self._cache.move_to_end(k)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return out

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        keys, missing = self._lookup(texts)
        fresh = self.inner.transform([texts[i] for i in missing]) if missing else None
        return self._store(keys, missing, fresh if fresh is not None else np.zeros((0, 0)))

    async def atransform(self, texts: Sequence[str]) -> np.ndarray:
        keys, missing = self._lookup(texts)
        fresh = await atransform(self.inner, [texts[i] for i in missing]) if missing else None
        return self._store(keys, missing, fresh if fresh is not None else np.zeros((0, 0)))

    def __getattr__(self, name: str) -> Any:
        # Anything else (transform_sparse, fit_idf, idf) is the inner featuriser's, so
        # hasattr() answers for it; sparse rows are not cached (linear models are cheap).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def manifest(self) -> dict[str, Any]:
        return self.inner.manifest()

    def save(self, directory: str | Path) -> None:
        self.inner.save(directory)


# ---------------------------------------------------------------- construction


_SHORTEST_SPAN = ParamSpec(int, at_least=2, nullable=True)
HASHED_PARAMS = {
    "n_features": POSITIVE_INT, "dim": POSITIVE_INT, "word_n": POSITIVE_INT,
    "char_min": POSITIVE_INT, "char_max": POSITIVE_INT, "max_projected": POSITIVE_INT,
    "max_chars": _SHORTEST_SPAN, "max_sparse_chars": _SHORTEST_SPAN,
    "seed": ParamSpec(int), "shape_weight": NON_NEGATIVE,
}


def _hashed(params: dict[str, Any]) -> HashedNgramFeaturizer:
    """The hashed featuriser from user-given parameters; a name it does not take, or
    a value out of range, is a ValueError naming it (the CLIs report it without a
    traceback)."""
    check_params("the hashed featuriser", params, HASHED_PARAMS)
    return HashedNgramFeaturizer(**params)


def make_featurizer(spec: str = "hashed", **params: Any) -> Featurizer:
    """From a CLI spec: "hashed", "st:/local/model/path" or "hashed+st:/local/model/path".

    `params` go to the hashed featuriser (for "hashed+st:", `weight` goes to the
    hybrid and `batch_size` to the sentence-transformers model).
    """
    if spec == "hashed":
        return _hashed(params)
    if spec.startswith("st:"):
        return SentenceTransformerFeaturizer(spec[3:], **params)
    if spec.startswith("hashed+st:"):
        weight = float(params.pop("weight", 0.5))
        batch_size = int(params.pop("batch_size", 32))
        dense = SentenceTransformerFeaturizer(spec[len("hashed+st:"):], batch_size=batch_size)
        return HybridFeaturizer(_hashed(params), dense, weight=weight)
    raise ValueError(
        f"unknown featuriser {spec!r}: use 'hashed', 'st:/path/to/model' or "
        "'hashed+st:/path/to/model'"
    )


def featurizer_from_manifest(
    d: dict[str, Any], directory: str | Path | None = None, *, embed: Embed | None = None
) -> Featurizer:
    """Rebuild the featuriser an artefact names; `directory` holds its saved state."""
    name = d.get("name")
    params = d.get("params", {})
    if name == HashedNgramFeaturizer.name:
        if directory is None:
            raise ValueError("the hashed featuriser needs the artefact directory to load")
        return HashedNgramFeaturizer.load(directory, d)
    if name == SentenceTransformerFeaturizer.name:
        return SentenceTransformerFeaturizer(params["model_path"])
    if name == HybridFeaturizer.name:
        hashed, dense = (featurizer_from_manifest(part, directory, embed=embed)
                         for part in d["parts"])
        if not isinstance(hashed, HashedNgramFeaturizer):
            raise ValueError("a hybrid featuriser's first part must be the hashed one")
        return HybridFeaturizer(hashed, dense, weight=float(params.get("weight", 0.5)))
    if name == EmbeddingEndpointFeaturizer.name:
        return EmbeddingEndpointFeaturizer(embed, dim=int(d["dim"]), model=params.get("model", ""))
    raise ValueError(f"unknown featuriser in manifest: {json.dumps(d)[:200]}")
