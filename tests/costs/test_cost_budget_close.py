"""Budgets: what a gate's `aclose` leaves behind (nothing), and what a call that
ends after it does (no new Redis client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from tests.costs.test_cost_budgets import (
    PER_TOKEN,
    QA_CALL,
    Clock,
    _away,
    _back,
    _book,
    _deployment,
    _ended,
    _Ledger,
    _owed_settles_sent,
    _qa_replicas,
    _refused,
    _request,
    _response,
    _shared,
)
from tests.dispatch.test_redis_state import _Proxy

import interlock.costs.budget_record as budget_record
import interlock.costs.budgets as budgets
from interlock.costs.budgets import BudgetGate
from interlock.costs.settings import Budget
from interlock.errors import GatewayShuttingDown


class _Silent:
    """A TCP server that takes connections and reads what it is sent, but never
    answers: a Redis stalled for good. Tells when a command came."""

    def __init__(self) -> None:
        self.heard = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> _Silent:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                self.heard.set()
        writer.close()


async def _wiped(redis_url: str, gate: BudgetGate) -> None:
    """The gate's keys deleted from Redis, and the gate closed."""
    import redis.asyncio as aioredis

    direct = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in direct.scan_iter(match=gate.key_prefix + "*")]
    if keys:
        await direct.delete(*keys)
    await direct.aclose()
    await gate.aclose()


def _gate(url: str, clock: Clock, **kwargs: Any) -> BudgetGate:
    return BudgetGate([Budget(deployment="d1", max_usd=Decimal(5))], _book(_deployment()),
                      redis_url=url, key_prefix=f"interlock-test:{uuid.uuid4().hex}:",
                      clock=clock, retry_interval=2.0, **kwargs)


