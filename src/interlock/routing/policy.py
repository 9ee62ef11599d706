"""From a request to a `RoutingDecision`: which model group serves it.

A request that names a plain model group goes there directly. A routed group
(`routing.groups`) asks its router to pick among its member groups; a
RouteLLM-style `router-<name>-<threshold>` name routes between the configured
strong and weak groups. A router never fails a request: when it raises, the
default group serves and the error is counted and named in the decision.

Imports: the standard library, `catalog`, `types`, `errors`, `routing.*`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from interlock.catalog import Catalog
from interlock.errors import ConfigError, InvalidRequest, RouterNotTrained, UnknownModel
from interlock.routing.decision import Candidate, RoutingDecision, direct
from interlock.routing.rules import RulesRouter
from interlock.routing.settings import (
    IntentRouterSettings,
    LearnedRouterSettings,
    RoutedGroup,
    RoutingSettings,
    RulesRouterSettings,
)
from interlock.types import ChatRequest

if TYPE_CHECKING:  # quality_policy imports numpy, which a rules-only gateway never needs
    from interlock.routing.quality_policy import PriceOf

log = logging.getLogger("interlock.routing")

AskModel = Callable[[str, str], Awaitable[str]]
EmbedTexts = Callable[[str, list[str]], Awaitable[list[list[float]]]]
GroupAvailable = Callable[[str], bool]

# The threshold may carry an exponent: Python prints small floats as 6.4e-06,
# and a name built with f"router-mf-{t}" must still route.
# What a router-<name>-<threshold> model name can carry as <name>.
ROUTER_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_ALIAS = re.compile(rf"^router-(?P<name>{ROUTER_NAME.pattern})-"
                    r"(?P<threshold>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)$")


# Anything shaped like an alias, whatever follows the router's name: for the error.
_LOOSE_ALIAS = re.compile(rf"^router-(?P<name>{ROUTER_NAME.pattern})-(?P<threshold>.+)$")


def parse_router_alias(model: str) -> tuple[str, float] | None:
    """`router-mf-0.116` -> ("mf", 0.116); None if the name is not an alias."""
    m = _ALIAS.match(model)
    if m is None:
        return None
    return m["name"], float(m["threshold"])


def _intent_router(name: str, spec: IntentRouterSettings) -> Any:
    # Not at the top: both import numpy, which a rules-only gateway never needs.
    from interlock.routing.embedding_featurizers import EmbeddingModelUnavailable
    from interlock.routing.intents import IntentRouter

    try:
        return IntentRouter.from_settings(name, spec)
    except EmbeddingModelUnavailable as exc:
        raise EmbeddingModelUnavailable(
            f"routing.routers.{name}.featurizer: {exc}{spec.read_as()}") from None


class RoutingPolicy:
    """Decides, per request, the model group. Given the request, the catalog and
    the health snapshot (`available`), the decision is a pure function."""

    def __init__(self, settings: RoutingSettings, catalog: Catalog, *,
                 ask: AskModel | None = None, embed: EmbedTexts | None = None,
                 prices: PriceOf | None = None) -> None:
        """`prices`: a deployment's price as cost is recorded (the gateway's
        `PriceBook.price_for`); without it only prices written on deployments count."""
        self.settings = settings
        self.catalog = catalog
        self._prices = prices
        self._ask = ask
        self._embed = embed
        self.errors = 0
        self._rules: dict[str, RulesRouter] = {}
        self._intents: dict[str, Any] = {}
        self._learned: dict[str, Any] = {}
        # The decision for a request that names a group is the same every time:
        # built once per group (a frozen dataclass costs dozens of opcodes to make).
        self._direct = {group: direct(group) for group in catalog.groups}
        self._check_groups()  # before loading artefacts: a naming mistake is said first
        for name, spec in settings.routers.items():
            if isinstance(spec, RulesRouterSettings):
                self._rules[name] = RulesRouter(name, spec)
            elif isinstance(spec, IntentRouterSettings):
                self._intents[name] = _intent_router(name, spec)
            elif isinstance(spec, LearnedRouterSettings):
                self._learned[name] = self._load_learned(name, spec)
        self._check_member_columns()
        self._check_member_prices()

    @classmethod
    def from_config(cls, settings: RoutingSettings | None, catalog: Catalog, *,
                    ask: AskModel | None = None, embed: EmbedTexts | None = None,
                    prices: PriceOf | None = None) -> RoutingPolicy:
        return cls(settings or RoutingSettings(), catalog, ask=ask, embed=embed, prices=prices)

    def _load_learned(self, name: str, spec: LearnedRouterSettings) -> Any:
        from interlock.routing.embedding_featurizers import EmbeddingModelUnavailable
        from interlock.routing.learned.registry import ROUTER_NAMES, load_router

        ask = None
        if self._ask is not None and spec.judge_group:
            judge, gateway_ask = spec.judge_group, self._ask

            async def ask(prompt: str) -> str:
                return await gateway_ask(judge, prompt)

        # An entry named after a router kind ("mf") must hold that kind; one with
        # a name of the user's own ("smart") may hold any.
        embed = None
        if self._embed is not None and spec.embedding_group:
            group, gateway_embed = spec.embedding_group, self._embed

            async def embed(texts: list[str]) -> list[list[float]]:
                return await gateway_embed(group, texts)

        kind = name if name in ROUTER_NAMES else None
        try:
            return load_router(spec.checkpoint_path, name=kind, ask=ask, embed=embed)
        except RouterNotTrained as exc:
            # The field and the path it was read as: a relative one from a config
            # file is read from the file's folder, which may surprise.
            raise RouterNotTrained(f"routing.routers.{name}.checkpoint_path: {exc}"
                                   f"{spec.read_as()}") from None
        except EmbeddingModelUnavailable as exc:
            # The model path is the one the router was trained with, in its manifest.
            raise EmbeddingModelUnavailable(
                f"routing.routers.{name}.checkpoint_path: the router at "
                f"{spec.checkpoint_path} was trained on embeddings of a local model: "
                f"{exc}") from None

    def _check_groups(self) -> None:
        routed = self.settings.groups
        unknown = sorted(g for g in self.settings.group_names_used()
                         if g not in self.catalog.groups and g not in routed)
        if unknown:
            raise ConfigError(
                f"The routing section names model groups that no model_list entry defines: "
                f"{', '.join(unknown)}. Defined groups: {', '.join(self.catalog.group_names)}"
                + (f"; routed groups: {', '.join(routed)}." if routed else "."))
        problems = self.settings.nesting_problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def _check_member_columns(self) -> None:
        """Each member group must stand for one of its learned router's models; one
        that does not failed every request it routed (the first member served)."""
        from interlock.routing.quality_policy import member_column

        for name, routed in self.settings.groups.items():
            router = self._learned.get(routed.router)
            if router is None:
                continue
            for member in routed.members or []:
                try:
                    member_column(self.catalog.groups.get(member), member, router.models)
                except ValueError as exc:
                    raise ConfigError(
                        f"routing.groups.{name}: {exc}; expected members named after the "
                        "router's models, or whose deployments' model is one of them") from None

    def _check_member_prices(self) -> None:
        """A quality_target or cost_weight compares members' prices: refuse a member
        nothing prices now, rather than let it count as free on every request."""
        from interlock.routing.quality_policy import UnpricedMember, member_costs

        for name, routed in self.settings.groups.items():
            if not routed.members or (routed.quality_target is None
                                      and routed.cost_weight is None):
                continue
            try:
                member_costs(routed.members, self.catalog, self._prices)
            except UnpricedMember as exc:
                raise ConfigError(f"routing.groups.{name}: {exc}") from None

    def placeholder(self, name: str) -> RoutingDecision:
        """A request's decision until it is routed: a direct one for its name."""
        return self._direct.get(name) or direct(name)

    def public_names(self) -> list[str]:
        """Names clients may ask for besides the plain model groups."""
        return list(self.settings.groups)

    def alias_routers(self) -> list[str]:
        """The routers a `router-<name>-<threshold>` model may name (none without
        routing.strong_group and weak_group)."""
        if not (self.settings.strong_group and self.settings.weak_group):
            return []
        return sorted({*self._learned, "random"})

    @property
    def default_group(self) -> str | None:
        return self.settings.default_group or self.settings.weak_group

    async def decide(self, request: ChatRequest, *,
                     available: GroupAvailable | None = None) -> RoutingDecision:
        name = request.model
        decision = self._direct.get(name)
        if decision is not None:
            return decision
        routed = self.settings.groups.get(name)
        alias = None if routed is not None else parse_router_alias(name)
        if routed is None and alias is not None:
            routed = self._alias_group(name, *alias)
        if routed is None:
            raise self._unknown(name)
        started = time.perf_counter()
        try:
            decision = await self._route(name, routed, request)
        except Exception as exc:  # a router must never fail the request
            decision = self._fallback_decision(name, routed, exc, started)
        inner = self.settings.groups.get(decision.group)
        if inner is not None:  # a routed group inside a routed group (one level, checked)
            decision = await self._route_nested(decision, inner, request, started)
        decision = replace(decision, elapsed_ms=(time.perf_counter() - started) * 1000)
        if log.isEnabledFor(logging.DEBUG):  # the header carries no reason or time
            log.debug("routed %r: %s; reason: %s; decided in %.3f ms", name,
                      decision.header_value(), decision.reason, decision.elapsed_ms)
        return decision

    async def _route_nested(self, outer: RoutingDecision, inner: RoutedGroup,
                            request: ChatRequest, started: float) -> RoutingDecision:
        """The inner routed group's decision, named after the outer request and
        telling both steps (`router=tiers>mf`)."""
        try:
            decision = await self._route(outer.group, inner, request)
        except Exception as exc:  # a router must never fail the request
            decision = self._fallback_decision(outer.group, inner, exc, started)
        return replace(decision, requested=outer.requested,
                       router=f"{outer.router}>{decision.router}",
                       reason=f"{outer.reason}; then {outer.group}: {decision.reason}",
                       error=outer.error or decision.error,
                       matched=outer.matched or decision.matched)

    def _unknown(self, name: str) -> InvalidRequest:
        """The error for a name that is neither a group nor a well-formed alias: a
        router-<name>-<threshold> whose threshold is no number in [0, 1] (a
        negative one, "0.5x") is told what the threshold must be, as 1.5 is."""
        loose = _LOOSE_ALIAS.match(name)
        # Only for a router that exists: router-foo-v2 is an unknown name, not a bad
        # threshold of a router "foo".
        if loose is not None and loose["name"] in self.alias_routers():
            return InvalidRequest(
                f"The model {name!r} has threshold {loose['threshold']!r}; a "
                "router-<name>-<threshold> threshold must be a number in [0, 1], such as "
                "router-mf-0.5 or router-mf-1e-05.", param="model")
        return UnknownModel(name, self.catalog.group_names + self.public_names())

    def _alias_group(self, name: str, router: str, threshold: float) -> RoutedGroup:
        strong, weak = self.settings.strong_group, self.settings.weak_group
        if not strong or not weak:
            raise UnknownModel(
                name, self.catalog.group_names + self.public_names(),
                hint="A router-<name>-<threshold> model needs routing.strong_group and "
                     "routing.weak_group in the gateway's config (docs/routing.md).")
        if router not in self._learned and router != "random":
            routers = ", ".join(f"router-{r}-<threshold>" for r in self.alias_routers())
            raise UnknownModel(
                name, self.catalog.group_names + self.public_names(),
                hint=f"No router {router!r} is configured under routing.routers; the "
                     f"router names this gateway takes are {routers}.")
        if not 0.0 <= threshold <= 1.0:
            # A probability threshold above 1 silently sent everything to the weak group.
            raise InvalidRequest(
                f"The model {name!r} has threshold {threshold:g}; a router-<name>-<threshold> "
                "threshold is a probability and must lie in [0, 1].", param="model")
        return RoutedGroup(router=router, strong=strong, weak=weak, threshold=threshold)

    def _fallback_decision(self, name: str, routed: RoutedGroup, exc: Exception,
                           started: float) -> RoutingDecision:
        self.errors += 1
        group = self._fallback_group(routed)
        log.warning("router %s failed (%s: %s); serving the default group %s",
                    routed.router, type(exc).__name__, exc, group)
        return RoutingDecision(
            requested=name, group=group, router=routed.router,
            reason=f"the router failed ({type(exc).__name__}); the default group served",
            elapsed_ms=(time.perf_counter() - started) * 1000, error=type(exc).__name__)

    def _fallback_group(self, routed: RoutedGroup) -> str:
        """Who serves when the router fails; the settings' checks make sure of one."""
        group = routed.default or self.default_group
        if group:
            return group
        picker = self._rules.get(routed.router) or self._intents.get(routed.router)
        own = picker.default if picker is not None else None
        return own or routed.weak or (routed.members or [""])[0]

    async def _route(self, name: str, routed: RoutedGroup,
                     request: ChatRequest) -> RoutingDecision:
        router = routed.router
        if router in self._rules:
            return self._route_rules(name, router, routed, request)
        if router in self._intents:
            return self._route_intents(name, router, routed, request)
        return await self._route_learned(name, router, routed, request)

    def _route_rules(self, name: str, router: str, routed: RoutedGroup,
                     request: ChatRequest) -> RoutingDecision:
        match = self._rules[router].route(request)
        if match is None:
            # Settings refuse a rules group with nowhere to go, so this is never "".
            group = self._fallback_group(routed)
            return RoutingDecision(name, group, router, "no rule matched; the default group",
                                   matched="rule=(none)")
        reason = (f"rule {match.rule!r} matched" if match.rule
                  else "no rule matched; the router's default group")
        return RoutingDecision(name, match.group, router, reason, candidates=match.candidates,
                               matched=f"rule={match.rule or '(none)'}")

    def _route_intents(self, name: str, router: str, routed: RoutedGroup,
                       request: ChatRequest) -> RoutingDecision:
        result = self._intents[router].route(request.last_user_text)
        return RoutingDecision(name, result.group, router, result.reason, score=result.score,
                               threshold=result.threshold, candidates=result.candidates,
                               matched=f"intent={result.intent or '(none)'}")

    async def _route_learned(self, name: str, router_name: str, routed: RoutedGroup,
                             request: ChatRequest) -> RoutingDecision:
        prompt = request.last_user_text or request.prompt_text
        if routed.strong and routed.weak:
            threshold = routed.threshold if routed.threshold is not None else 0.5
            score = await self._win_prob(router_name, routed, prompt)
            group = routed.strong if score >= threshold else routed.weak
            which = "strong" if group == routed.strong else "weak"
            return RoutingDecision(
                name, group, router_name,
                f"P(strong wins)={score:.3f} {'>=' if which == 'strong' else '<'} "
                f"threshold {threshold:g}: the {which} group",
                score=score, threshold=threshold,
                candidates=(Candidate(routed.strong, score), Candidate(routed.weak, 1 - score)))
        return await self._route_members(name, router_name, routed, prompt)

    async def win_rates(self, router_name: str, prompts: list[str]) -> list[float]:
        """P(the strong group's answer wins) per prompt, as `router-<name>-<t>` scores
        it, in one batch (RouteLLM's `batch_calculate_win_rate`)."""
        routed = self._alias_group(f"router-{router_name}", router_name, 0.5)
        return await self._win_probs(router_name, routed, _prompt_list(prompts))

    async def _win_prob(self, router_name: str, routed: RoutedGroup, prompt: str) -> float:
        return (await self._win_probs(router_name, routed, [prompt]))[0]

    async def _win_probs(self, router_name: str, routed: RoutedGroup,
                         prompts: list[str]) -> list[float]:
        if router_name == "random" and router_name not in self._learned:
            return [_prompt_coin(p) for p in prompts]
        router = self._learned[router_name]
        strong, weak = self._model_names(router_name, router, routed)
        if hasattr(router, "awin_prob"):
            scores = await router.awin_prob(prompts, strong, weak)
        else:
            scores = router.win_prob(prompts, strong, weak)
        return [float(s) for s in scores]

    def _model_names(self, router_name: str, router: Any,
                     routed: RoutedGroup) -> tuple[str, str]:
        """The router's own model names that stand for the strong and weak groups."""
        models = list(router.models)
        if routed.strong in models and routed.weak in models:
            return routed.strong, routed.weak  # type: ignore[return-value]
        spec = self.settings.routers.get(router_name)
        if isinstance(spec, LearnedRouterSettings) and spec.strong_model and spec.weak_model:
            return spec.strong_model, spec.weak_model
        return _strong_and_weak(router)

    async def _route_members(self, name: str, router_name: str, routed: RoutedGroup,
                             prompt: str) -> RoutingDecision:
        from interlock.routing.quality_policy import choose_group

        router = self._learned[router_name]
        members = routed.members or list(router.models)
        quality = (await router.apredict_quality([prompt]))[0]
        choice = choose_group(members, list(router.models), quality, self.catalog,
                              quality_target=routed.quality_target,
                              cost_weight=routed.cost_weight, price_of=self._prices)
        return RoutingDecision(name, choice.group, router_name, choice.reason,
                               score=choice.score, candidates=tuple(
                                   Candidate(g, s) for g, s in choice.scores.items()))


