"""Shared state through Redis: two dispatchers (separate connections), a second
process, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tests.dispatch.fakes import Registry, ScriptedAdapter, dep, fail, request

from interlock.catalog import Catalog
from interlock.dispatch.clock import MonotonicClock
from interlock.dispatch.dispatcher import Dispatcher
from interlock.dispatch.settings import RouterSettings
from interlock.dispatch.state import FailureEvent, Limits
from interlock.dispatch.state.redis import RedisStateBackend
from interlock.errors import RateLimited

pytestmark = pytest.mark.redis


def dispatcher(state: Any, deployments: list, **settings: Any) -> tuple[Dispatcher,
                                                                        ScriptedAdapter]:
    clock = MonotonicClock()
    adapter = ScriptedAdapter(clock)
    return Dispatcher(Catalog.from_deployments(deployments), Registry(adapter),
                      RouterSettings(**settings), state=state, clock=clock,
                      rng=random.Random(1)), adapter


def pair() -> list:
    return [dep("a", order=1), dep("b", order=2)]


async def test_cooldown_opened_by_one_is_honoured_by_the_other_within_100ms(
        redis_backends) -> None:
    one, adapter_one = dispatcher(redis_backends(), pair(), num_retries=1)
    two, _ = dispatcher(redis_backends(), pair(), num_retries=1)
    # Both have read "a" as healthy (and cached that).
    assert (await one.complete(request(), "g")).deployment.name == "a"
    assert (await two.complete(request(), "g")).deployment.name == "a"
    adapter_one.script("a", fail(RateLimited, 429, retry_after=30))
    # What is timed is the sharing, not this test process: a full garbage
    # collection of the suite's objects (about 280k of them) takes ~140 ms here
    # and once landed inside this window (a 190 ms failure in a full CI run).
    gc.disable()
    try:
        result = await one.complete(request(), "g")
        opened_at = time.monotonic()
        assert result.deployment.name == "b"
        served = "a"
        while served == "a":
            served = (await two.complete(request(), "g")).deployment.name
            assert time.monotonic() - opened_at < 0.5
        assert time.monotonic() - opened_at <= 0.1
    finally:
        gc.enable()
    assert served == "b"
    rows = {r.deployment: r for r in two.health()}
    assert rows["a"].state == "cooling" and rows["a"].reason == "RateLimited"


async def test_rpm_limit_holds_across_two_dispatchers_under_concurrency(redis_backends) -> None:
    deployments = [dep("limited", order=1, rpm=40), dep("spare", order=2)]
    one, _ = dispatcher(redis_backends(), deployments)
    two, _ = dispatcher(redis_backends(), deployments)

    async def burst(d: Dispatcher) -> list[str]:
        results = await asyncio.gather(*[d.complete(request(), "g") for _ in range(60)])
        return [r.deployment.name for r in results]

    first, second = await asyncio.gather(burst(one), burst(two))
    names = first + second
    assert len(names) == 120
    assert names.count("limited") == 40


async def test_tpm_reservation_and_settlement_are_shared(redis_backends) -> None:
    b1, b2 = redis_backends(), redis_backends()
    limits = Limits(tpm=1000)
    first = await b1.admit("t", limits, 600, 10)
    assert first.admitted and first.bucket is not None
    assert not (await b2.admit("t", limits, 600, 10)).admitted
    await b1.settle(first, 100)  # the call used far less than reserved
    assert (await b2.admit("t", limits, 600, 10)).admitted


async def test_a_released_rpm_admission_is_free_again_in_redis(redis_backends,
                                                               caplog) -> None:
    # An attempt a gate refused gives its count back. It reserved no tokens, and
    # giving back zero tokens must not fail the script (which counted as an outage).
    backend = redis_backends()
    first = await backend.admit("r", Limits(rpm=1), 0, 10)
    assert first.admitted and first.store == "redis"
    with caplog.at_level(logging.WARNING, logger="interlock.dispatch.state"):
        await backend.release(first)
        again = await backend.admit("r", Limits(rpm=1), 0, 10)
    assert again.admitted and again.store == "redis"
    assert "unreachable" not in caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_redis_falls_back_to_memory_with_one_warning(caplog) -> None:
    state = RedisStateBackend(f"redis://127.0.0.1:{_closed_port()}/0", prefix="unreachable",
                              retry_interval=0.05)
    d, adapter = dispatcher(state, pair(), num_retries=1, cooldown_time=30)
    adapter.script("a", fail(RateLimited, 429, retry_after=30))
    with caplog.at_level(logging.WARNING, logger="interlock.dispatch.state"):
        results = []
        for _ in range(30):
            results.append(await d.complete(request(), "g"))
            await asyncio.sleep(0.01)  # several retry intervals pass: Redis is tried again
    assert all(r.response.content for r in results)
    # The cooldown still works, in this process's memory.
    assert [r.deployment.name for r in results[1:]] == ["b"] * 29
    warnings = [r for r in caplog.records if r.name == "interlock.dispatch.state"
                and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "memory" in warnings[0].getMessage()
    await d.aclose()


class _Proxy:
    """A TCP proxy to Redis that a test can stop and start again, or make lose
    the answer to one command that Redis ran."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = _closed_port()
        self.server: asyncio.base_events.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        # The next command holding these bytes reaches Redis, and its connection
        # is cut when the answer comes back, before the client reads it.
        self.lose_answer_to: bytes | None = None
        self.answers_lost = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        losing = False

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       upward: bool) -> None:
            nonlocal losing
            try:
                while data := await src.read(65536):
                    if upward and self.lose_answer_to and self.lose_answer_to in data:
                        self.lose_answer_to, losing = None, True
                    elif not upward and losing:
                        self.answers_lost += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