async def test_aclose_gives_up_a_settle_stuck_on_a_redis_that_never_answers(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Review: aclose waited for the background settles, then left them running
    # (each until its own timeout, here a minute) with nothing to await them.
    monkeypatch.setattr(budgets, "CLOSE_WAIT", 0.05)
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    async with _Silent() as redis:
        gate = _gate(f"redis://:hunter2-secret@127.0.0.1:{redis.port}/0", clock,
                     redis_timeout=60.0)
        gate._redis_failed(ConnectionError("Redis away"))  # counted in memory
        ticket = await gate.acquire(_deployment(), _request(100))
        assert not _refused(ticket) and not ticket.on_redis
        clock.t += 3.0  # Redis is tried again: the call's cost is sent there, and stalls
        release = asyncio.ensure_future(ticket.release(_response(30)))
        await redis.heard.wait()
        stuck = set(gate._background)
        assert stuck and not release.done()
        with caplog.at_level(logging.WARNING, logger="interlock.costs.budgets"):
            # The guard only keeps a hang from stalling the suite.
            await asyncio.wait_for(gate.aclose(), 30)
        assert all(task.cancelled() for task in stuck)
        assert not gate._background
        await asyncio.wait_for(release, 30)  # the call's end comes back, no error
        given_up = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
        assert len(given_up) == 1 and "1 settle" in given_up[0]
        assert "hunter2" not in caplog.text
        assert Decimal(gate.status()[0]["spent_usd"]) == 30 * PER_TOKEN


class _Counting(_Proxy):
    """A proxy to the local Redis that counts the connections made through it."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.accepted = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await super()._handle(reader, writer)


@pytest.mark.parametrize("reserved_in_redis", [True, False], ids=["settle", "spend"])
async def test_a_call_ending_after_aclose_opens_no_redis_connection(
        redis_url: str, reserved_in_redis: bool, caplog: pytest.LogCaptureFixture) -> None:
    # Review: a release after aclose made a new Redis client (and might start
    # a seeding) that nothing would ever close.
    import redis.asyncio as aioredis

    proxy = _Counting(6379)
    await proxy.start()
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    gate = _gate(f"redis://127.0.0.1:{proxy.port}/0", clock)
    direct = aioredis.Redis.from_url(redis_url)
    try:
        if not reserved_in_redis:
            await gate._use_redis()
            gate._redis_failed(ConnectionError("Redis away"))
        ticket = await gate.acquire(_deployment(), _request(100))
        assert not _refused(ticket) and ticket.on_redis == reserved_in_redis
        clock.t += 3.0  # a spend would go to Redis now, were the gate open
        await gate.aclose()
        opened = proxy.accepted
        with caplog.at_level(logging.WARNING, logger="interlock.costs.budgets"):
            await ticket.release(_response(30))
            assert proxy.accepted == opened
            await ticket.release(_response(30))  # a second release changes nothing
            assert proxy.accepted == opened
        assert gate._redis is None and not gate._background
        after = [r.getMessage() for r in caplog.records if "closed" in r.getMessage()]
        assert len(after) == 1  # told once, however many calls end after it
        # Counted in this process' memory, as during an outage.
        assert Decimal(gate.status()[0]["spent_usd"]) == 30 * PER_TOKEN
    finally:
        keys = [k async for k in direct.scan_iter(match=gate.key_prefix + "*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()
        await gate.aclose()
        await proxy.stop()


async def _closed_refusal(acquiring: Awaitable[object]) -> bool:
    """The call is stopped as the gateway's shutdown is (a 503 the client
    retries elsewhere), not refused as by a spent budget (a 429 it would not)."""
    with pytest.raises(GatewayShuttingDown) as raised:
        await acquiring
    return "shutting down" in raised.value.message


@pytest.mark.parametrize("sender", ["under way", "idle"])
async def test_aclose_sends_what_is_owed_to_a_redis_that_answers(
        redis_url: str, sender: str) -> None:
    # Review: closing stopped the sender of the settles owed from an outage at
    # once (the gate counted as closed), so a shutdown just after Redis came
    # back gave up the outage's spend; and a replica idle since Redis came
    # back sent none of it (no call started the sender).
    async with _qa_replicas(redis_url) as ([gate], direct, clock, ledger):
        await _ended(await gate.acquire(_deployment(), _request(101)), ledger)
        _away(gate, clock)
        for _ in range(5):  # counted in memory: their cost is owed to Redis
            ticket = await gate.acquire(_deployment(), _request(101))
            assert not _refused(ticket) and not ticket.on_redis
            await _ended(ticket, ledger)
        _back(clock)
        if sender == "under way":
            gate._send_owed()  # as the next call would
        await gate.aclose()
        assert await _shared(direct, gate) == (ledger.spent, 0)


async def test_a_call_waiting_for_a_seeding_as_the_gate_closes_opens_no_connection(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: a call waiting for the seeding of Redis from the ledger sent its
    # reservation once the close ended the seeding, reopening a connection
    # nothing closed (and could start a seeding again).
    monkeypatch.setattr(budget_record, "SEED_WAIT", 30.0)
    proxy = _Counting(6379)
    await proxy.start()
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    ledger = _Ledger(clock)
    ledger.landed = asyncio.Event()  # the ledger's read hangs
    gate = _gate(f"redis://127.0.0.1:{proxy.port}/0", clock, record=ledger.record)
    try:
        first = asyncio.ensure_future(gate.acquire(_deployment(), _request(100)))
        while gate._seeding_under_way() is None:  # Redis lacks the count: seeded first
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(gate.acquire(_deployment(), _request(100)))
        await asyncio.sleep(0.05)
        await gate.aclose()
        opened = proxy.accepted
        # Refused: the count is Redis's, and one in memory would begin from nothing.
        assert await _closed_refusal(first) and await _closed_refusal(second)
        await asyncio.sleep(0.1)  # a connection would be opened by now
        assert proxy.accepted == opened
        assert gate._redis is None and not gate._background
    finally:
        await _wiped(redis_url, gate)
        await proxy.stop()


async def test_a_closed_gate_refuses_a_call_on_a_spent_shared_budget(redis_url: str) -> None:
    # Review: once closed the gate counted in memory from zero, and admitted
    # calls on a budget Redis knew was spent.
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    gate = BudgetGate([Budget(deployment="d1", max_usd=Decimal("0.2"))], _book(_deployment()),
                      redis_url=redis_url, key_prefix=f"interlock-test:{uuid.uuid4().hex}:",
                      clock=clock)
    try:
        for _ in range(2):
            ticket = await gate.acquire(_deployment(), _request(100))
            assert not _refused(ticket)
            await ticket.release(_response(100))
        assert _refused(await gate.acquire(_deployment(), _request(100)))
        await gate.aclose()
        assert await _closed_refusal(gate.acquire(_deployment(), _request(100)))
        await gate.start()  # opened again: Redis's count, which refuses as a spent budget
        again = await gate.acquire(_deployment(), _request(100))
        assert _refused(again)
    finally:
        await _wiped(redis_url, gate)


async def test_aclose_cancelled_by_its_caller_still_closes_what_it_opened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: cancelled while it waited for the settles, aclose left them
    # running and the Redis client open.
    monkeypatch.setattr(budgets, "CLOSE_WAIT", 30.0)
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    async with _Silent() as redis:
        gate = _gate(f"redis://127.0.0.1:{redis.port}/0", clock, redis_timeout=60.0)
        gate._redis_failed(ConnectionError("Redis away"))
        ticket = await gate.acquire(_deployment(), _request(100))
        clock.t += 3.0  # the call's cost is sent to Redis, and stalls
        release = asyncio.ensure_future(ticket.release(_response(30)))
        await redis.heard.wait()
        stuck = set(gate._background)
        closing = asyncio.ensure_future(gate.aclose())
        await asyncio.sleep(0.05)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        await asyncio.wait_for(release, 30)  # the call's end comes back, no error
        assert stuck and all(task.cancelled() for task in stuck)
        assert gate._redis is None and not gate._background


async def test_a_settle_ending_during_aclose_leaves_no_stale_seeding_claim(
        redis_url: str) -> None:
    # Review: a call's cost sent as the gate closed found Redis without its
    # seeding mark and asked for a seeding, which the close skipped but whose
    # claim stayed: reopened, the gate seeded Redis with the ledger's record
    # only up to the close, missing the rows written since.
    async with _qa_replicas(redis_url) as ([gate], direct, clock, ledger):
        await gate._use_redis()
        gate._redis_failed(ConnectionError("Redis away"))
        ticket = await gate.acquire(_deployment(), _request(101))
        assert not ticket.on_redis and ticket.marks  # Redis has never been seeded
        clock.t += 3.0  # Redis answers again
        ledger.write(QA_CALL)
        release = asyncio.ensure_future(ticket.release(_response(101)))
        await asyncio.sleep(0)  # its cost is on its way to Redis
        closing = asyncio.ensure_future(gate.aclose())
        await release
        await closing
        clock.t += 60.0
        ledger.write(QA_CALL)  # another replica's call, after the close
        clock.t += 1.0
        await gate.start()
        await _ended(await gate.acquire(_deployment(), _request(101)), ledger)
        await _owed_settles_sent(gate)
        assert (await _shared(direct, gate))[0] == ledger.spent


@pytest.mark.parametrize("caller", ["waits", "left"])
async def test_a_reservation_cut_by_aclose_is_counted_as_given_up(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, caller: str) -> None:
    # Review: a reservation aclose cancelled was missing from the settles it
    # said it gave up, though Redis may hold it; and one whose caller had left
    # was told as "a call ended after the budget gate closed".
    monkeypatch.setattr(budgets, "CLOSE_WAIT", 0.05)
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    async with _Silent() as redis:
        gate = _gate(f"redis://127.0.0.1:{redis.port}/0", clock, redis_timeout=60.0)
        acquiring = asyncio.ensure_future(gate.acquire(_deployment(), _request(100)))
        await redis.heard.wait()  # the reservation is on its way, and stalls
        if caller == "left":
            acquiring.cancel()
            with pytest.raises(asyncio.CancelledError):
                await acquiring
        with caplog.at_level(logging.WARNING, logger="interlock.costs.budgets"):
            await asyncio.wait_for(gate.aclose(), 30)
            closed = caller == "left" or await _closed_refusal(acquiring)
        given_up = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
        assert len(given_up) == 1 and "1 settle" in given_up[0]
        assert "after the budget gate closed" not in caplog.text
        assert not gate._background
        assert closed  # not counted from nothing


async def test_a_gate_closing_before_its_first_call_refuses_it(redis_url: str) -> None:
    # A gate that never reached Redis makes no client while it closes: the
    # call was counted in memory from nothing, whatever Redis had spent.
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    gate = _gate(redis_url, clock)
    settling = asyncio.Event()
    gate._survive(settling.wait())  # a settle under way: the close waits for it
    closing = asyncio.ensure_future(gate.aclose())
    try:
        await asyncio.sleep(0)
        assert gate._redis is None and not closing.done()
        assert await _closed_refusal(gate.acquire(_deployment(), _request(100)))
    finally:
        settling.set()
        await closing
        await _wiped(redis_url, gate)


async def test_a_key_budget_set_while_closed_begins_from_the_ledger_at_start() -> None:
    # Review: the gateway hands its keys' budgets over before it starts the
    # gate again; one that appeared while the gate was closed was not read
    # from the ledger then, nor at the start, and began from nothing.
    clock = Clock(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    spent = {"k1": 0}

    async def record(periods: Any, until: datetime) -> list[Any]:
        return [(b, pid, {b.target[1]: spent[b.target[1]]}) for b, pid, _ in periods]

    gate = BudgetGate([], _book(_deployment()), clock=clock, record=record)
    await gate.start()
    await gate.aclose()
    spent["k1"] = 1_000_000_000  # another replica spent k1's $1 meanwhile
    gate.set_key_budgets([Budget(api_key="k1", max_usd=Decimal(1), period="day")])
    await gate.start()
    request = _request(100)
    request.api_key_id = "k1"
    assert _refused(await gate.acquire(_deployment(), request))
    await gate.aclose()


async def _room(gate: BudgetGate) -> int:
    """How many of the QA's calls `gate` admits at once; none of them is made
    (each gives its reservation back, costing nothing)."""
    held = []
    while not _refused(ticket := await gate.acquire(_deployment(), _request(101))):
        held.append(ticket)
        assert len(held) <= 10  # the budget's limit admits no more
    for ticket in held:
        await ticket.release(None)
    return len(held)


async def test_settles_given_up_at_close_hold_nothing_once_reopened(redis_url: str) -> None:
    # Review: the close gave up the settles owed from an outage but kept their
    # amounts as owed in the counts, which the reopened gate held against
    # Redis's limits for good: it admitted fewer calls than the budget had room for.
    async with _qa_replicas(redis_url, ledger=False, replicas=2) as (
            [gate, other], _direct, clock, ledger):
        await _ended(await gate.acquire(_deployment(), _request(101)), ledger)
        _away(gate, clock)
        for _ in range(4):  # counted in memory: their cost is owed to Redis
            ticket = await gate.acquire(_deployment(), _request(101))
            assert not _refused(ticket)
            await _ended(ticket, ledger)
        await gate.aclose()  # Redis still away for this gate: all four given up
        await gate.start()
        _back(clock)
        # Redis's count lacks the four: the reopened gate sees the room any replica does.
        assert await _room(gate) == await _room(other) > 0
