"""A client key's own limits (rpm_limit, tpm_limit, max_parallel_requests), on the
state backends that keep the deployments' windows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from tests.dispatch.fakes import request

from interlock.config.schema import ClientKey
from interlock.dispatch.state.memory import MemoryStateBackend
from interlock.errors import KeyRateLimited
from interlock.key_limits import KeyLimits
from interlock.types import Usage


def key(name: str = "team", **limits: Any) -> ClientKey:
    return ClientKey(name=name, key=f"sk-{name}-0123456789", **limits)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_only_keys_with_a_limit_are_limited() -> None:
    limits = KeyLimits([key("free"), key("capped", rpm_limit=5)], MemoryStateBackend())
    assert limits.limited == {"capped"}


async def test_rpm_limit_refuses_until_the_minute_has_passed() -> None:
    clock = Clock()
    limits = KeyLimits([key(rpm_limit=2)], MemoryStateBackend(clock))
    for _ in range(2):
        (await limits.admit("team", request())).done(None)
    with pytest.raises(KeyRateLimited) as refused:
        await limits.admit("team", request())
    assert refused.value.limit == "rpm_limit" and refused.value.status_code == 429
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 60
    assert "'team' is over its rpm_limit of 2" in str(refused.value)
    clock.t += 61
    (await limits.admit("team", request())).done(None)


async def test_max_parallel_requests_counts_the_calls_not_yet_done() -> None:
    limits = KeyLimits([key(max_parallel_requests=1)], MemoryStateBackend())
    first = await limits.admit("team", request())
    with pytest.raises(KeyRateLimited) as refused:
        await limits.admit("team", request())
    assert refused.value.limit == "max_parallel_requests"
    assert refused.value.retry_after == 1.0  # a hint, for Retry-After
    # In memory a slot dies with its process: no word of replicas that stopped.
    assert "replica" not in str(refused.value)
    first.done(Usage(input_tokens=3, output_tokens=2))
    (await limits.admit("team", request())).done(None)


async def test_tpm_limit_reserves_the_estimate_and_settles_the_usage() -> None:
    limits = KeyLimits([key(tpm_limit=1000)], MemoryStateBackend(Clock()))
    first = await limits.admit("team", request(max_tokens=600))
    # About 600 tokens held: another 600 would pass the limit.
    with pytest.raises(KeyRateLimited) as refused:
        await limits.admit("team", request(max_tokens=600))
    assert refused.value.limit == "tpm_limit"
    first.done(Usage(input_tokens=5, output_tokens=5))  # it used 10
    await asyncio.sleep(0)  # the settle runs as a task
    (await limits.admit("team", request(max_tokens=600))).done(None)


@pytest.mark.redis
async def test_rpm_limit_is_shared_through_redis(
        redis_backends: Callable[..., Any]) -> None:
    replicas = [KeyLimits([key(rpm_limit=3)], redis_backends()) for _ in range(2)]
    for limits in (replicas[0], replicas[1], replicas[0]):
        (await limits.admit("team", request())).done(None)
    for limits in replicas:
        with pytest.raises(KeyRateLimited):
            await limits.admit("team", request())


async def test_a_request_cancelled_while_its_slot_is_taken_gives_the_slot_back() -> None:
    limits = KeyLimits([key(max_parallel_requests=1)], MemoryStateBackend())
    admitting = asyncio.ensure_future(limits.admit("team", request()))
    await asyncio.sleep(0)  # waiting for its slot (a Redis call, in production)
    admitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitting
    for _ in range(3):  # the slot is taken, then let go, each at a turn of the loop
        await asyncio.sleep(0)
    (await limits.admit("team", request())).done(None)
    assert limits.in_flight() == {"team": 0}


@pytest.mark.redis
async def test_max_parallel_requests_is_shared_through_redis(
        redis_backends: Callable[..., Any]) -> None:
    # Counted per process, a key capped at 2 could have 2 calls in flight on
    # every replica of a gateway; with Redis the cap is the cluster's.
    replicas = [KeyLimits([key(max_parallel_requests=2)], redis_backends()) for _ in range(2)]
    first = await replicas[0].admit("team", request())
    await replicas[1].admit("team", request())
    for limits in replicas:
        with pytest.raises(KeyRateLimited) as refused:
            await limits.admit("team", request())
        assert refused.value.limit == "max_parallel_requests"
        # A replica that died holding a slot keeps it for the lease: the client
        # is told, and given a Retry-After.
        assert refused.value.retry_after == 1.0
        assert "held by a gateway replica that stopped" in str(refused.value)
        assert "at most 30 seconds" in str(refused.value)
    first.done(None)
    await asyncio.sleep(0.05)  # the slot is given back as a task (a Redis call)
    await replicas[1].admit("team", request())


@pytest.mark.redis
async def test_a_slot_its_process_never_gave_back_is_freed_by_its_lease(
        redis_backends: Callable[..., Any]) -> None:
    clock = Clock()
    crashed, alive = redis_backends(time_source=clock), redis_backends(time_source=clock)
    assert (await crashed.hold("client-key:team", 1, 30.0)).store == "redis"
    assert await alive.hold("client-key:team", 1, 30.0) is None
    clock.t += 31  # the lease has ended: its holder is taken for dead
    slot = await alive.hold("client-key:team", 1, 30.0)
    assert slot is not None
    await alive.let_go(slot)
    assert await crashed.hold("client-key:team", 1, 30.0) is not None


async def test_with_redis_down_the_cap_is_counted_in_the_process() -> None:
    from interlock.dispatch.state.redis import RedisStateBackend

    # Nothing listens on port 9: each call fails at once, and memory takes over.
    backend = RedisStateBackend("redis://127.0.0.1:9/0", op_timeout=0.5)
    try:
        limits = KeyLimits([key(max_parallel_requests=1)], backend)
        first = await limits.admit("team", request())
        with pytest.raises(KeyRateLimited):
            await limits.admit("team", request())
        first.done(None)
        await asyncio.sleep(0)
        (await limits.admit("team", request())).done(None)
    finally:
        await backend.aclose()


async def _let_go_while_away(backend: Any) -> Callable[[], None]:
    """Hold one slot of "team" in Redis and let it go while LET_GO cannot reach
    Redis; returns what brings Redis back."""
    slot = await backend.hold("client-key:team", 1, 900.0)
    assert slot is not None and slot.store == "redis"
    real = backend._scripts["LET_GO"]

    async def away(**_: Any) -> None:
        raise ConnectionError("Redis went away")

    def come_back() -> None:
        backend._scripts["LET_GO"] = real

    backend._scripts["LET_GO"] = away
    await backend.let_go(slot)
    return come_back


@pytest.mark.redis
async def test_a_slot_given_back_while_redis_was_away_is_given_back_when_it_returns(
        redis_backends: Callable[..., Any]) -> None:
    # Left to its lease, every call in flight during a short outage would hold one
    # of its key's slots until its lease ended after Redis came back.
    backend = redis_backends(retry_interval=0.05)
    (await _let_go_while_away(backend))()
    await asyncio.sleep(0.1)  # past the retry interval: Redis is asked again
    again = await backend.hold("client-key:team", 1, 900.0)
    assert again is not None and again.store == "redis"


@pytest.mark.redis
async def test_a_slot_whose_give_back_fails_again_on_catching_up_stays_owed(
        redis_backends: Callable[..., Any]) -> None:
    # Redis answered once after the outage, then went away again while this
    # process caught up: the slot is owed still, and given back the next time.
    backend = redis_backends(retry_interval=0.05)
    come_back = await _let_go_while_away(backend)
    await asyncio.sleep(0.1)
    meanwhile = await backend.hold("client-key:team", 1, 900.0)  # catching up fails
    assert meanwhile is not None and meanwhile.store == "memory"
    await backend.let_go(meanwhile)
    come_back()
    await asyncio.sleep(0.1)
    again = await backend.hold("client-key:team", 1, 900.0)
    assert again is not None and again.store == "redis"
