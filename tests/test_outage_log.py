"""When an outage of retried work is said in the log (`outage_log`)."""

from __future__ import annotations

from interlock.outage_log import Ended, OutageLog


def test_an_outage_is_said_when_it_begins_then_once_an_interval_then_when_it_ends() -> None:
    now = [100.0]
    outage = OutageLog(interval=60, clock=lambda: now[0])
    assert outage.succeeded() is None and not outage.ongoing  # no outage, nothing to say
    said = []
    for _ in range(30):  # a try every 5 s for 150 s
        said.append(outage.failed())
        now[0] += 5
    # The first failure, then the 12 tries failed in each minute after it.
    assert [(i, n) for i, n in enumerate(said) if n is not None] == [(0, 0), (12, 12), (24, 12)]
    assert outage.ongoing
    assert outage.succeeded() == Ended(failures=30, seconds=150.0)
    assert outage.succeeded() is None
    # The next outage is told from its beginning again.
    assert outage.failed() == 0 and outage.failed() is None
