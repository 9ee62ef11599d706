"""Prompt featurisers: text -> L2-normalised float32 vectors, behind one protocol
(`featurizer_protocol`); this module makes them and caches them.

- `HashedNgramFeaturizer` (`hashed_featurizer`), the default: offline, no
  downloads. Hashed word and character n-grams (`ngram_hashing`), TF-IDF
  weighted, plus a dense projection for routers that compare prompts;
  `transform_sparse` appends standardised prompt-shape columns (`prompt_shape`).
- `SentenceTransformerFeaturizer`, `EmbeddingEndpointFeaturizer` and
  `HybridFeaturizer` (`embedding_featurizers`): a local sentence-transformers
  model, an embeddings endpoint through an injected async `embed`, and the
  hashed TF-IDF with a dense embedding appended ("hashed+st:PATH").
- `CachedFeaturizer`: an LRU cache by text hash in front of any featuriser.
- `make_featurizer` (from a CLI spec) and `featurizer_from_manifest` (from an
  artefact).

The names that lived here before those modules existed are still importable
from here.

Imports: numpy, the standard library, `routing.embedding_featurizers`,
`routing.featurizer_protocol`, `routing.hashed_featurizer`, `routing.ngram_hashing`,
`routing.params`, `routing.prompt_shape`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interlock.routing.embedding_featurizers import (
    EmbeddingEndpointFeaturizer,
    EmbeddingModelUnavailable,
    HybridFeaturizer,
    SentenceTransformerFeaturizer,
)
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
    "CachedFeaturizer", "Embed", "EmbeddingEndpointFeaturizer", "EmbeddingModelUnavailable",
    "Featurizer",
    "HashedNgramFeaturizer", "HybridFeaturizer", "SentenceTransformerFeaturizer", "atransform",
    "featurizer_from_manifest", "l2_normalise", "make_featurizer", "prompt_shape",
    "randomized_svd",
]


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
