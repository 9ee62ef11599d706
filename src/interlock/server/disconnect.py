"""A client that disconnects cancels its request's upstream call.

Imports: the standard library, `server.asgi_io`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from interlock.server.asgi_io import Receive

T = TypeVar("T")
# Seconds a request runs before a task starts watching for its client to leave.
WATCH_AFTER = 0.05


class Disconnected(Exception):
    """The client went away; its request was cancelled."""


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def race_disconnect(work: Awaitable[T], receive: Receive) -> T:
    """Run `work` in this task; if the client goes away first, cancel it and raise
    Disconnected.

    The watcher task starts only once the work has run for `WATCH_AFTER`
    seconds: a request that ends sooner (most of the gateway's own work) never
    pays for creating, starting and cancelling a task, two event-loop turns
    each; a client that leaves early has its upstream call cancelled at most
    that much later."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task(loop)  # given the loop: one getpid system call, not two
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await _until_disconnect(receive)
        gone = True
        if current is not None:
            current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise Disconnected() from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
