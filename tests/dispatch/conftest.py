"""Fixtures for dispatcher tests: Redis backends with a unique key prefix each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from interlock.dispatch.state.redis import RedisStateBackend


@pytest.fixture
async def redis_backends(redis_url: str) -> AsyncIterator[Callable[..., RedisStateBackend]]:
    """A factory of Redis backends (separate connections) sharing one fresh prefix."""
    prefix = f"interlock-test-{uuid.uuid4().hex[:10]}"
    made: list[RedisStateBackend] = []

    def factory(**kw: object) -> RedisStateBackend:
        kw.setdefault("prefix", prefix)
        # These tests are about counts shared through Redis. A burst of calls opening
        # dozens of connections at once outlasted the default 0.5 s on a slow host,
        # which put a backend on its own memory; falling back is tested apart.
        kw.setdefault("op_timeout", 5.0)
        backend = RedisStateBackend(redis_url, **kw)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield factory
    if made:
        await made[0].clear()
    for backend in made:
        await backend.aclose()