def _prompt_list(prompts: Any) -> list[str]:
    """The prompts to score, checked: one string alone would be scored letter by
    letter, and a None deep in a router is an AttributeError."""
    if isinstance(prompts, str) or not isinstance(prompts, Iterable):
        raise InvalidRequest(f"win_rates takes a list of prompts (got a value of type "
                             f"{type(prompts).__name__}): wrap one prompt as [prompt]")
    listed = list(prompts)
    for index, prompt in enumerate(listed):
        if not isinstance(prompt, str):
            raise InvalidRequest(f"win_rates: prompt {index} has type "
                                 f"{type(prompt).__name__}, not str")
    return listed


def _prompt_coin(prompt: str) -> float:
    """A uniform number in [0, 1) drawn from the prompt alone: the built-in random
    router's coin, so the same prompt routes the same way every time (and in every
    process, unlike `hash`, which is salted per process)."""
    digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def _strong_and_weak(router: Any) -> tuple[str, str]:
    """The best and worst of the router's models by mean training quality."""
    try:
        strong, weak = router.strong_weak()
    except ValueError:
        raise ValueError(
            f"router {router.name!r} knows models {list(router.models)} but not which is "
            "strong: set strong_model and weak_model on the router in routing.routers"
        ) from None
    return str(strong), str(weak)
