"""Shutdown with a deadline: requests still running end cleanly, not cut.

uvicorn gives in-flight requests `timeout_graceful_shutdown` seconds and then
cancels their tasks. A stream cancelled that way stops mid-body (no error
event, no `[DONE]`, a chunked body never terminated) and uvicorn logs a
traceback. So the app's `Drain` is told when shutdown begins (by the
connections' protocol, `server.connection_limits`, in every worker), and a
little before uvicorn's deadline the drain cancels the requests it
tracks with `request_record.SHUTTING_DOWN`: their handlers take the cancellation
back and answer as docs/reliability.md promises (a 503, or a stream's error
event and `[DONE]`), and their ledger rows say `GatewayShuttingDown`.

Imports: the standard library, `errors`, `request_record`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from interlock.errors import GatewayShuttingDown
from interlock.request_record import SHUTTING_DOWN

log = logging.getLogger("interlock.server")

# Seconds before uvicorn's deadline that open requests are told to finish: time
# for an error event, [DONE] and the connection's close to go out (uvicorn also
# waits 0.1 s before its deadline starts). A short drain keeps a fifth of it.
MARGIN = 0.5


def cut_after(graceful: float) -> float:
    """When, after shutdown begins, the drain cuts what still runs."""
    return max(0.0, graceful - min(MARGIN, graceful * 0.2))


class Drain:
    """The requests in flight that shutdown may have to cut, and whether it has."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cutting = False
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> asyncio.Task[Any] | None:
        """Track the current request: its task, for `leave` and `claim` (None when
        it runs in no task, so there is nothing to cut). Once the cut has begun it
        raises GatewayShuttingDown instead (answer it, a 503): a return value for
        that too would read the same as "no task"."""
        if self.cutting:
            raise GatewayShuttingDown()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._tasks.discard(task)

    def begin(self, graceful: float | None) -> None:
        """Shutdown has begun; uvicorn cancels what runs after `graceful` seconds
        (None: it waits for ever, and so does the drain)."""
        if graceful is None or self._timer is not None:
            return
        self._timer = asyncio.get_running_loop().call_later(cut_after(graceful), self.cut)

    def cut(self) -> None:
        self.cutting = True
        if self._tasks:
            log.warning("shutdown: the drain time ran out; ending %d request(s) in flight "
                        "with a 'shutting down' error", len(self._tasks))
        for task in self._tasks:
            task.cancel(SHUTTING_DOWN)

    def claim(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether the cancellation arriving in `task` is this drain's cut; if so
        it is taken back, so that the handler can still send its answer."""
        if not self.cutting or task is None or task.cancelling() == 0:
            return False
        task.uncancel()
        return True


def find_drain(app: Any) -> Drain | None:
    """The Drain of the Interlock app inside `app`'s middleware (each wrapper,
    uvicorn's and Interlock's, keeps the app it wraps as `.app`)."""
    for _ in range(16):
        drain = getattr(app, "drain", None)
        if isinstance(drain, Drain):
            return drain
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None
