"""The `routing` section of the config: rules, intents, learned routers,
routed groups. A leaf schema module (pydantic only) so `config` can compose it.

The routing issue owns the details; this first version accepts the shapes
below and is extended in place.

Imports: pydantic, the standard library.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The group that serves when a router fails or nothing matches.
    default_group: str | None = None
    # Routed groups: name -> {router: ..., members/strong/weak: ..., threshold: ...}
    groups: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Named router definitions (rules, intents, learned routers with artefact paths).
    routers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # RouteLLM-style `router-<name>-<threshold>` aliases route between these groups.
    strong_group: str | None = None
    weak_group: str | None = None
