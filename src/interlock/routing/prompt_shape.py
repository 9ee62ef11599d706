"""Shape features of a prompt, which n-grams see poorly: lengths, numbers, maths
symbols, lettered options, negations, and how alike the options are
(`option_shape`). The hashed featuriser appends them, standardised, to its
TF-IDF columns (`hashed_featurizer`).

Imports: the standard library, `routing.ascii_text`, `routing.option_shape`.
"""

from __future__ import annotations

import math
import re

from interlock.routing.ascii_text import ascii_stand_in
from interlock.routing.option_shape import OPTION_SET_FEATURES, option_set_shape

_OPTION = re.compile(r"^\s*([A-D])[\.\)]\s*(.*)$", re.M)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MATH_CHARS = frozenset("=+*/^<>|∫√π∑≤≥×÷%$\\")
# Only for non-ASCII text, where digits other than 0-9 count too.
_DIGIT = re.compile(r"\d")
# Matched against lower-cased text: cheaper than re.I on the decision path.
_NEGATION = re.compile(r"\b(not|except|least|false|incorrect|never|none)\b")
_NEGATION_CAPS = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE|INCORRECT)\b")
# Substrings without which the negation patterns cannot match: a cheap test that
# spares most prompts the regular expression.
_NEGATION_WORDS = ("not", "except", "least", "false", "incorrect", "never", "none")
_NEGATION_CAPS_WORDS = ("NOT", "EXCEPT", "LEAST", "FALSE", "INCORRECT")
# Counting a set of characters as the length str.translate removes is a single
# C pass, several times faster than collecting regex matches on long prompts.
_DROP_MATH = str.maketrans("", "", "".join(_MATH_CHARS))
_NON_ASCII_MATH = tuple(c for c in sorted(_MATH_CHARS) if not c.isascii())
_DROP_ASCII_DIGITS = str.maketrans("", "", "0123456789")
_DROP_ASCII_UPPER = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _removed(text: str, table: dict[int, int | None]) -> int:
    return len(text) - len(text.translate(table))


def _any_in(text: str, words: tuple[str, ...]) -> bool:
    return any(w in text for w in words)


# "All of the above"-style options, as plain substring tests: a regex search
# tries every position of a long passage, `in` does not.
_CATCH_ALL_PHRASES = tuple(
    f"{a} of the {b}" for a in ("all", "none", "both") for b in ("above", "these"))
# ASCII digits and "." kept, everything else a space: a `_NUMBER` match never spans
# another character, so it lies within one piece of the split.
_ASCII_NUMBER_PIECES = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not (c.isdigit() or c == ".")})


def _count_numbers(text: str) -> int:
    """len(_NUMBER.findall(text)), with the regex run only on pieces that hold a
    digit when the text is ASCII (scanning a long passage was a tenth of a decision)."""
    if not text.isascii():
        return len(_NUMBER.findall(text))
    pieces = text.translate(_ASCII_NUMBER_PIECES).split()
    return sum(len(_NUMBER.findall(p)) if "." in p else 1 for p in pieces if p.strip("."))


_FIRST_SHAPE_FEATURES = (
    "log_chars", "log_stem_chars", "log_passage_chars", "log_mean_option_chars",
    "option_length_log_spread", "option_length_cv", "digit_share", "log_numbers",
    "math_char_share", "log_math_chars", "numeric_option_share", "has_negation",
    "has_capital_negation", "statement_style", "stem_has_question_mark", "options",
    "catch_all_option", "uppercase_share",
)
SHAPE_FEATURES = _FIRST_SHAPE_FEATURES + OPTION_SET_FEATURES
# Artefacts trained before the option-set features have this many shape columns.
FIRST_SHAPE_COUNT = len(_FIRST_SHAPE_FEATURES)
# The shape features read at most this much of a prompt, its head and tail: four
# times the longest MMLU prompt, and about 3 ms; a 100,000-character document
# took 13 ms before this bound.
SHAPE_MAX_CHARS = 20_000


