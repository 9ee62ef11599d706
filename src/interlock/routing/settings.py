"""The `routing` section of the config: routers and routed groups.

    routing:
      default_group: budget          # serves when a router fails
      strong_group: high-quality     # for RouteLLM-style model="router-mf-0.116"
      weak_group: budget
      routers:
        tiers: {type: rules, rules: [...], default: budget}
        intents: {type: intents, intents: [...], default: budget}
        mf: {type: learned, checkpoint_path: models/mf}
      groups:
        auto: {router: tiers}                              # rules pick a group
        smart: {router: mf, strong: high-quality, weak: budget, threshold: 0.116}

A leaf schema module (pydantic only) so that `config` can compose it.

Imports: pydantic, the standard library.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


RouterSettingsEntry = Annotated[
    RulesRouterSettings | IntentRouterSettings | LearnedRouterSettings,
    Field(discriminator="type"),
]


class RoutedGroup(_Strict):
    """A name clients ask for, whose router picks one of its member groups."""

    router: str
    # Two-model routers: strong above the threshold, weak below.
    strong: str | None = None
    weak: str | None = None
    threshold: float | None = None
    # N-model routers: members, and the quality target or cost weight (lambda).
    members: list[str] | None = None
    quality_target: float | None = None
    cost_weight: float | None = None
    default: str | None = None


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
        return self

    def group_names_used(self) -> set[str]:
        """Model groups the routing section refers to, for cross-checks at load."""
        used = {g for g in (self.default_group, self.strong_group, self.weak_group) if g}
        for router in self.routers.values():
            if isinstance(router, RulesRouterSettings):
                used |= {r.group for r in router.rules}
            elif isinstance(router, IntentRouterSettings):
                used |= {i.group for i in router.intents}
            if isinstance(router, LearnedRouterSettings):
                used |= {g for g in (router.judge_group, router.embedding_group) if g}
            elif router.default:
                used.add(router.default)
        for group in self.groups.values():
            used |= {g for g in (group.strong, group.weak, group.default) if g}
            used |= set(group.members or [])
        return used


# `random` needs no artefact, so a routed group may name it without defining it.
_BUILTIN_ROUTERS = frozenset({"random"})
