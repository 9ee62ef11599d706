"""Router names -> classes, and loading a trained router from its directory.

Imports: `errors`, `routing.artefacts`, `routing.features`, `routing.featurizer_protocol`,
`routing.params`, `routing.learned.*`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.errors import RouterNotTrained
from interlock.routing.artefacts import ARTEFACT_FORMAT, read_manifest
from interlock.routing.features import CachedFeaturizer
from interlock.routing.featurizer_protocol import Embed
from interlock.routing.learned.base import QualityRouter
from interlock.routing.learned.classifier import ClassifierRouter
from interlock.routing.learned.knn import KnnRouter
from interlock.routing.learned.llm import Ask, LlmRouter
from interlock.routing.learned.mf import MfRouter
from interlock.routing.learned.random import RandomRouter
from interlock.routing.learned.sw_ranking import SwRankingRouter
from interlock.routing.params import check_params

ROUTER_NAMES = ("random", "sw_ranking", "mf", "knn", "classifier", "llm")


def router_class(name: str) -> type[QualityRouter]:
    classes: dict[str, type[QualityRouter]] = {
        "random": RandomRouter, "sw_ranking": SwRankingRouter, "mf": MfRouter,
        "knn": KnnRouter, "classifier": ClassifierRouter, "llm": LlmRouter,
    }
    if name not in classes:
        raise ValueError(f"unknown router {name!r}; choose one of {', '.join(ROUTER_NAMES)}")
    return classes[name]


# Given by code, not by a user's `--param`: not checked against PARAMS.
_CODE_ARGUMENTS = ("models", "ask")


def make_router(name: str, **params: Any) -> QualityRouter:
    """A fresh, untrained router: make_router("knn", k=40). A parameter the router
    does not take, or a value out of its range, is a ValueError naming it."""
    cls = router_class(name)
    check_params(f"router {name!r}", {k: v for k, v in params.items()
                                      if k not in _CODE_ARGUMENTS}, cls.PARAMS)
    return cls(**params)


def train_command(name: str, path: str | Path) -> str:
    return f"interlock train {name} --data YOUR_OUTCOMES.csv --out {path}"


def load_router(
    path: str | Path, *, name: str | None = None, embed: Embed | None = None,
    ask: Ask | None = None, cache_size: int = 1024,
) -> QualityRouter:
    """Load a trained router from its directory; RouterNotTrained if there is none.

    `name` (the router the config expects) only shapes the error message and
    is checked against the manifest. The featuriser is wrapped in an LRU cache of
    `cache_size` prompts (0: none), so a retried or repeated prompt is featurised once.
    """
    p = Path(path)
    manifest_path = p / "manifest.json"
    if not manifest_path.is_file():
        kind = f"{name} router" if name else "router"
        raise RouterNotTrained(
            f"no trained {kind} at {p} (missing {manifest_path.name}); "
            f"make one with: {train_command(name or 'ROUTER', p)}"
        )
    manifest = read_manifest(manifest_path)
    if manifest.get("format") != ARTEFACT_FORMAT:
        raise RouterNotTrained(f"{manifest_path} is not an Interlock router artefact; "
                               f"make one with: {train_command(name or 'ROUTER', p)}")
    found = str(manifest.get("router"))
    if name is not None and name != found:
        # Retraining into `p` would overwrite the other router: a new directory, or
        # an entry whose name admits any kind.
        raise RouterNotTrained(
            f"{p} holds a {found} router, not {name}. Point the {name} router at a {name} "
            f"checkpoint (make one in a new directory: {train_command(name, 'NEW_DIR')}), "
            f"or, to use this {found} router, name the router {found!r} (or a name of your "
            "own, which takes any kind)"
        )
    router = router_class(found).load(p, embed=embed, manifest=manifest)
    if isinstance(router, LlmRouter):
        router.ask = ask
    if cache_size > 0 and router.featurizer is not None:
        router.featurizer = CachedFeaturizer(router.featurizer, size=cache_size)
    return router
