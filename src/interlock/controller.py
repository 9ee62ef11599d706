"""`Controller`: the RouteLLM-shaped facade.

    from interlock import Controller
    client = Controller(routers=["mf"], strong_model="anthropic/claude-sonnet-4",
                        weak_model="gemini/gemini-2.0-flash-lite",
                        config={"mf": {"checkpoint_path": "models/mf"}})
    response = client.chat.completions.create(model="router-mf-0.116", messages=[...])

Code written against RouteLLM's Controller ports by changing its import. The
strong and weak models become two model groups, each router a learned router
loaded from its checkpoint (a missing one fails here, at start-up, saying how
to train it), and `router-<name>-<threshold>` is decided by the routing policy
exactly as through the gateway. Router names, thresholds and the routers'
needs are checked here, so a mistake fails at construction or before a call
with what to write instead, not as an "unknown model" from the gateway. Like
`Router`, it writes no ledger unless given `ledger=` (a SQLite path, or a dict
of the config's `ledger:` settings).

Imports: the standard library, `client`, `config`, `errors`, `routing.artefacts`,
`routing.learned.registry`, `routing.policy`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from interlock.client import Router, ledger_settings
from interlock.config import load_config
from interlock.errors import ConfigError, RouterNotTrained, UnknownModel
from interlock.routing.artefacts import read_manifest
from interlock.routing.policy import ROUTER_NAME, parse_router_alias

STRONG_GROUP = "strong"
WEAK_GROUP = "weak"
def _check_router_names(routers: Any) -> list[str]:
    if isinstance(routers, str) or not isinstance(routers, Sequence):
        raise ValueError(f"routers must be a list of router names, e.g. routers=['mf'], "
                         f"not {routers!r}")
    if not routers:
        raise ValueError("name at least one router, e.g. routers=['mf']")
    for name in routers:
        if not isinstance(name, str) or not ROUTER_NAME.fullmatch(name):
            raise ValueError(
                f"router name {name!r} cannot appear in a router-<name>-<threshold> model "
                "name: use lower-case letters, digits and _ (e.g. 'mf' or 'my_mf')")
    return list(routers)


def _router_options(config: Any, name: str) -> dict[str, Any]:
    """config[name], checked: RouteLLM's shape is a dict of router name to that
    router's settings, and anything else failed deep inside as an AttributeError."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ValueError(
            f"config (the 4th argument) must be a dict of router name to its settings, as in "
            f"RouteLLM: config={{'{name}': {{'checkpoint_path': DIR}}}}; got a value of type "
            f"{type(config).__name__}")
    options = config.get(name, {})
    if not isinstance(options, Mapping):
        raise ValueError(
            f"config[{name!r}] must be a dict of that router's settings, such as "
            f"config={{'{name}': {{'checkpoint_path': DIR}}}}; got a value of type "
            f"{type(options).__name__}")
    return dict(options)


def _router_kind(name: str, options: Mapping[str, Any]) -> str | None:
    """The kind of router a checkpoint holds (None when it has no manifest, or an
    unreadable one: loading it then fails, saying what is wrong and what to do)."""
    manifest = Path(str(options["checkpoint_path"])) / "manifest.json"
    try:
        return str(read_manifest(manifest).get("router")) if manifest.is_file() else None
    except (OSError, ValueError):
        return None


# RouteLLM's names for the routers Interlock has under another name.
_ROUTELLM_KINDS = {"bert": "classifier", "causal_llm": "llm"}


def _train_hint(name: str) -> str:
    """How to make a checkpoint for a router named `name`: the name is free, the
    kind given to `interlock train` is not (RouteLLM's `bert` is our classifier)."""
    # Here, not at the top: the registry imports every learned router.
    from interlock.routing.learned.registry import ROUTER_NAMES

    if name in ROUTER_NAMES:
        return f"make DIR with `interlock train {name} --data FILE --out DIR`"
    if name in _ROUTELLM_KINDS:
        kind = _ROUTELLM_KINDS[name]
        return (f"RouteLLM's {name} router is Interlock's {kind}: make DIR with "
                f"`interlock train {kind} --data FILE --out DIR`")
    return (f"make DIR with `interlock train KIND --data FILE --out DIR`, KIND one of "
            f"{', '.join(ROUTER_NAMES)}")


