"""State backends for breakers and rate counters: memory (default) and Redis.

`build_state` picks one from the router settings. The Redis module (and the
redis package) is imported only when a Redis URL or host is configured.

Imports: `dispatch.settings`, `dispatch.state.*`.
"""

from __future__ import annotations

from collections.abc import Callable

from interlock.dispatch.settings import RouterSettings
from interlock.dispatch.state.base import (
    Admission,
    BreakerState,
    BreakerView,
    FailureEvent,
    Limits,
    StateBackend,
)
from interlock.dispatch.state.memory import MemoryStateBackend

__all__ = ["Admission", "BreakerState", "BreakerView", "FailureEvent", "Limits",
           "MemoryStateBackend", "StateBackend", "build_state"]


def build_state(settings: RouterSettings, time_source: Callable[[], float]) -> StateBackend:
    """Redis when the settings name one, else this process's memory on the given clock."""
    if settings.redis_url or settings.redis_host:
        from interlock.dispatch.state.redis import RedisStateBackend

        return RedisStateBackend(
            settings.redis_url, host=settings.redis_host, port=settings.redis_port,
            password=settings.redis_password, prefix=settings.redis_prefix,
            op_timeout=settings.redis_timeout, retry_interval=settings.redis_retry_interval,
            cache_ttl=settings.redis_cache_ttl,
        )
    return MemoryStateBackend(time_source)
