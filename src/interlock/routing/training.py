"""Training a learned router from a data file into an artefact directory.

`train_router` is what `interlock train` runs: load the data (outcomes or
battles), build the featuriser and the router, fit with the seed, record the
data hash, save. Parameters arrive from the CLI as strings (`k=40`) and are
parsed to numbers here. It returns a `TrainingRun`: the router, the rows it
learnt from, the rows the loader dropped and why, and notes the user should
read (too little data, a router that could not learn from it).

Imports: the standard library, `routing.data`, `routing.features`, `routing.learned`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock.routing.data import data_hash, load_training_data, rows_summary
from interlock.routing.features import make_featurizer
from interlock.routing.learned import QualityRouter, make_router


def parse_param(text: str) -> tuple[str, Any]:
    """`name=value` with value read as JSON when it parses (numbers, lists), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"router parameter must look like name=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip().replace("-", "_"), value


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    return dict(parse_param(item) for item in items)


# Below this many distinct prompts a router scores nearly every prompt alike.
MIN_PROMPTS = 10


@dataclass
class TrainingRun:
    """What `train_router` did: the fitted router and what it learnt from."""

    router: QualityRouter
    rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return self.router.models

    def summary(self) -> str:
        """"120 rows used, 3 dropped for a missing score"."""
        return rows_summary(self.rows, self.dropped)


def _notes(router: QualityRouter, prompts: Sequence[str]) -> list[str]:
    notes = []
    distinct = len(set(prompts))
    if distinct < MIN_PROMPTS:
        notes.append(f"only {distinct} distinct prompt{'s' * (distinct != 1)} to learn from: "
                     "the router will score most prompts alike; give it hundreds")
    if router.name == "llm" and getattr(router, "ask", None) is None:
        order = router.ranked()
        notes.append("the llm router asks a judge model about each prompt, and none can be "
                     "asked here: its rating table was set from the models' mean scores "
                     f"(strongest first: {', '.join(order)}), not learnt from the prompts; "
                     "the gateway asks the router's judge_group at request time")
    return notes


def train_router(
    name: str,
    data: str | Path,
    out: str | Path,
    *,
    models: Sequence[str] | None = None,
    featurizer: str = "hashed",
    featurizer_params: dict[str, Any] | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> TrainingRun:
    """Fit router `name` on `data` and save it to `out`."""
    table = load_training_data(data, models=models)
    router = make_router(name, models=list(models) if models else None, **(params or {}))
    fz_params = dict(featurizer_params or {})
    if featurizer == "hashed" or featurizer.startswith("hashed+"):
        fz_params.setdefault("seed", seed)
    router.fit(table, make_featurizer(featurizer, **fz_params), seed=seed)
    router.data_hash = data_hash(data)
    router.save(out)
    return TrainingRun(router, len(table), dict(table.dropped), _notes(router, table.prompts))