def _check_threshold(threshold: Any, model: str) -> None:
    if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0):
        raise ValueError(f"{model}: the threshold must be a number in [0, 1], "
                         f"got {threshold!r}")


def _deployment(group: str, model: str, api_base: str | None,
                api_key: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model}
    if api_base:
        params["api_base"] = api_base
    if api_key:
        params["api_key"] = api_key
    return {"model_name": group, "litellm_params": params}


# What each config key a Controller builds stands for, said only with an error
# naming that key: a note about model_list is noise under a router_settings error.
_KEY_NOTES = (
    ("model_list", "model_list[0] is strong_model and model_list[1] weak_model"),
    ("routing.routers.", "routing.routers.NAME is config[NAME]"),
    ("router_settings", "router_settings are its other keyword arguments"),
)


def _explained(message: str, names: Sequence[str]) -> str:
    """`message` with what its config keys stand for in a Controller, and, for a
    router under one of RouteLLM's names (bert), the kind to train for it."""
    notes = [note for key, note in _KEY_NOTES if key in message]
    extra = f"\n(In a Controller, {', '.join(notes)}.)" if notes else ""
    for name in names:
        if name in _ROUTELLM_KINDS and f"routing.routers.{name}." in message:
            extra += f"\n({_train_hint(name)}.)"
    return message + extra


def _load(config: dict[str, Any], names: Sequence[str],
          environ: Mapping[str, str] | None) -> Any:
    """The config a Controller stands for, loaded. Its errors name keys the caller
    never wrote (`model_list[0]...`), so they are told what each stands for."""
    try:
        return load_config(config, environ=environ)
    except (ConfigError, RouterNotTrained) as exc:
        raise _with_notes(exc, names) from None


def _with_notes(exc: ConfigError | RouterNotTrained, names: Sequence[str]) -> Exception:
    kind = RouterNotTrained if isinstance(exc, RouterNotTrained) else ConfigError
    return kind(_explained(str(exc), names))


