"""The drain's bookkeeping of requests in flight, apart from a running server."""

from __future__ import annotations

import asyncio

import pytest

from interlock.errors import GatewayShuttingDown
from interlock.server.drain import Drain


async def test_no_task_to_track_is_not_read_as_shutdown() -> None:
    # `enter` answered None both when the cut had begun and when there was no task
    # to track (a call from a loop callback): a caller could refuse a request with
    # "shutting down" though the gateway was not.
    drain = Drain()
    entered: list[asyncio.Task[object] | None] = []
    done = asyncio.Event()

    def outside_any_task() -> None:
        entered.append(drain.enter())
        done.set()

    asyncio.get_running_loop().call_soon(outside_any_task)
    await done.wait()
    assert entered == [None]  # nothing to track, and no refusal
    task = drain.enter()
    assert task is asyncio.current_task()
    drain.leave(task)
    drain.cut()
    with pytest.raises(GatewayShuttingDown):  # the cut is told apart from "no task"
        drain.enter()
