"""Learned quality routers (RouteLLM's family, for any number of models).

Public: `QualityRouter`, `make_router(name, **params)`, `load_router(path)`,
`ROUTER_NAMES`.

Imports: `routing.learned.*`.
"""

from interlock.routing.learned.base import QualityRouter
from interlock.routing.learned.registry import ROUTER_NAMES, load_router, make_router

__all__ = ["ROUTER_NAMES", "QualityRouter", "load_router", "make_router"]