async def test_redis_outage_and_reconnection(redis_backends, caplog) -> None:
    proxy = _Proxy(6379)
    await proxy.start()
    prefix = f"outage-{os.getpid()}-{random.randrange(10**9)}"
    via_proxy = RedisStateBackend(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix,
                                  retry_interval=0.1, cache_ttl=0.0)
    direct = redis_backends(prefix=prefix, cache_ttl=0.0)
    d, adapter = dispatcher(via_proxy, pair(), num_retries=1)
    assert (await d.complete(request(), "g")).deployment.name == "a"
    assert via_proxy.using_redis

    await proxy.stop()
    with caplog.at_level(logging.INFO, logger="interlock.dispatch.state"):
        for _ in range(5):
            assert (await d.complete(request(), "g")).response.content
        assert not via_proxy.using_redis

        await proxy.start()
        await asyncio.sleep(0.15)
        adapter.script("a", fail(RateLimited, 429, retry_after=30))
        await d.complete(request(), "g")
    # The cooldown went to Redis again: another backend sees it.
    assert via_proxy.using_redis
    assert (await direct.refresh("a")).state == "open"
    messages = [r.getMessage() for r in caplog.records if r.name == "interlock.dispatch.state"]
    assert sum("unreachable" in m for m in messages) == 1
    assert any("reachable again" in m for m in messages)
    await via_proxy.aclose()
    await proxy.stop()


