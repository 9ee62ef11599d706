"""The `routing` section of the config: routers and routed groups.

    routing:
      default_group: budget          # serves when a router fails
      strong_group: high-quality     # for RouteLLM-style model="router-mf-0.5688"
      weak_group: budget
      routers:
        tiers: {type: rules, rules: [...], default: budget}
        intents: {type: intents, intents: [...], default: budget}
        mf: {type: learned, checkpoint_path: models/mf}
      groups:
        auto: {router: tiers}                              # rules pick a group
        smart: {router: mf, strong: high-quality, weak: budget, threshold: 0.5688}

A leaf schema module (pydantic only) so that `config` can compose it.

Imports: pydantic, the standard library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleCondition(_Strict):
    """All conditions given must hold (AND). `regex` matches if any pattern does."""

    regex: list[str] | str | None = None
    # Which text the patterns and lengths look at.
    text: Literal["last_user", "all", "system"] = "last_user"
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)
    min_tokens: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    has_code_block: bool | None = None
    has_tools: bool | None = None
    has_images: bool | None = None
    min_turns: int | None = Field(default=None, ge=0)
    max_turns: int | None = Field(default=None, ge=0)
    # Request metadata that must equal these values (e.g. {team: search}).
    metadata: dict[str, Any] | None = None
    # Any of these tags in metadata.tags.
    tags: list[str] | None = None


class Rule(_Strict):
    name: str
    group: str
    when: RuleCondition | None = None
    # Any of these condition sets (OR); combined with `when` by AND.
    any: list[RuleCondition] | None = None


class RulesRouterSettings(_Strict):
    type: Literal["rules"]
    rules: list[Rule]
    default: str | None = None


class Intent(_Strict):
    name: str
    group: str
    utterances: list[str] = Field(min_length=1)
    threshold: float | None = Field(default=None, ge=-1, le=1)


class IntentRouterSettings(_Strict):
    type: Literal["intents"]
    intents: list[Intent] = Field(min_length=1)
    default: str | None = None
    threshold: float = Field(default=0.2, ge=-1, le=1)
    # How many nearest examples of an intent are averaged into its score.
    top_k: int = Field(default=1, ge=1)
    # "hashed" (built in) or "st:<local model path>" (sentence-transformers).
    featurizer: str = "hashed"
    # The st: model path as the config file wrote it, when it was relative (as
    # LearnedRouterSettings._written).
    _written: str | None = PrivateAttr(default=None)

    def read_as(self) -> str:
        """How a relative `st:` model path was read, for an error; empty if as written."""
        return _relative_path_note(self._written)


class LearnedRouterSettings(_Strict):
    type: Literal["learned"] = "learned"
    checkpoint_path: str
    # Passed to the llm router: the model group that rates difficulty.
    judge_group: str | None = None
    # Which of the router's trained models stand for "strong" and "weak" when a
    # two-model decision is made between groups with other names (RouteLLM's
    # routers are trained on GPT-4 vs Mixtral and used for any pair). Default:
    # the models with the higher and lower mean quality in the training data.
    strong_model: str | None = None
    weak_model: str | None = None
    # For routers trained on an embeddings endpoint: the model group (an
    # OpenAI-compatible embeddings deployment) that embeds prompts at run time.
    embedding_group: str | None = None
    # checkpoint_path as the config file wrote it, when it was relative and so
    # was read from the file's folder (`RoutingSettings.read_paths_from`): errors
    # show both.
    _written: str | None = PrivateAttr(default=None)

    def read_as(self) -> str:
        """How a relative checkpoint_path was read, for an error that names the
        resolved one; empty for a path used as written."""
        return _relative_path_note(self._written)


RouterSettingsEntry = Annotated[
    RulesRouterSettings | IntentRouterSettings | LearnedRouterSettings,
    Field(discriminator="type"),
]


class RoutedGroup(_Strict):
    """A name clients ask for, whose router picks one of its member groups."""

    router: str
    # Two-model routers: strong above the threshold, weak below. The threshold is a
    # probability, as in a router-<name>-<threshold> name.
    strong: str | None = None
    weak: str | None = None
    threshold: float | None = None
    # N-model routers: members, and the quality target or cost weight (lambda).
    members: list[str] | None = None
    quality_target: float | None = None
    cost_weight: float | None = None
    default: str | None = None

    @field_validator("threshold")
    @classmethod
    def _threshold_is_a_probability(cls, value: float | None) -> float | None:
        # Above 1 every request went to the weak group, below 0 to the strong one.
        if value is not None and not 0.0 <= value <= 1.0:
            # No "got": the config's report puts the value first itself.
            raise ValueError("expected a probability in [0, 1] (a score at or above it "
                             "picks the strong group), as router-<name>-<t> takes")
        return value


class RoutingSettings(_Strict):
    default_group: str | None = None
    strong_group: str | None = None
    weak_group: str | None = None
    routers: dict[str, RouterSettingsEntry] = Field(default_factory=dict)
    groups: dict[str, RoutedGroup] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _routers_exist(self) -> RoutingSettings:
        for name, group in self.groups.items():
            if group.router not in self.routers and group.router not in _BUILTIN_ROUTERS:
                known = ", ".join(sorted(self.routers)) or "(none defined)"
                raise ValueError(
                    f"routing.groups.{name}.router names {group.router!r}, which is not "
                    f"defined under routing.routers (defined: {known})")
        for name, group in self.groups.items():
            problem = self._routed_group_problem(group)
            if problem:
                raise ValueError(f"routing.groups.{name}: {problem}")
        if bool(self.strong_group) != bool(self.weak_group):
            given, missing = (("strong_group", "weak_group") if self.strong_group
                              else ("weak_group", "strong_group"))
            raise ValueError(
                f"routing.{given} is set without routing.{missing}; a router-<name>-<threshold> "
                f"model routes between the two, so expected both (or neither)")
        return self

    def read_paths_from(self, folder: Path) -> None:
        """Make the relative file paths of a config file's routing section
        (checkpoint_path, an intent router's `st:<model path>`) relative to
        `folder`, the file's own, not to whatever directory the process runs in.
        Absolute paths stay as they are; `~` is expanded."""
        for spec in self.routers.values():
            if isinstance(spec, LearnedRouterSettings):
                written = spec.checkpoint_path
                spec.checkpoint_path = _in_folder(written, folder)
                if not Path(written).expanduser().is_absolute():
                    spec._written = written
            elif isinstance(spec, IntentRouterSettings) and spec.featurizer.startswith("st:"):
                written = spec.featurizer[3:]
                spec.featurizer = "st:" + _in_folder(written, folder)
                if not Path(written).expanduser().is_absolute():
                    spec._written = written

    def _routed_group_problem(self, group: RoutedGroup) -> str | None:
        """What makes a routed group fail or misroute its requests, if anything."""
        router = self.routers.get(group.router)
        two = [k for k in ("strong", "weak", "threshold") if getattr(group, k) is not None]
        many = [k for k in ("members", "quality_target", "cost_weight")
                if getattr(group, k) is not None]
        if isinstance(router, RulesRouterSettings | IntentRouterSettings):
            return _picked_by_router_problem(group, router, two + many, self)
        if two and many:
            return (f"sets {', '.join(two)} (a two-model choice) and {', '.join(many)} (an "
                    "N-model choice); expected one: strong, weak and threshold, or members "
                    "with quality_target or cost_weight")
        if many:
            return _n_model_problem(group, router)
        if not (group.strong and group.weak):
            missing = " and ".join(k for k in ("strong", "weak") if getattr(group, k) is None)
            return (f"router {group.router!r} is a learned router and this group has no "
                    f"{missing}; expected strong and weak groups (with a threshold), or "
                    "members (N models)")
        return None

    def targets_of(self, group: RoutedGroup) -> set[str]:
        """The groups a routed group's router may hand a request to by name: its rules'
        or intents' groups and defaults, or strong and weak. Only these may be routed
        groups themselves (one level of nesting); N-model members need prices and a
        router column, which only model groups have."""
        return _named_by(group) | _picked_by(self.routers.get(group.router))

    def nesting_problems(self) -> list[str]:
        """Routed groups named where only a model group can serve, or nested deeper
        than one level (which also rules out cycles)."""
        routed = set(self.groups)
        problems = []
        for field in _SECTION_GROUPS:
            if getattr(self, field) in routed:
                problems.append(f"routing.{field} names the routed group "
                                f"{getattr(self, field)!r}; expected a model group")
        for name, group in self.groups.items():
            for member in sorted(set(group.members or []) & routed):
                problems.append(f"routing.groups.{name}.members names the routed group "
                                f"{member!r}; expected model groups (members are priced "
                                "and matched to the router's models)")
            for inner in sorted(self.targets_of(group) & routed):
                deeper = sorted(self.targets_of(self.groups[inner]) & routed)
                if deeper:
                    problems.append(
                        f"routing.groups.{name} may send requests to the routed group "
                        f"{inner!r}, which may send them on to the routed group(s) "
                        f"{', '.join(deeper)}; one level of nesting is supported, so "
                        f"expected {inner!r}'s router to name model groups only")
        for router_name, router in self.routers.items():
            if isinstance(router, LearnedRouterSettings):
                for field in _LEARNED_GROUPS:
                    if getattr(router, field) in routed:
                        problems.append(f"routing.routers.{router_name}.{field} names the "
                                        f"routed group {getattr(router, field)!r}; expected "
                                        "a model group")
        return problems

    def group_names_used(self) -> set[str]:
        """Model groups the routing section refers to, for cross-checks at load."""
        used = _named(self, _SECTION_GROUPS)
        for router in self.routers.values():
            used |= _picked_by(router)
            if isinstance(router, LearnedRouterSettings):
                used |= _named(router, _LEARNED_GROUPS)
        for group in self.groups.values():
            used |= _named_by(group) | set(group.members or [])
        return used


# The fields naming a model group: of the routing section, and of a learned router.
_SECTION_GROUPS = ("default_group", "strong_group", "weak_group")
_LEARNED_GROUPS = ("judge_group", "embedding_group")


def _named(settings: BaseModel, fields: tuple[str, ...]) -> set[str]:
    """The groups `settings` names in `fields` (those set)."""
    return {g for g in (getattr(settings, f) for f in fields) if g}


def _named_by(group: RoutedGroup) -> set[str]:
    """The groups a routed group names for a two-model choice or a fallback."""
    return _named(group, ("strong", "weak", "default"))


def _picked_by(router: RouterSettingsEntry | None) -> set[str]:
    """The groups a rules or intents router hands a request to by name: its rules'
    or intents' groups and its default. A learned router names none: it picks
    between the groups its routed group names."""
    if isinstance(router, RulesRouterSettings):
        picked = {r.group for r in router.rules}
    elif isinstance(router, IntentRouterSettings):
        picked = {i.group for i in router.intents}
    else:
        return set()
    if router.default:
        picked.add(router.default)
    return picked

def _picked_by_router_problem(group: RoutedGroup, router: RulesRouterSettings
                              | IntentRouterSettings, learned_keys: list[str],
                              settings: RoutingSettings) -> str | None:
    kind = router.type
    if learned_keys:
        return (f"sets {', '.join(learned_keys)}, which only learned routers read; router "
                f"{group.router!r} is a {kind} router and picks the group from its "
                f"{kind}, so expected none of them")
    if not (router.default or group.default or settings.default_group or settings.weak_group):
        what = "no rule matches" if kind == "rules" else "reaches no intent's threshold"
        return (f"a request that {what} has no group to go to: router {group.router!r} "
                "has no default, nor has this group or routing.default_group; expected "
                f"default: GROUP on routing.routers.{group.router}")
    return None


def _n_model_problem(group: RoutedGroup, router: RouterSettingsEntry | None) -> str | None:
    if router is None:  # the built-in random router
        return ("the built-in random router routes between strong and weak only; "
                "expected strong and weak (with a threshold) instead of members, or a "
                "trained router for members")
    if not group.members:
        return ("sets quality_target or cost_weight without members; expected members: "
                "the model groups the router chooses among")
    if group.quality_target is not None and group.cost_weight is not None:
        return ("sets both quality_target and cost_weight; expected one: the cheapest "
                "member reaching a quality, or the best quality - cost_weight x cost")
    return None


# `random` needs no artefact, so a routed group may name it without defining it.
_BUILTIN_ROUTERS = frozenset({"random"})


def _relative_path_note(written: str | None) -> str:
    """" (the config file gives ...)" for a path read from the config file's folder."""
    if written is None:
        return ""
    return (f" (the config file gives {written!r}: a relative path is read from "
            "the config file's folder, not the working directory)")


def _in_folder(path: str, folder: Path) -> str:
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else folder / expanded)
