"""Featurisers that read a dense embedding model: a local sentence-transformers
model, an embeddings endpoint, and the hashed TF-IDF with such an embedding
appended (the hybrid, for the classifier router).

Nothing here downloads a model or makes a network call itself: the local model
must already be on disk, and the endpoint is reached through an injected
async `embed` function.

Imports: numpy, scipy (sparse matrices) lazily, sentence-transformers lazily (an optional
extra), the standard library, `errors`, `routing.featurizer_protocol`, `routing.hashed_featurizer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interlock.errors import ConfigError
from interlock.routing.featurizer_protocol import Embed, Featurizer, l2_normalise
from interlock.routing.hashed_featurizer import HashedNgramFeaturizer

# ---------------------------------------------------------------- sentence-transformers

_FIX = ("Save the model to a folder once, where a download is allowed (in Python: "
        "SentenceTransformer('all-MiniLM-L6-v2').save('/models/all-MiniLM-L6-v2')), copy it "
        "here and give that folder as 'st:/models/all-MiniLM-L6-v2'; or use the built-in "
        "featuriser 'hashed', which needs no model")


class EmbeddingModelUnavailable(ConfigError):
    """A sentence-transformers featuriser whose model, or the package that reads
    it, is not on this machine: said at load, before any prompt is routed."""


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
        folder = Path(self.model_path).expanduser()
        # The folder before the package: it is what the user named, and a check
        # that needs no optional extra.
        if not ((folder / "modules.json").is_file() or (folder / "config.json").is_file()):
            where = "is not a folder" if not folder.is_dir() else (
                "holds neither modules.json nor config.json")
            raise EmbeddingModelUnavailable(
                f"sentence-transformers model {self.model_path!r} is not available locally: "
                f"{folder.absolute()} {where}. Interlock never downloads models, and 'st:' "
                f"takes the path of a model folder on this machine, not a model name. {_FIX}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbeddingModelUnavailable(
                f"sentence-transformers model {self.model_path!r} needs the optional "
                "package sentence-transformers, which is not installed: pip install "
                "'interlock[embeddings]', or use the built-in featuriser 'hashed'") from None
        try:
            self._model = SentenceTransformer(str(folder), device=device,
                                              local_files_only=True)
        except OSError as exc:
            # A folder missing its weights or tokenizer: the library would look
            # them up on the Hub, which local_files_only forbids.
            raise EmbeddingModelUnavailable(
                f"sentence-transformers model {self.model_path!r} is not complete at "
                f"{folder.absolute()} ({exc}). {_FIX}") from None
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
