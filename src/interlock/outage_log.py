"""When to say in the log that work retried during an outage still fails.

The ledger's writer retries a write every few seconds while its database is
away, and each worker's key store reads its keys every few seconds: a line at
each try filled the log with the same words, a dozen a minute a worker, and
nothing said when the database came back. `OutageLog` keeps the count for one
such kind of work, so that its owner says one warning when failures begin, then
at most one line every `interval` seconds with the tries failed meanwhile, and
one line when the work succeeds again (as the budget gate does for Redis).
It decides only when to speak; the owner writes its own words. The ledger also
counts the rows a full buffer drops with one, told of each drop and never of
success (`costs.ledger`).

`server.refusal_log.RefusalLog` is the other "said once, then counted" log, kept
apart: it writes its count when the interval ends (a timer), since no later
refusal may come to carry it, and says a kind in full again after a quiet
interval, where an outage is said in full only when it begins.

Imports: the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Seconds between two lines that an outage goes on.
INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class Ended:
    """An outage that has ended: how many tries failed in it, and for how long."""

    failures: int
    seconds: float


class OutageLog:
    def __init__(self, *, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._began: float | None = None  # None: no outage
        self._said: float = 0.0
        self._failures = 0
        self._unsaid = 0

    @property
    def ongoing(self) -> bool:
        return self._began is not None

    def failed(self) -> int | None:
        """Count one failed try. What to say: 0 for the first failure of an
        outage (say why it began), the tries failed since the last line once
        `interval` has passed, else None (say nothing)."""
        now = self._clock()
        self._failures += 1
        if self._began is None:
            self._began = self._said = now
            self._unsaid = 0
            return 0
        self._unsaid += 1
        if now - self._said < self._interval:
            return None
        self._said = now
        unsaid, self._unsaid = self._unsaid, 0
        return unsaid

    def succeeded(self) -> Ended | None:
        """A try succeeded: the outage it ends (say that it is over), or None
        when there was none."""
        began = self._began
        if began is None:
            return None
        ended = Ended(self._failures, self._clock() - began)
        self._began = None
        self._failures = self._unsaid = 0
        return ended
