"""Training a learned router from a data file into an artefact directory.

`train_router` is what `interlock train` runs: load the data (outcomes or
battles), build the featuriser and the router, fit with the seed, record the
data hash, save. Parameters arrive from the CLI as strings (`k=40`) and are
parsed to numbers here.

Imports: the standard library, `routing.data`, `routing.features`, `routing.learned`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interlock.routing.data import data_hash, load_training_data
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
) -> QualityRouter:
    """Fit router `name` on `data` and save it to `out`; returns the fitted router."""
    table = load_training_data(data, models=models)
    router = make_router(name, models=list(models) if models else None, **(params or {}))
    fz_params = dict(featurizer_params or {})
    if featurizer == "hashed" or featurizer.startswith("hashed+"):
        fz_params.setdefault("seed", seed)
    router.fit(table, make_featurizer(featurizer, **fz_params), seed=seed)
    router.data_hash = data_hash(data)
    router.save(out)
    return router
