"""Budgets: what a gate's `aclose` leaves behind (nothing), and what a call that
ends after it does (no new Redis client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from tests.costs.test_cost_budgets import (
    PER_TOKEN,
    Clock,
    _book,
    _deployment,
    _refused,
    _request,
    _response,
)
from tests.dispatch.test_redis_state import _Proxy

import interlock.costs.budgets as budgets
from interlock.costs.budgets import BudgetGate
from interlock.costs.settings import Budget


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
            later = await gate.acquire(_deployment(), _request(100))  # counted in memory
            assert not _refused(later) and not later.on_redis
            await later.release(_response(10))
        assert proxy.accepted == opened
        assert gate._redis is None and not gate._background
        after = [r.getMessage() for r in caplog.records if "closed" in r.getMessage()]
        assert len(after) == 1  # told once, however many calls end after it
        # Counted in this process' memory, as during an outage.
        assert Decimal(gate.status()[0]["spent_usd"]) == 40 * PER_TOKEN
    finally:
        keys = [k async for k in direct.scan_iter(match=gate.key_prefix + "*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()
        await gate.aclose()
        await proxy.stop()