class _Completions:
    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    def create(self, *, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        return self._controller.completion(model=model, messages=messages, **kwargs)

    async def acreate(self, *, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        return await self._controller.acompletion(model=model, messages=messages, **kwargs)


class _Chat:
    def __init__(self, controller: Controller) -> None:
        self.completions = _Completions(controller)


class Controller:
    # RouteLLM's arguments, in its order, may be given by position; ours after them
    # by name only.
    def __init__(self, routers: Sequence[str], strong_model: str, weak_model: str,
                 config: Mapping[str, Mapping[str, Any]] | None = None,
                 api_base: str | None = None, api_key: str | None = None,
                 progress_bar: bool = False, *,
                 environ: Mapping[str, str] | None = None,
                 ledger: str | Mapping[str, Any] | None = None,
                 **router_settings: Any) -> None:
        del progress_bar  # accepted for RouteLLM compatibility; nothing to show
        names = _check_router_names(routers)
        router_defs: dict[str, Any] = {}
        for name in names:
            options = _router_options(config, name)
            if name == "random" and "checkpoint_path" not in options:
                continue  # needs no artefact
            if "checkpoint_path" not in options:
                raise ValueError(
                    f"router {name!r} needs config={{'{name}': {{'checkpoint_path': DIR}}}}; "
                    f"{_train_hint(name)}")
            if _router_kind(name, options) == "llm" and not options.get("judge_group"):
                raise ValueError(
                    f"router {name!r} is an llm router, which asks a judge model about every "
                    f"prompt: name the group to ask, config={{'{name}': {{'checkpoint_path': "
                    f"DIR, 'judge_group': 'weak'}}}} ('weak' or 'strong')")
            router_defs[name] = {"type": "learned", **options}
        self.routers = names
        self._models = {STRONG_GROUP: strong_model, WEAK_GROUP: weak_model}
        # router name -> model -> answers, as RouteLLM's Controller keeps them.
        self.model_counts: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int))
        loaded = _load({
            "model_list": [_deployment(STRONG_GROUP, strong_model, api_base, api_key),
                           _deployment(WEAK_GROUP, weak_model, api_base, api_key)],
            "router_settings": router_settings,
            "routing": {"strong_group": STRONG_GROUP, "weak_group": WEAK_GROUP,
                        "default_group": WEAK_GROUP, "routers": router_defs},
            "general_settings": {},
        }, names, environ)
        # The config's default ledger is a file in the working directory: right for
        # a gateway, a surprise for a library (docs/costs.md), so none unless asked.
        loaded.ledger = ledger_settings(ledger)
        try:  # a checkpoint is read here: its errors name routing.routers.NAME too
            self._router = Router(config=loaded, environ=environ)
        except (ConfigError, RouterNotTrained) as exc:
            raise _with_notes(exc, names) from None
        self.chat = _Chat(self)

    @property
    def router(self) -> Router:
        return self._router

    def completion(self, *, messages: list[dict[str, Any]], model: str | None = None,
                   router: str | None = None, threshold: float | None = None,
                   **kwargs: Any) -> Any:
        """A chat completion; `model="router-mf-0.116"`, or RouteLLM's `router="mf",
        threshold=0.116` instead."""
        name = self._model_name(model, router, threshold)
        return self._counted(self._router.completion(model=name, messages=messages, **kwargs))

    async def acompletion(self, *, messages: list[dict[str, Any]], model: str | None = None,
                          router: str | None = None, threshold: float | None = None,
                          **kwargs: Any) -> Any:
        name = self._model_name(model, router, threshold)
        return self._counted(await self._router.acompletion(model=name, messages=messages,
                                                            **kwargs))

    def route(self, prompt: str, router: str, threshold: float) -> str:
        """The model (strong or weak, as given to the constructor) that `router` at
        `threshold` picks for `prompt`, without calling it (RouteLLM's `route`)."""
        if not isinstance(prompt, str):
            # Else the error would speak of messages[0].content, which route has none of.
            raise ValueError(f"route takes the prompt as a string, got a value of type "
                             f"{type(prompt).__name__}")
        decision = self._router.decide(self._model_name(None, router, threshold),
                                       [{"role": "user", "content": prompt}])
        return self._models[decision.group]

    def batch_calculate_win_rate(self, prompts: Any, router: str) -> Any:
        """P(the strong model wins) per prompt under `router` (RouteLLM's method). A
        pandas Series in gives a Series out with the same index; any other sequence
        of prompts gives a list."""
        if isinstance(prompts, str):
            raise ValueError("batch_calculate_win_rate takes a list (or Series) of prompts, "
                             "not one string: wrap it, [prompt]")
        self._check_router(router)
        listed = list(prompts)
        for number, prompt in enumerate(listed):
            if not isinstance(prompt, str):  # else None would be scored as "None"
                raise ValueError(f"batch_calculate_win_rate: prompt {number} has type "
                                 f"{type(prompt).__name__}, not str; give every prompt as text")
        rates = self._router.win_rates(router, listed)
        index = getattr(prompts, "index", None)
        if index is not None and hasattr(prompts, "to_frame"):
            return type(prompts)(rates, index=index)
        return rates

    def _model_name(self, model: str | None, router: str | None,
                     threshold: float | None) -> str:
        if model is None:
            if router is None or threshold is None:
                raise ValueError("give model='router-<router>-<threshold>', or both router= "
                                 "and threshold=")
            self._check_router(router)
            _check_threshold(threshold, f"router {router!r}")
            return f"router-{router}-{threshold}"
        if model.startswith("router-"):
            alias = parse_router_alias(model)
            if alias is None:
                raise ValueError(
                    f"{model!r} is not a router model name: write router-<name>-<threshold>, "
                    f"e.g. router-{self.routers[0]}-0.5, with a threshold in [0, 1]")
            self._check_router(alias[0])
            _check_threshold(alias[1], model)
        return model

    def _check_router(self, name: str) -> None:
        # "random" needs no checkpoint: the routing policy always offers it.
        if name not in self.routers and name != "random":
            raise UnknownModel(
                f"router-{name}-<threshold>",
                [STRONG_GROUP, WEAK_GROUP, *(f"router-{r}-<threshold>" for r in self.routers)],
                hint=f"Router {name!r} is not one of this Controller's routers "
                     f"({', '.join(self.routers)}); add it to routers= (with its config) "
                     "to use it.")

    def _counted(self, response: Any) -> Any:
        """Counts answers per router and model, as RouteLLM's `model_counts` does
        (a stream is counted when it opens)."""
        meta = response.interlock
        route = meta.get("route") or {}
        model = self._models.get(meta.get("model_group"))
        if model is not None:
            self.model_counts[route.get("router", "direct")][model] += 1
        return response

    def close(self) -> None:
        self._router.close()
