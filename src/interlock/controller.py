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
exactly as through the gateway.

Imports: the standard library, `client`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from interlock.client import Router

STRONG_GROUP = "strong"
WEAK_GROUP = "weak"


def _deployment(group: str, model: str, api_base: str | None,
                api_key: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model}
    if api_base:
        params["api_base"] = api_base
    if api_key:
        params["api_key"] = api_key
    return {"model_name": group, "litellm_params": params}


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
    def __init__(self, routers: Sequence[str], strong_model: str, weak_model: str, *,
                 config: Mapping[str, Mapping[str, Any]] | None = None,
                 api_base: str | None = None, api_key: str | None = None,
                 environ: Mapping[str, str] | None = None,
                 progress_bar: bool = False, **router_settings: Any) -> None:
        del progress_bar  # accepted for RouteLLM compatibility; nothing to show
        if not routers:
            raise ValueError("name at least one router, e.g. routers=['mf']")
        router_defs: dict[str, Any] = {}
        for name in routers:
            options = dict((config or {}).get(name, {}))
            if name == "random" and "checkpoint_path" not in options:
                continue  # needs no artefact
            if "checkpoint_path" not in options:
                raise ValueError(
                    f"router {name!r} needs config={{'{name}': {{'checkpoint_path': DIR}}}}; "
                    f"make DIR with `interlock train {name} --data FILE --out DIR`")
            router_defs[name] = {"type": "learned", **options}
        self.routers = list(routers)
        self._models = {STRONG_GROUP: strong_model, WEAK_GROUP: weak_model}
        # router name -> model -> answers, as RouteLLM's Controller keeps them.
        self.model_counts: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int))
        self._router = Router(config={
            "model_list": [_deployment(STRONG_GROUP, strong_model, api_base, api_key),
                           _deployment(WEAK_GROUP, weak_model, api_base, api_key)],
            "router_settings": router_settings,
            "routing": {"strong_group": STRONG_GROUP, "weak_group": WEAK_GROUP,
                        "default_group": WEAK_GROUP, "routers": router_defs},
            "general_settings": {},
        }, environ=environ)
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
        decision = self._router.decide(self._model_name(None, router, threshold),
                                       [{"role": "user", "content": prompt}])
        return self._models[decision.group]

    def batch_calculate_win_rate(self, prompts: Any, router: str) -> Any:
        """P(the strong model wins) per prompt under `router` (RouteLLM's method). A
        pandas Series in gives a Series out with the same index; any other sequence
        of prompts gives a list."""
        rates = self._router.win_rates(router, [str(p) for p in prompts])
        index = getattr(prompts, "index", None)
        if index is not None and hasattr(prompts, "to_frame"):
            return type(prompts)(rates, index=index)
        return rates

    def _model_name(self, model: str | None, router: str | None,
                    threshold: float | None) -> str:
        if model is not None:
            return model
        if router is None or threshold is None:
            raise ValueError("give model='router-<router>-<threshold>', or both router= "
                             "and threshold=")
        return f"router-{router}-{threshold}"

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
