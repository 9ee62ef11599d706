"""Log lines for refusals a client can repeat at will, bounded in number.

The gateway's edge refuses a request, or closes a connection, without asking
who sent it: bytes that are not HTTP (400), a request past max_connections
(503), headers too large (431), headers or a body too slow (408). One log line
each let any client, key or none, write as many lines as it sent requests,
into the operator's disk and log pipeline. `RefusalLog` writes the first of a
kind in full, then counts the others: at most one line per `every` seconds
says how many came since, written when the interval ends (a timer on the
event loop), so a burst that stops is still counted.

One `RefusalLog` per server: `connection_limits.uvicorn_options` makes it with
the protocol factory, which each worker process of `--workers N` receives
pickled (before any refusal: a logger pickles by its name), so each counts
its own. A timer still pending when the loop stops loses at most one
interval's count.

Imports: the standard library.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

# What a kind of refusal is logged at, at most, after its first line: often
# enough for an operator watching an attack, seldom enough to cost nothing.
SUMMARY_EVERY_SECONDS = 60.0


@dataclass(slots=True)
class _Kind:
    level: int
    window_began: float  # loop time of the last line written for this kind
    unlogged: int = 0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class RefusalLog:
    """Log lines for repeated refusals, bounded per kind (module docstring)."""

    def __init__(self, logger: logging.Logger, every: float = SUMMARY_EVERY_SECONDS) -> None:
        self._logger = logger
        self._every = every
        self._kinds: dict[str, _Kind] = {}

    def note(self, loop: asyncio.AbstractEventLoop, kind: str, level: int,
             message: str, *args: object) -> None:
        """One refusal of `kind` (a phrase naming what is counted, such as
        "requests refused 400 as not HTTP/1.1"): `message % args` is logged if
        no line was written for the kind in the last interval; else it is
        counted for the interval's summary."""
        now = loop.time()
        seen = self._kinds.get(kind)
        # An interval whose summary is due stays open until the summary is
        # written: a loop runs a turn's I/O callbacks before the timers due in it,
        # and a fresh interval here lost the old one's count and left its timer
        # to summarise the new one (two timers a kind from then on). A summary
        # overdue by a whole interval will not come (its loop stopped): open anew.
        if seen is None or now >= seen.window_began + self._every * (
                1 if seen.timer is None else 2):
            self._kinds[kind] = _Kind(level, now)
            self._logger.log(level, message, *args)
            return
        seen.unlogged += 1
        if seen.timer is None:
            seen.timer = loop.call_at(seen.window_began + self._every,
                                      self._summarize, loop, kind)

    def _summarize(self, loop: asyncio.AbstractEventLoop, kind: str) -> None:
        seen = self._kinds[kind]
        now = loop.time()
        self._logger.log(seen.level, "%d more %s in the last %.0f s (this is logged once "
                         "every %g s at most)", seen.unlogged, kind, now - seen.window_began,
                         self._every)
        # The summary opens the next interval: a refusal in it is counted too.
        self._kinds[kind] = _Kind(seen.level, now)
