"""Checking user-given parameters of routers and featurisers against what they take.

Parameters reach routers from the command line (`--param rank=8`) and from
configs, as strings or JSON values. A misspelt name used to be stored and
ignored, and a value out of range (c=0, k=0) crashed deep in numpy or gave a
router of NaNs; each class now declares its parameters as `ParamSpec`s, and
`check_params` refuses what does not fit with the parameter's name, the value
and what is expected.

Imports: the standard library.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: an int, a float or a dict, optionally null, with a lower bound.

    `above` is exclusive (lr > 0), `at_least` inclusive (k >= 1).
    """

    kind: type
    at_least: float | None = None
    above: float | None = None
    nullable: bool = False

    def expected(self) -> str:
        if self.kind is dict:
            return "a mapping"
        what = "an integer" if self.kind is int else "a number"
        if self.above is not None:
            what += f" > {self.above:g}"
        elif self.at_least is not None:
            what += f" >= {self.at_least:g}"
        return what + (" (or null)" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is dict:
            return isinstance(value, Mapping)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.above is not None and not value > self.above:
            return False
        return self.at_least is None or value >= self.at_least


POSITIVE_INT = ParamSpec(int, at_least=1)
POSITIVE = ParamSpec(float, above=0)
NON_NEGATIVE = ParamSpec(float, at_least=0)


def check_params(owner: str, given: Mapping[str, Any], specs: Mapping[str, ParamSpec]) -> None:
    """ValueError for the first parameter `owner` does not take or whose value is wrong."""
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(specs), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            takes = ", ".join(sorted(specs)) or "none"
            raise ValueError(f"{owner} has no parameter {name!r}; {hint}it takes: {takes}")
        if not spec.accepts(value):
            raise ValueError(f"{owner} parameter {name} must be {spec.expected()}, "
                             f"got {value!r}")
