"""Shape of a multiple-choice question's answer options, as a few numbers.

How alike the options are says something n-grams cannot: near-identical options
(numbers a few percent apart, sentences differing in one word, a shared unit or
lead-in) ask for a calculation or a fine distinction, which is where a weaker
model falls behind a stronger one more than the subject alone predicts. These
features were added to `prompt_shape` after the shape features of the first
version; on RouteLLM's MMLU outcomes they were chosen on outer split seeds 1
and 2, not on the reported folds (docs/routing.md).

Plain Python sets on a handful of short strings: tens of microseconds per
prompt, most of it on the options' trigrams and a long stem's words; numpy's
per-call overhead on strings this short would cost more than it saves.

Imports: the standard library.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Set as AbstractSet

OPTION_SET_FEATURES = (
    "option_char_similarity", "option_char_similarity_max", "option_stem_overlap",
    "option_word_similarity", "numeric_option_range", "numeric_option_closest",
    "log_option_common_prefix", "log_option_common_suffix", "mean_option_words",
    "yes_no_options",
)

# Letters only: digits and punctuation say little about which words two options share.
_LETTERS = re.compile(r"[^\W\d_]+")
_LEADING_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_YES_NO = ("true", "false", "yes", "no")
# Where a feature has no meaning (fewer than two options, options not all numbers),
# one constant keeps the "absent" case apart from every real value (all are >= 0).
_ABSENT = -1.0


def _trigrams(text: str) -> AbstractSet[object]:
    """The text's character trigrams, as 3-tuples (zip builds them in C, a quarter
    faster than slicing; only set sizes and intersections are used). A text under
    three characters is its own single item."""
    if len(text) < 3:
        return {text}
    return set(zip(text, text[1:], text[2:], strict=False))


def _jaccard(a: AbstractSet[object], b: AbstractSet[object]) -> float:
    # Counted, not built: the union set would cost as much again as the intersection.
    shared = len(a & b)
    union = len(a) + len(b) - shared
    return shared / union if union else 0.0


# ASCII letters kept, everything else a space: on ASCII text, splitting the
# translation finds exactly the words `_LETTERS` finds, in one C pass instead of
# a regex walk (which was most of the time on a long passage's stem).
_ASCII_NON_LETTERS = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not c.isalpha()})


def _words(text: str) -> set[str]:
    """The set of lower-case letter runs of `text` (already lower-cased)."""
    if text.isascii():
        return set(text.translate(_ASCII_NON_LETTERS).split())
    return set(_LETTERS.findall(text))


def _shared_prefix(texts: list[str]) -> int:
    """Length of the prefix every text starts with (the sorted extremes share the
    least, so comparing those two is enough)."""
    lo, hi = min(texts), max(texts)
    for i, (a, b) in enumerate(zip(lo, hi, strict=False)):
        if a != b:
            return i
    return len(lo)


def _leading_numbers(options: list[str]) -> list[float] | None:
    """Each option's leading number ("12 kg", "-0.5"), or None unless all have one."""
    values = []
    for option in options:
        m = _LEADING_NUMBER.search(option)
        if m is None or m.start() > 2:
            return None
        values.append(float(m.group()))
    return values


def _numeric_spread(options: list[str]) -> tuple[float, float]:
    """(range, closest gap) of numeric options relative to the largest magnitude."""
    values = _leading_numbers(options)
    if values is None:
        return _ABSENT, _ABSENT
    scale = max(abs(v) for v in values)
    if scale == 0:
        return _ABSENT, _ABSENT
    ordered = sorted(values)
    closest = min(b - a for a, b in itertools.pairwise(ordered))
    return (ordered[-1] - ordered[0]) / scale, closest / scale


# A question has a handful of options (MMLU: 4, rarely 5). A document full of
# lettered lines has more, and comparing every pair grew with their square: 800
# of them took a quarter of a second. The question comes last, so its options do.
MAX_OPTIONS = 8


def option_set_shape(options: list[str], stem: str) -> list[float]:
    """The `OPTION_SET_FEATURES` of a question's options (the text after "A." etc.;
    the last `MAX_OPTIONS` of them) and its stem (the text before the first
    option, or any text with the same letter words). Zeros without two options."""
    opts = [o.strip().lower() for o in options[-MAX_OPTIONS:]]
    if len(opts) < 2:
        return [0.0] * len(OPTION_SET_FEATURES)
    pairs = len(opts) * (len(opts) - 1) / 2
    grams = [_trigrams(o) for o in opts]
    char_sims = [_jaccard(a, b) for a, b in itertools.combinations(grams, 2)]
    words = [_words(o) for o in opts]
    word_sim = sum(_jaccard(a, b) for a, b in itertools.combinations(words, 2)) / pairs
    stem_words = _words(stem.lower())
    overlap = sum(len(w & stem_words) / max(len(w), 1) for w in words) / len(words)
    numeric_range, numeric_closest = _numeric_spread(opts)
    prefix = _shared_prefix(opts)
    suffix = _shared_prefix([o[::-1] for o in opts])
    return [
        sum(char_sims) / pairs, max(char_sims), overlap, word_sim,
        numeric_range, numeric_closest, math.log1p(prefix), math.log1p(suffix),
        sum(len(w) for w in words) / len(words),
        float(any(o.startswith(_YES_NO) for o in opts)),
    ]