CHILD = textwrap.dedent("""
    import asyncio, random, sys
    from interlock.catalog import Catalog, Deployment
    from interlock.dispatch.clock import MonotonicClock
    from interlock.dispatch.dispatcher import Dispatcher
    from interlock.dispatch.settings import RouterSettings
    from interlock.errors import RateLimited
    from interlock.types import ChatRequest, ChatResponse, Message, TextPart

    url, prefix, go_at = sys.argv[1], sys.argv[2], float(sys.argv[3])

    class Adapter:
        async def complete(self, request, d, timeouts):
            if d.name == "flaky":
                raise RateLimited("slow down", status=429, retry_after=30)
            return ChatResponse(id="x", model=d.model, content="ok")

    class Registry:
        def for_provider(self, provider):
            return Adapter()

    async def main():
        deps = [Deployment("limited", "g", "fake", "m", order=1, rpm=40),
                Deployment("spare", "g", "fake", "m", order=2),
                Deployment("flaky", "other", "fake", "m")]
        settings = RouterSettings(redis_url=url, redis_prefix=prefix, num_retries=0,
                                  redis_timeout=5.0)
        d = Dispatcher(Catalog.from_deployments(deps), Registry(), settings,
                       clock=MonotonicClock(), rng=random.Random(2))
        request = ChatRequest(model="g", messages=[Message("user", [TextPart("hi")])])
        try:
            await d.complete(request, "other")
        except RateLimited:
            pass
        clock = MonotonicClock()
        while clock.now() < go_at:
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*[d.complete(request, "g") for _ in range(60)])
        print(sum(r.deployment.name == "limited" for r in results))
        await d.aclose()

    asyncio.run(main())
""")


@pytest.mark.slow
async def test_a_second_process_shares_cooldowns_and_rpm(redis_url, redis_backends) -> None:
    prefix = f"xproc-{os.getpid()}-{random.randrange(10**9)}"
    deployments = [dep("limited", order=1, rpm=40), dep("spare", order=2),
                   dep("flaky", group="other")]
    # The child gives Redis as long as the fixture's backends do (see conftest).
    here, _ = dispatcher(redis_backends(prefix=prefix), deployments)
    await here.complete(request(), "other")  # connects and loads the scripts
    go_at = time.monotonic() + 1.5  # both processes start their burst together
    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ, PYTHONPATH=str(src))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, redis_url, prefix, str(go_at), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while time.monotonic() < go_at:
        await asyncio.sleep(0.001)
    mine = await asyncio.gather(*[here.complete(request(), "g") for _ in range(60)])
    out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, err.decode()[-2000:]
    theirs = int(out.decode().strip())
    ours = sum(r.deployment.name == "limited" for r in mine)
    assert ours + theirs == 40
    # The child's 429 (Retry-After 30) cooled "flaky" for this process too.
    state = here.state
    assert isinstance(state, RedisStateBackend)
    view = await state.refresh("flaky")
    assert view.state == "open" and view.remaining > 20


async def test_a_tpm_settle_made_while_redis_was_away_reaches_it_once_back(
        redis_backends) -> None:
    # The reservation was taken in Redis; its settle came while this process had
    # given Redis up: sent when Redis answers, the unused tokens are free again
    # (else they counted as used for the rest of the minute, on every replica).
    b1, b2 = redis_backends(), redis_backends()
    limits = Limits(tpm=1000)
    first = await b1.admit("owed", limits, 600, 10)
    assert first.admitted and first.store == "redis"
    b1._down_until = time.monotonic() + 60  # another call saw Redis fail
    await b1.settle(first, 100)
    assert not (await b2.admit("owed", limits, 600, 10)).admitted  # not told yet
    b1._down_until = 0.0  # past the retry interval
    assert (await b1.admit("other", Limits(rpm=100), 0, 10)).admitted  # catches up
    assert (await b2.admit("owed", limits, 600, 10)).admitted


async def test_a_stale_pooled_connection_after_redis_returned_is_no_new_outage(
        caplog) -> None:
    # Redis restarted while the process was idle: the pooled connection is dead,
    # but Redis answers. The first call must reconnect, not declare an outage.
    proxy = _Proxy(6379)
    await proxy.start()
    prefix = f"stale-{os.getpid()}-{random.randrange(10**9)}"
    backend = RedisStateBackend(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix,
                                retry_interval=30.0, cache_ttl=0.0)
    try:
        assert (await backend.refresh("a")).state == "closed"
        await proxy.stop()
        await proxy.start()  # back, with the old connection closed under the pool
        with caplog.at_level(logging.WARNING, logger="interlock.dispatch.state"):
            assert (await backend.admit("a", Limits(rpm=10), 0, 10)).store == "redis"
        assert backend.using_redis
        assert "unreachable" not in caplog.text
    finally:
        await backend.clear()
        await backend.aclose()
        await proxy.stop()


