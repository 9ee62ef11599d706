"""The featurisers: hashed n-gram TF-IDF, cache, endpoint, sentence-transformers error."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from interlock.routing.features import (
    CachedFeaturizer,
    EmbeddingEndpointFeaturizer,
    HashedNgramFeaturizer,
    SentenceTransformerFeaturizer,
    featurizer_from_manifest,
    make_featurizer,
)

TEXTS = [
    "How do I reverse a linked list in Python?",
    "Reverse a singly linked list in place, in Python",
    "What is the capital of France?",
    "Name the capital city of France",
    "Explain the photoelectric effect",
    "Write a haiku about autumn leaves",
    "コードを書いてください",
    "Summarise this article about the economy",
]


def _fitted(**kw: object) -> HashedNgramFeaturizer:
    f = HashedNgramFeaturizer(n_features=2**12, dim=6, **kw)  # type: ignore[arg-type]
    f.fit(TEXTS)
    return f


def test_hashed_vectors_are_normalised_and_similar_texts_are_close() -> None:
    f = _fitted()
    x = f.transform(TEXTS)
    assert x.shape == (len(TEXTS), 6) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    s = f.transform_sparse(TEXTS)
    assert s.shape == (len(TEXTS), 2**12)
    sims = (s @ s.T).toarray()
    # The paraphrase pairs are nearer each other than to the unrelated prompts.
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[0, 5]
    assert sims[2, 3] > sims[2, 0] and sims[2, 3] > sims[2, 4]


def test_hashed_idf_comes_from_the_training_prompts_only() -> None:
    a, b = _fitted(), HashedNgramFeaturizer(n_features=2**12, dim=6)
    b.fit(TEXTS[:4])
    assert a.idf is not None and b.idf is not None
    assert not np.array_equal(a.idf, b.idf)


def test_hashed_is_deterministic_and_round_trips(tmp_path) -> None:
    a, b = _fitted(), _fitted()
    assert np.array_equal(a.transform(TEXTS), b.transform(TEXTS))
    a.save(tmp_path)
    c = featurizer_from_manifest(a.manifest(), tmp_path)
    assert np.array_equal(a.transform(TEXTS), c.transform(TEXTS))


def test_unfitted_hashed_featuriser_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        HashedNgramFeaturizer().transform(["x"])


def test_cache_serves_repeats_without_recomputing() -> None:
    inner = _fitted()
    cached = CachedFeaturizer(inner, size=3)
    first = cached.transform(TEXTS[:2])
    again = cached.transform(TEXTS[:2])
    assert np.array_equal(first, again)
    assert (cached.hits, cached.misses) == (2, 2)
    cached.transform(TEXTS[2:6])  # evicts the oldest beyond 3 entries
    assert len(cached._cache) == 3
    assert np.array_equal(cached.transform(TEXTS[:1]), inner.transform(TEXTS[:1]))


async def test_endpoint_featuriser_uses_the_injected_embed() -> None:
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return [[float(len(t)), 1.0, 0.0] for t in texts]

    f = CachedFeaturizer(EmbeddingEndpointFeaturizer(embed, dim=3, model="text-embed"))
    x = await f.atransform(["ab", "abcd", "ab"])
    assert calls == [["ab", "abcd"]]
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
    assert np.array_equal(x[0], x[2])
    with pytest.raises(RuntimeError, match="atransform"):
        f.inner.transform(["zz"])


def test_endpoint_featuriser_checks_the_shape() -> None:
    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 2.0] for _ in texts]

    with pytest.raises(ValueError, match="shape"):
        EmbeddingEndpointFeaturizer(embed, dim=3).transform(["a"])


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="sentence-transformers is installed",
)
def test_sentence_transformers_missing_gives_a_clear_error() -> None:
    with pytest.raises(ImportError, match=r"interlock\[embeddings\]"):
        SentenceTransformerFeaturizer("/nonexistent/model")
    with pytest.raises(ImportError, match="sentence-transformers"):
        make_featurizer("st:/nonexistent/model")


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason="sentence-transformers is not installed",
)
def test_sentence_transformers_needs_a_local_path() -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        SentenceTransformerFeaturizer("/nonexistent/model")


def test_unknown_featuriser_spec() -> None:
    with pytest.raises(ValueError, match="unknown featuriser"):
        make_featurizer("word2vec")


def test_cache_passes_other_methods_to_the_inner_featuriser() -> None:
    inner = _fitted()
    cached = CachedFeaturizer(inner)
    assert (cached.transform_sparse(TEXTS[:2]) != inner.transform_sparse(TEXTS[:2])).nnz == 0
    endpoint = CachedFeaturizer(EmbeddingEndpointFeaturizer(None, dim=3))
    assert not hasattr(endpoint, "transform_sparse")
