"""The clock the dispatcher reads and sleeps on, injectable so tests control time.

`MonotonicClock` is the real one. `FakeClock` is virtual time for tests and
simulations: `sleep` parks the caller until the test (or the auto-advance
ticker) moves time forward, so a scenario of minutes runs in milliseconds.

Imports: the standard library only.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time. `advance(dt)` moves it and wakes the sleepers that are due.

    With `auto_advance=True`, a sleeper that finds nothing else runnable jumps
    time to the earliest wake-up itself, so tests need not drive the clock;
    "nothing else runnable" is judged by yielding to the loop a few times.
    """

    def __init__(self, start: float = 1000.0, *, auto_advance: bool = True) -> None:
        self._now = start
        self._auto = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        try:
            if not self._auto:
                await fut
                return
            while not fut.done():
                for _ in range(5):
                    await asyncio.sleep(0)
                    if fut.done():
                        return
                self._wake_earliest()
        finally:
            # A cancelled sleeper leaves no wake-up behind for time to jump to.
            if not fut.done():
                fut.cancel()

    def _wake_earliest(self) -> None:
        live = [s for s in self._sleepers if not s[2].done()]
        if live:
            self.set(min(s[0] for s in live))