def prompt_shape(text: str, *, option_set: bool = True) -> list[float]:
    """Shape features of a prompt that n-grams see poorly: lengths, numbers, symbols,
    lettered options, negations, how alike the options are (`option_shape`). Which
    questions of a subject the weaker model misses depends partly on these (a long
    passage, computed options, an EXCEPT), and they mean the same for any prompt;
    options count as lines "A." to "D.". `option_set=False` gives the first
    `FIRST_SHAPE_COUNT` features only, what older artefacts were trained on.
    Plain Python floats and `math`: numpy's per-call overhead on scalars would
    cost more than the features themselves on the decision path. Past
    `SHAPE_MAX_CHARS` only the head and tail are read (the length feature still
    counts every character), so a huge document costs a bounded time."""
    full_length = len(text)
    text = head_and_tail(text, SHAPE_MAX_CHARS)
    n = max(len(text), 1)
    low = text.lower()
    found = list(_OPTION.finditer(text))
    options = [m.group(2) for m in found]
    lengths = [float(len(o)) for o in options] or [0.0]
    mean = sum(lengths) / len(lengths)
    spread = math.sqrt(sum((x - mean) ** 2 for x in lengths) / len(lengths))
    stem = text[: found[0].start()] if found else text
    lines = [line for line in stem.strip().split("\n") if line.strip()]
    # Everything before the stem's last line is a passage the question refers to.
    passage = sum(len(line) for line in lines[:-1]) if len(lines) > 1 else 0
    ascii_text = ascii_stand_in(text)
    if ascii_text is None:
        # Letters or digits beyond ASCII: \d and str.isupper know them, translate does not.
        maths = _removed(text, _DROP_MATH)
        digits = len(_DIGIT.findall(text))
        numbers = _count_numbers(text) if digits else 0
        upper = sum(map(str.isupper, text))
    else:
        # str.translate is fast only on ASCII; the non-ASCII maths symbols are counted
        # in the original (the stand-in turned them into "?").
        maths = _removed(ascii_text, _DROP_MATH)
        if ascii_text is not text:
            maths += sum(map(text.count, _NON_ASCII_MATH))
        digits = _removed(ascii_text, _DROP_ASCII_DIGITS)
        numbers = _count_numbers(ascii_text) if digits else 0
        upper = _removed(ascii_text, _DROP_ASCII_UPPER)
    stem_low = stem.lower()
    numeric = [bool(o.strip()) and _NUMBER.fullmatch(o.split()[0]) is not None
               for o in options]
    first = [
        math.log1p(full_length), math.log1p(len(stem)), math.log1p(passage), math.log1p(mean),
        math.log1p(max(lengths)) - math.log1p(min(lengths)), spread / (mean + 1.0),
        digits / n, math.log1p(numbers),
        maths / n, math.log1p(maths),
        sum(numeric) / len(numeric) if numeric else 0.0,
        float(_any_in(stem_low, _NEGATION_WORDS) and _NEGATION.search(stem_low) is not None),
        float(_any_in(stem, _NEGATION_CAPS_WORDS) and _NEGATION_CAPS.search(stem) is not None),
        float("Statement 1" in text), float("?" in stem), float(len(options)),
        float(" of the " in low and _any_in(low, _CATCH_ALL_PHRASES)),
        upper / n,
    ]
    if not option_set:
        return first
    # The stand-in has the same words as the original (its "?" is no letter), and
    # splitting ASCII is much cheaper than the regex on a long passage's stem.
    return first + option_set_shape(
        options, stem if ascii_text is None else ascii_text[: len(stem)])


def head_and_tail(text: str, limit: int | None) -> str:
    """At most `limit` characters of `text`: its head and its tail, which is where a
    prompt's instruction and question usually are, joined by a newline."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - limit // 2] + "\n" + text[len(text) - limit // 2 :]
