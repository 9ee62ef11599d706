"""The Redis client a budget gate counts through (`budget_redis_counts`), and
the scripts it runs there (`budget_scripts`), registered on it: made when the
gate first uses Redis, never after it closed.

Imports: `costs.budget_scripts`; `redis.asyncio` lazily.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from interlock.costs.budget_scripts import RESERVE, SEED, SETTLE, SPEND


class BudgetRedis(NamedTuple):
    client: Any
    reserve: Any
    settle: Any
    seed: Any
    spend: Any


def connect(url: str, timeout: float) -> BudgetRedis:
    """A client on `url` (no connection is opened before its first command),
    its commands and connections limited to `timeout` seconds."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    # One retry, at once, on a connection error only: a pooled connection
    # that died while Redis restarted fails once though Redis is back,
    # which must not count as an outage; a stalled Redis (a timeout)
    # still costs one timeout. Blocking pool: a burst of calls waits
    # briefly for a connection (at least a second) instead of failing
    # over to local counts.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=32, timeout=max(1.0, timeout),
        socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
    client = aioredis.Redis(connection_pool=pool, retry=retry)
    return BudgetRedis(client, *(client.register_script(script)
                                 for script in (RESERVE, SETTLE, SEED, SPEND)))
