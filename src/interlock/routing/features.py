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

Imports: numpy, scipy (sparse matrices) lazily, the standard library,
`routing.featurizer_protocol`, `routing.hashed_featurizer`, `routing.ngram_hashing`,
`routing.params`, `routing.prompt_shape`.
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

from interlock.routing.featurizer_protocol import Embed, Featurizer, atransform, l2_normalise
from interlock.routing.hashed_featurizer import HashedNgramFeaturizer
from interlock.routing.ngram_hashing import randomized_svd
from interlock.routing.params import NON_NEGATIVE, POSITIVE_INT, ParamSpec, check_params
from interlock.routing.prompt_shape import (
    FIRST_SHAPE_COUNT,
    SHAPE_FEATURES,
    SHAPE_MAX_CHARS,
    prompt_shape,
)

# Importable from here as before the featurisers' parts moved to modules of their own.
__all__ = [
    "FIRST_SHAPE_COUNT", "HASHED_PARAMS", "SHAPE_FEATURES", "SHAPE_MAX_CHARS",
    "CachedFeaturizer", "Embed", "EmbeddingEndpointFeaturizer", "Featurizer",
    "HashedNgramFeaturizer", "HybridFeaturizer", "SentenceTransformerFeaturizer", "atransform",
    "featurizer_from_manifest", "l2_normalise", "make_featurizer", "prompt_shape",
    "randomized_svd",
]


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