@pytest.fixture
async def lossy() -> Any:
    """A backend whose connections go through a `_Proxy`, and a direct client
    to read what Redis holds."""
    import redis.asyncio as aredis

    proxy = _Proxy(6379)
    await proxy.start()
    prefix = f"lossy-{os.getpid()}-{random.randrange(10**9)}"
    backend = RedisStateBackend(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix,
                                op_timeout=5.0, cache_ttl=0.0)
    raw = aredis.Redis(decode_responses=True)
    yield proxy, backend, raw, f"{{{prefix}:d}}"
    await backend.clear()
    await backend.aclose()
    await raw.aclose()
    await proxy.stop()


async def _sum(raw: Any, key: str) -> int:
    return sum(int(v) for v in await raw.hvals(key))


# Each case: a call made once to load its script, then the same call again whose
# answer the proxy loses after Redis ran it; redis-py sends it again. Each
# returns what Redis counted, which the second call must have moved only once.
async def _admit_twice(proxy: Any, backend: RedisStateBackend, raw: Any, tag: str) -> int:
    assert (await backend.admit("d", Limits(rpm=10), 0, 10)).admitted
    proxy.lose_answer_to = b"EVALSHA"
    assert (await backend.admit("d", Limits(rpm=10), 0, 10)).admitted
    return await _sum(raw, tag + ":rq")  # two requests


async def _release_twice(proxy: Any, backend: RedisStateBackend, raw: Any, tag: str) -> int:
    one, two = [await backend.admit("d", Limits(rpm=10), 100, 10) for _ in range(2)]
    await backend.release(one)
    proxy.lose_answer_to = b"EVALSHA"
    await backend.release(two)
    return await _sum(raw, tag + ":rq")  # none left


async def _settle_twice(proxy: Any, backend: RedisStateBackend, raw: Any, tag: str) -> int:
    one, two = [await backend.admit("d", Limits(tpm=1000), 100, 10) for _ in range(2)]
    await backend.settle(one, 50)
    proxy.lose_answer_to = b"EVALSHA"
    await backend.settle(two, 50)
    return await _sum(raw, tag + ":tk")  # 50 + 50


async def _fail_twice(proxy: Any, backend: RedisStateBackend, raw: Any, tag: str) -> int:
    event = FailureEvent("Timeout", cooldown=5, allowed_fails=5, window=60)
    await backend.record_failure("d", event)
    proxy.lose_answer_to = b"EVALSHA"
    view = await backend.record_failure("d", event)
    assert view.failures == 2
    return int(await raw.hget(tag + ":br", "failures"))  # two failures


async def _hold_twice(proxy: Any, backend: RedisStateBackend, raw: Any, tag: str) -> int:
    first = await backend.hold("d", 1, 30)
    assert first is not None
    await backend.let_go(first)
    proxy.lose_answer_to = b"EVALSHA"
    # Sent again, the call must find its own slot, not a full set refusing it.
    assert await backend.hold("d", 1, 30) is not None
    return int(await raw.zcard(tag + ":sl"))  # one slot


@pytest.mark.parametrize(("call", "counted"), [
    (_admit_twice, 2), (_release_twice, 0), (_settle_twice, 100), (_fail_twice, 2),
    (_hold_twice, 1)])
async def test_a_call_sent_again_after_its_answer_was_lost_counts_once(
        lossy, call, counted) -> None:
    proxy, backend, raw, tag = lossy
    assert await call(proxy, backend, raw, tag) == counted
    assert proxy.answers_lost == 1
    assert backend.using_redis  # the lost answer was no outage either


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from interlock.dispatch.state.redis import RedisStateBackend

    async def main():
        backend = RedisStateBackend(sys.argv[1], prefix=sys.argv[2], op_timeout=5.0)
        slot = await backend.hold("client-key:team", 1, float(sys.argv[3]))
        print("held" if slot is not None and slot.store == "redis" else "refused", flush=True)
        await asyncio.sleep(3600)  # a call that runs until the process is killed

    asyncio.run(main())
