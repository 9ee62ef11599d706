"""Refusals a client can repeat at will: a bounded number of log lines that
still count them all. Timed by a fake loop, so nothing waits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from interlock.server.refusal_log import RefusalLog

BAD = "requests refused 400 as not HTTP/1.1"


class FakeLoop:
    """The two things `RefusalLog` asks of a loop: the time, and a timer."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[..., Any], tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> object:
        self.timers.append((when, callback, args))
        return object()  # a handle, never cancelled

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing the timers that come due, in order."""
        end = self.now + seconds
        while due := sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0]):
            when, callback, args = due[0]
            self.timers.remove(due[0])
            self.now = when
            callback(*args)
        self.now = end


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="tests.refusals")
    return caplog


def _refusals() -> RefusalLog:
    return RefusalLog(logging.getLogger("tests.refusals"), every=60)


def _fake_loop() -> Any:  # stands for an asyncio loop
    return FakeLoop()


def test_a_flood_of_refusals_is_one_line_then_one_count_an_interval(
        lines: pytest.LogCaptureFixture) -> None:
    # Each refusal was a line: a client wrote to the operator's log at will.
    loop, refusals = _fake_loop(), _refusals()
    for _ in range(18_000):  # 100 a second for 3 minutes
        refusals.note(loop, BAD, logging.WARNING, "refused a request from %s", "1.2.3.4")
        loop.advance(0.01)
    loop.advance(120)  # the flood over: its last interval is still counted
    said = [r.getMessage() for r in lines.records]
    assert said[0] == "refused a request from 1.2.3.4"
    assert len(said) == 4, said  # the first, then a line a minute
    counts = [int(line.split(" ", 1)[0]) for line in said[1:]]
    assert all(f" more {BAD} in the last 60 s" in line for line in said[1:])
    assert sum(counts) == 18_000 - 1  # every refusal is in a line
    assert {r.levelno for r in lines.records} == {logging.WARNING}


def test_a_refusal_after_a_quiet_interval_is_written_in_full(
        lines: pytest.LogCaptureFixture) -> None:
    loop, refusals = _fake_loop(), _refusals()
    refusals.note(loop, BAD, logging.WARNING, "first")
    loop.advance(61)
    refusals.note(loop, BAD, logging.WARNING, "again")
    loop.advance(600)
    assert [r.getMessage() for r in lines.records] == ["first", "again"]  # nothing to count between


def test_kinds_are_counted_apart(lines: pytest.LogCaptureFixture) -> None:
    loop, refusals = _fake_loop(), _refusals()
    late = "connections closed with 408 (request_header_timeout)"
    for _ in range(3):
        refusals.note(loop, BAD, logging.WARNING, "bad bytes")
        refusals.note(loop, late, logging.INFO, "late headers")
    loop.advance(60)
    said = sorted((r.levelno, r.getMessage()) for r in lines.records)
    tail = "in the last 60 s (this is logged once every 60 s at most)"
    assert said == [(logging.INFO, f"2 more {late} {tail}"), (logging.INFO, "late headers"),
                    (logging.WARNING, f"2 more {BAD} {tail}"), (logging.WARNING, "bad bytes")]


def test_each_worker_gets_a_refusal_log_of_its_own() -> None:
    # --workers N pickles the protocol factory, refusal log included, to each worker.
    import pickle

    loop, refusals = _fake_loop(), _refusals()
    copy = pickle.loads(pickle.dumps(refusals))
    refusals.note(loop, BAD, logging.WARNING, "in the first")
    assert copy._kinds == {} and copy._every == 60


def test_a_refusal_that_comes_as_the_summary_falls_due_is_in_that_summary(
        lines: pytest.LogCaptureFixture) -> None:
    # asyncio runs a turn's I/O callbacks before its due timers: a refusal at the
    # very time the summary fell due opened a new interval, so the old count was
    # lost, a second full line written, and the old timer summarised the new one.
    loop, refusals = _fake_loop(), _refusals()
    refusals.note(loop, BAD, logging.WARNING, "bad bytes")
    loop.now += 1
    refusals.note(loop, BAD, logging.WARNING, "bad bytes")  # counted; summary due at +60
    loop.now += 59
    refusals.note(loop, BAD, logging.WARNING, "bad bytes")  # before the due timer fires
    loop.advance(0)
    loop.advance(600)
    said = [r.getMessage() for r in lines.records]
    assert said[0] == "bad bytes"
    assert said[1:] == [f"2 more {BAD} in the last 60 s (this is logged once every 60 s at most)"]


def test_a_summary_whose_loop_stopped_does_not_silence_the_kind(
        lines: pytest.LogCaptureFixture) -> None:
    # A timer that never fires (its loop stopped, the log used on another) kept
    # the interval open for ever: every later refusal counted, none logged.
    first, refusals = _fake_loop(), _refusals()
    refusals.note(first, BAD, logging.WARNING, "bad bytes")
    refusals.note(first, BAD, logging.WARNING, "bad bytes")  # a summary due at +60
    later = _fake_loop()
    later.now = first.now + 200  # the first loop's timer never fired
    refusals.note(later, BAD, logging.WARNING, "bad bytes")
    assert [r.getMessage() for r in lines.records] == ["bad bytes", "bad bytes"]
