"""Option-set shape features: how alike a question's answer options are."""

from __future__ import annotations

import math

import numpy as np
import pytest

from interlock.routing.artefacts import read_arrays, write_arrays
from interlock.routing.features import (
    FIRST_SHAPE_COUNT,
    SHAPE_FEATURES,
    HashedNgramFeaturizer,
    featurizer_from_manifest,
    prompt_shape,
)
from interlock.routing.option_shape import OPTION_SET_FEATURES, option_set_shape


def _named(options: list[str], stem: str = "Which one?") -> dict[str, float]:
    return dict(zip(OPTION_SET_FEATURES, option_set_shape(options, stem), strict=True))


def test_close_numeric_options_are_measured_against_the_largest() -> None:
    got = _named(["10 m/s", "12 m/s", "-20 m/s", "40 m/s"])
    assert got["numeric_option_range"] == pytest.approx(60 / 40)
    assert got["numeric_option_closest"] == pytest.approx(2 / 40)
    # A shared unit is a shared ending.
    assert got["log_option_common_suffix"] == pytest.approx(math.log1p(len(" m/s")))
    assert got["yes_no_options"] == 0


def test_options_that_are_not_all_numbers_have_no_numeric_spread() -> None:
    got = _named(["12", "a dozen", "13", "14"])
    assert got["numeric_option_range"] == got["numeric_option_closest"] == -1.0
    assert _named(["0", "0", "0", "0"])["numeric_option_range"] == -1.0


def test_near_identical_options_score_higher_than_unrelated_ones() -> None:
    alike = _named(["the cell wall is rigid", "the cell wall is porous",
                    "the cell wall is thin", "the cell wall is absent"])
    unlike = _named(["photosynthesis", "Napoleon", "a prime number", "the Danube"])
    for name in ("option_char_similarity", "option_char_similarity_max",
                 "option_word_similarity", "log_option_common_prefix"):
        assert alike[name] > unlike[name]
    assert alike["log_option_common_prefix"] == pytest.approx(math.log1p(len("the cell wall is ")))
    assert alike["mean_option_words"] == 5 and unlike["mean_option_words"] == 7 / 4


def test_stem_overlap_and_yes_no_options() -> None:
    got = _named(["True, True", "False, False", "True, False", "False, True"],
                 stem="Statement 1 | Every group is abelian. Is that true?")
    assert got["yes_no_options"] == 1
    # Each option's words are {true}, {false} or both; only "true" is in the stem.
    assert got["option_stem_overlap"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)


def test_fewer_than_two_options_give_zeros() -> None:
    assert option_set_shape([], "Write a haiku") == [0.0] * len(OPTION_SET_FEATURES)
    assert option_set_shape(["only one"], "x") == [0.0] * len(OPTION_SET_FEATURES)


def test_prompt_shape_appends_the_option_set_features_of_its_options() -> None:
    mcq = "Find x.\nA. 4\nB. 5\nC. 6\nD. 8\nAnswer:"
    full = prompt_shape(mcq)
    assert len(full) == len(SHAPE_FEATURES)
    assert full[FIRST_SHAPE_COUNT:] == option_set_shape(["4", "5", "6", "8"], "Find x.\n")
    assert prompt_shape(mcq, option_set=False) == full[:FIRST_SHAPE_COUNT]


def test_artefact_with_the_first_shape_features_only_keeps_its_columns(tmp_path) -> None:
    texts = ["Find x.\nA. 4\nB. 5\nC. 6\nD. 8\nAnswer:", "Write a haiku about rain",
             "Which is a mammal?\nA. whale\nB. shark\nC. trout\nD. eel", "Sum 2 and 3"]
    f = HashedNgramFeaturizer(n_features=2**10, dim=2)
    f.fit(texts)
    f.save(tmp_path)
    # What an artefact saved before the option-set features holds: 18 shape statistics.
    arrays = read_arrays(tmp_path / "featurizer.npz")
    arrays["shape_mean"] = arrays["shape_mean"][:FIRST_SHAPE_COUNT]
    arrays["shape_std"] = arrays["shape_std"][:FIRST_SHAPE_COUNT]
    write_arrays(tmp_path / "featurizer.npz", arrays)
    old = featurizer_from_manifest(f.manifest(), tmp_path)
    got = old.transform_sparse(texts).toarray()  # type: ignore[attr-defined]
    want = f.transform_sparse(texts).toarray()
    assert got.shape == (len(texts), 2**10 + FIRST_SHAPE_COUNT)
    assert np.allclose(got, want[:, : 2**10 + FIRST_SHAPE_COUNT])


@pytest.mark.parametrize("texts", [["abc", "abd", "ab"], ["x"], ["", "a"], ["same", "same"],
                                   ["b c", "a c"]])
def test_shared_prefix_is_the_character_prefix(texts: list[str]) -> None:
    from interlock.routing.option_shape import _shared_prefix

    longest = max(n for n in range(len(min(texts, key=len)) + 1)
                  if len({t[:n] for t in texts}) == 1)
    assert _shared_prefix(texts) == longest


@pytest.mark.parametrize("text", ["plain words, and 12 numbers_here", "naïve café — déjà vu",
                                  "x=y+2; f(x) != g'(x)", "", "___", "tab\tand\nnew line"])
def test_word_sets_match_the_letter_regex(text: str) -> None:
    from interlock.routing.option_shape import _LETTERS, _words

    assert _words(text.lower()) == set(_LETTERS.findall(text.lower()))


def test_a_document_full_of_lettered_lines_compares_only_the_last_options(monkeypatch) -> None:
    # Every pair of options is compared, so without a bound a long list of
    # "A."-style lines would cost the square of its length.
    from interlock.routing import option_shape

    options = [f"item number {i} of a long list" for i in range(500)]
    calls = 0
    real = option_shape._jaccard

    def counting(a, b):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real(a, b)

    monkeypatch.setattr(option_shape, "_jaccard", counting)
    got = option_shape.option_set_shape(options, "Which item?")
    pairs = option_shape.MAX_OPTIONS * (option_shape.MAX_OPTIONS - 1) // 2
    assert calls == 2 * pairs  # character and word similarity, over the last few only
    assert got == option_shape.option_set_shape(options[-option_shape.MAX_OPTIONS:], "Which item?")
