"""Where a budget gate is in its close (`BudgetGate.aclose`), which its Redis
counts (`budget_redis_counts`) heed. Closing (the close under way): the settles
owed still go to Redis on the client there is, but no new client is made
(nothing would close it) and no seeding of Redis starts. Closed (after it): a
call's end is counted in memory only, with one warning, and the gate refuses
the calls a shared budget covers.

Imports: the standard library.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("interlock.costs.budgets")


class Closing:
    """A gate's close state; open until `aclose`, and again after `start`."""

    _closing = False
    _closed = False
    _closed_told = False

    @property
    def _shutting(self) -> bool:
        """Closing or closed: no Redis client is made, nor a seeding started."""
        return self._closing or self._closed

    def _opened(self) -> None:
        self._closing = self._closed = self._closed_told = False

    def _cut_by_close(self, task: asyncio.Task[Any]) -> bool:
        """`task`, awaited through `asyncio.shield`, was cancelled by the gate's
        close (nothing else cancels it), not its caller by its own cancellation."""
        me = asyncio.current_task()
        return self._shutting and task.cancelled() and me is not None and not me.cancelling()

    def _tell_closed(self) -> None:
        if not self._closed_told:
            self._closed_told = True
            log.warning("budgets: a call ended after the budget gate closed: its cost is "
                        "counted in this process only, not in Redis (the ledger has it), and "
                        "a reservation it made there holds until its period ends")
