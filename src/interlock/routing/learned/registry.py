"""Router names -> classes, and loading a trained router from its directory.

Imports: `errors`, `routing.artefacts`, `routing.features`, `routing.featurizer_protocol`,
`routing.params`, `routing.learned.*`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from interlock.errors import RouterNotTrained
from interlock.routing.artefacts import ARTEFACT_FORMAT, ARTEFACT_VERSION, read_manifest
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


# What a damaged artefact raises on load: a file missing (OSError), not JSON, an
# .npz that is not one (numpy's ValueError, which suggests unpickling it: wrong
# advice here), a truncated zip, an array or manifest field left out.
_DAMAGED = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def _damaged(p: Path, kind: str | None, exc: BaseException) -> RouterNotTrained:
    return RouterNotTrained(
        f"the {kind or 'trained'} router at {p} is damaged or incomplete ({exc}); "
        f"train it again: {train_command(kind or 'ROUTER', p)}")


def _routellm_note(p: Path) -> str:
    """RouteLLM's examples name its published checkpoints by Hugging Face id
    (routellm/mf_gpt4_augmented); code ported with them meets a missing folder."""
    if p.parent.name != "routellm" or p.exists():
        return ""
    return (f"; {p.parent.name}/{p.name} looks like one of RouteLLM's published checkpoints "
            "(a Hugging Face id), which Interlock cannot load: it downloads nothing and reads "
            "no PyTorch weights")


def _manifest(p: Path, name: str | None) -> dict[str, Any]:
    """The checked manifest of the artefact at `p`, else RouterNotTrained saying what to do."""
    manifest_path = p / "manifest.json"
    if not manifest_path.is_file():
        kind = f"{name} router" if name else "router"
        raise RouterNotTrained(
            f"no trained {kind} at {p} (missing {manifest_path.name}){_routellm_note(p)}; "
            f"make one with: {train_command(name or 'ROUTER', p)}"
        )
    try:
        manifest = read_manifest(manifest_path)
    except (OSError, ValueError) as exc:
        raise _damaged(p, name, exc) from None
    if manifest.get("format") != ARTEFACT_FORMAT:
        raise RouterNotTrained(f"{manifest_path} is not an Interlock router artefact; "
                               f"make one with: {train_command(name or 'ROUTER', p)}")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not (
            1 <= version <= ARTEFACT_VERSION):
        # A newer Interlock's layout read as this one's would load wrong weights, or
        # fail later with an error about a file rather than the version.
        raise RouterNotTrained(
            f"{manifest_path} is in artefact format version {version!r}, and this "
            f"Interlock reads versions 1 to {ARTEFACT_VERSION}: use the Interlock that "
            f"trained it, or train it again: {train_command(name or 'ROUTER', p)}")
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
    return manifest


def load_router(
    path: str | Path, *, name: str | None = None, embed: Embed | None = None,
    ask: Ask | None = None, cache_size: int = 1024,
) -> QualityRouter:
    """Load a trained router from its directory; RouterNotTrained if there is none,
    or if what is there is damaged (a copy cut short, a file lost or edited).

    `name` (the router the config expects) only shapes the error message and
    is checked against the manifest. The featuriser is wrapped in an LRU cache of
    `cache_size` prompts (0: none), so a retried or repeated prompt is featurised once.
    """
    p = Path(path)
    manifest = _manifest(p, name)
    found = str(manifest.get("router"))
    cls = router_class(found) if found in ROUTER_NAMES else None
    if cls is None:
        raise _damaged(p, None, ValueError(f"its manifest names no known router: {found!r}"))
    try:
        router = cls.load(p, embed=embed, manifest=manifest)
    except _DAMAGED as exc:
        raise _damaged(p, found, exc) from None
    if isinstance(router, LlmRouter):
        router.ask = ask
    if cache_size > 0 and router.featurizer is not None:
        router.featurizer = CachedFeaturizer(router.featurizer, size=cache_size)
    return router