""")


@pytest.mark.slow
async def test_a_live_holder_keeps_its_slot_and_a_killed_ones_returns_after_the_lease(
        redis_url, redis_backends) -> None:
    lease = 1.0
    prefix = f"lease-{os.getpid()}-{random.randrange(10**9)}"
    other = redis_backends(prefix=prefix)
    src = Path(__file__).resolve().parents[2] / "src"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, redis_url, prefix, str(lease),
        env=dict(os.environ, PYTHONPATH=str(src)), stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        assert line.decode().strip() == "held"
        # Three leases long, the call keeps its slot: its process renews the lease.
        for _ in range(15):
            assert await other.hold("client-key:team", 1, lease) is None
            await asyncio.sleep(lease / 5)
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        killed_at = time.monotonic()
        assert await other.hold("client-key:team", 1, lease) is None  # leased still
        while (slot := await other.hold("client-key:team", 1, lease)) is None:
            assert time.monotonic() - killed_at < lease + 0.5
            await asyncio.sleep(0.05)
        await other.let_go(slot)
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def _two_replicas_one_holding(redis_backends: Any, name: str
                                    ) -> tuple[list[float], str, Any, Any]:
    """(their clock, to move by hand; the prefix; a replica holding client key
    'team''s one slot on a 0.3 s lease; another replica)."""
    now = [time.time()]
    prefix = f"{name}-{os.getpid()}-{random.randrange(10**9)}"
    holder, other = (redis_backends(prefix=prefix, time_source=lambda: now[0])
                     for _ in range(2))
    assert await holder.hold("client-key:team", 1, 0.3) is not None
    return now, prefix, holder, other


async def test_renewing_never_brings_back_a_slot_counted_as_free(
        redis_url, redis_backends) -> None:
    # The holder's lease ended unrenewed (its clock here jumps past it, as when
    # Redis was away longer than the lease), and another replica took the slot:
    # the holder's next renewals must not make it two calls at once.
    import redis.asyncio as aredis

    now, prefix, _holder, other = await _two_replicas_one_holding(redis_backends, "renew")
    now[0] += 1
    taken = await other.hold("client-key:team", 1, 0.3)
    assert taken is not None
    await asyncio.sleep(0.25)  # the holder renews every 0.1 s
    raw = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        held = await raw.zrange(f"{{{prefix}:client-key:team}}:sl", 0, -1)
    finally:
        await raw.aclose()
    assert held == [taken.token]


async def test_a_slot_never_given_back_stops_being_renewed_after_max_hold(
        redis_url, redis_backends) -> None:
    # A call whose ticket was dropped never lets its slot go; renewal kept it for
    # the process's life. Past MAX_HOLD its lease is left to end.
    from interlock.dispatch.state.redis import MAX_HOLD

    now, _, _, other = await _two_replicas_one_holding(redis_backends, "maxhold")
    await asyncio.sleep(0.25)  # renewed every 0.1 s meanwhile
    assert await other.hold("client-key:team", 1, 0.3) is None
    now[0] += MAX_HOLD + 1
    await asyncio.sleep(0.25)  # the holder's renewer lets it go unrenewed
    now[0] += 1  # past its last lease
    assert await other.hold("client-key:team", 1, 0.3) is not None


async def test_a_renewer_that_ended_is_started_again_by_the_next_hold(
        redis_url, redis_backends) -> None:
    prefix = f"restart-{os.getpid()}-{random.randrange(10**9)}"
    holder = redis_backends(prefix=prefix)
    assert await holder.hold("client-key:a", 2, 0.3) is not None
    holder._renewer.cancel()  # ended as by an error it did not expect
    await asyncio.sleep(0)
    assert await holder.hold("client-key:a", 2, 0.3) is not None
    assert holder._renewer is not None and not holder._renewer.done()
