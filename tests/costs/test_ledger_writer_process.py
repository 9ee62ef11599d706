"""The ledger written from a child process (`costs.writer_process`): the server's
writer. The round trip, batching and a PostgreSQL outage are run for both
writers in test_cost_ledger.py and test_cost_ledger_postgres.py; these are the
child's own failure paths and how the writer is chosen."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from interlock.config import load_config
from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.queries import LedgerReader
from interlock.costs.settings import LedgerSettings
from interlock.costs.writer_process import (
    ROWS_PER_TURN,
    WRITER_NICENESS,
    ProcessWriter,
    Wire,
    WriterProcessFailed,
)
from interlock.gateway import Gateway


def _rows(ledger: Ledger, n: int, start: int = 0) -> list[tuple[Any, ...]]:
    """Rows read as `Ledger.record` reads them for the child."""
    insert = ledger._insert
    assert insert is not None
    return [ledger._values(LedgerRow(f"req-{i}", routed_group="g", cost_usd=Decimal("0.25")),
                           insert)
            for i in range(start, start + n)]


async def _migrated(db: str) -> Ledger:
    """A ledger that reads rows for a child writer (its own child is never started)."""
    ledger = Ledger(LedgerSettings(database=db), in_process=True)
    await asyncio.to_thread(ledger._migrate)
    return ledger


def _child(writer: ProcessWriter) -> asyncio.subprocess.Process:
    proc = writer._proc
    assert proc is not None, "no child running"
    return proc


@asynccontextmanager
async def _writing(db: str) -> AsyncIterator[tuple[Ledger, ProcessWriter]]:
    """A migrated ledger (to convert rows with) and a writer to `db`, closed after."""
    ledger = await _migrated(db)
    writer = ProcessWriter(db, "interlock_")
    try:
        yield ledger, writer
    finally:
        await writer.aclose()


async def test_the_database_never_reaches_the_childs_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "secret-name.sqlite")
    async with _writing(db) as (ledger, writer):
        await writer.write(_rows(ledger, 3), ledger._wire())
        command_line = Path(f"/proc/{_child(writer).pid}/cmdline").read_bytes()
        assert b"writer_process" in command_line
        assert b"secret-name" not in command_line
        assert "secret-name" not in repr(writer)
    with LedgerReader(db) as reader:
        assert reader.count() == 3


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no process priorities here")
async def test_the_child_yields_the_cpu_to_the_server(tmp_path: Path) -> None:
    async with _writing(str(tmp_path / "l.sqlite")) as (ledger, writer):
        await writer.write(_rows(ledger, 1), ledger._wire())
        child = os.getpriority(os.PRIO_PROCESS, _child(writer).pid)
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert WRITER_NICENESS > 0
        assert child == min(19, ours + WRITER_NICENESS)  # the kernel caps nice values at 19


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no idle scheduling class here")
async def test_the_child_idles_while_it_keeps_up_and_catches_up_when_behind(
        tmp_path: Path) -> None:
    async with _writing(str(tmp_path / "l.sqlite")) as (ledger, writer):
        await writer.write(_rows(ledger, 1), ledger._wire())
        pid = _child(writer).pid
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        await writer.write(_rows(ledger, 1, start=1), ledger._wire(), behind=True)
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        # Still niced in the normal class: catching up must not take the server's core.
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(
            19, os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICENESS)
        await writer.write(_rows(ledger, 1, start=2), ledger._wire())
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no idle scheduling class here")
async def test_the_ledger_says_when_its_child_is_behind(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(LedgerSettings(database=str(tmp_path / "l.sqlite"), batch_size=5),
                    in_process=True)
    told: list[bool] = []
    original = ProcessWriter.write

    async def spy(self: ProcessWriter, rows: list[tuple[Any, ...]], wire: Wire, *,
                  behind: bool = False) -> Any:
        told.append(behind)
        return await original(self, rows, wire, behind=behind)

    monkeypatch.setattr(ProcessWriter, "write", spy)
    for i in range(12):  # two batches and two rows more
        ledger.record(LedgerRow(f"req-{i}", routed_group="g"))
    await ledger.start()
    await ledger.aclose()
    # 12 waiting: the first batch leaves 7 (behind), the second 2, the last none.
    assert told == [True, False, False]


async def test_a_child_that_died_is_replaced_and_no_row_is_written_twice(
        tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    async with _writing(db) as (ledger, writer):
        first = _rows(ledger, 10)
        await writer.write(first, ledger._wire())
        # Gone between two batches: the next batch starts another child.
        assert writer._proc is not None
        writer._proc.kill()
        await writer._proc.wait()
        second = _rows(ledger, 10, start=10)
        await writer.write(second, ledger._wire())
        # Gone while a batch is in hand: the write fails, and the ledger's writer
        # sends the batch again (to a new child), with rows already stored in it.
        assert writer._proc is not None
        writer._proc.kill()
        third = _rows(ledger, 10, start=20)
        with pytest.raises((WriterProcessFailed, ConnectionError)):
            await writer.write(third, ledger._wire())
        await writer.write(first + second + third, ledger._wire())
    with LedgerReader(db) as reader:
        assert reader.count() == 30


async def test_a_write_the_child_cannot_do_fails_with_a_redacted_reason(
        tmp_path: Path) -> None:
    ledger = await _migrated(str(tmp_path / "ledger.sqlite"))
    rows = _rows(ledger, 2)
    # A database that refuses the connection, its password in the URL.
    url = "postgresql+psycopg://ledger:hunter2-secret@127.0.0.1:1/nowhere?connect_timeout=2"
    writer = ProcessWriter(url, "interlock_")
    try:
        with pytest.raises(WriterProcessFailed) as info:
            await writer.write(rows, ledger._wire())
        # The child answered: it stays for the retry, rather than a new one a failure.
        first = _child(writer)
        with pytest.raises(WriterProcessFailed):
            await writer.write(rows, ledger._wire())
        assert _child(writer) is first
    finally:
        await writer.aclose()
    assert "hunter2-secret" not in str(info.value)
    assert "OperationalError" in str(info.value)


async def test_rows_that_cannot_be_converted_or_sent_are_dropped_alone(
        tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    async with _writing(db) as (ledger, writer):
        rows = _rows(ledger, 6)
        created_at = ledger._insert.names.index("created_at")  # type: ignore[union-attr]
        cost = ledger._insert.names.index("cost_nanousd")  # type: ignore[union-attr]
        # A timestamp the child's conversion refuses; a value no pickle can carry.
        rows[1] = (*rows[1][:created_at], "not a date", *rows[1][created_at + 1:])
        rows[4] = (*rows[4][:cost], lambda: 0, *rows[4][cost + 1:])
        dropped = await writer.write(rows, ledger._wire())
        assert dropped.rows == 2
        assert "PicklingError" in dropped.reason or "AttributeError" in dropped.reason
        # A batch of only such rows is answered too, and the child stays.
        child = _child(writer)
        assert (await writer.write([rows[1]], ledger._wire())).rows == 1
        assert _child(writer) is child
        assert (await writer.write(_rows(ledger, 1, start=6), ledger._wire())).rows == 0
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT request_id FROM interlock_requests ORDER BY id").fetchall()
    assert [r[0] for r in stored] == ["req-0", "req-2", "req-3", "req-5", "req-6"]


async def test_a_cancelled_write_leaves_the_next_one_whole(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    async with _writing(db) as (ledger, writer):
        task = asyncio.ensure_future(writer.write(_rows(ledger, 50), ledger._wire()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.write(_rows(ledger, 5, start=50), ledger._wire())
    with LedgerReader(db) as reader:
        assert reader.count() in (5, 55)  # the cancelled batch may have been written


async def _turns_during(work: Any) -> tuple[Any, int]:
    """What awaiting `work` gave, and how many turns the event loop gave another
    task meanwhile."""
    turns = 0
    done = False

    async def count() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count())
    await asyncio.sleep(0)
    started = turns
    try:
        result = await work
    finally:
        done = True
        await counter
    return result, turns - started


async def test_a_batch_is_read_and_pickled_a_slice_at_a_time(tmp_path: Path) -> None:
    # A batch read or pickled in one go held the loop for up to 2 ms on a slow
    # host: every request in flight waited. Between slices other tasks run.
    db = str(tmp_path / "ledger.sqlite")
    async with _writing(db) as (ledger, writer):
        insert = ledger._insert
        assert insert is not None
        n = 3 * ROWS_PER_TURN + 1
        batch: list[Any] = [LedgerRow(f"req-{i}", routed_group="g") for i in range(n)]
        rows, turns = await _turns_during(ledger._prepare_between_turns(batch, insert))
        assert turns >= 3
        assert [row[insert.names.index("request_id")] for row in rows] == [
            f"req-{i}" for i in range(n)]
        dropped, turns = await _turns_during(writer.write(rows, ledger._wire()))
        assert turns >= 3 and dropped.rows == 0
    with LedgerReader(db) as reader:
        assert reader.count() == n


async def test_a_bad_row_in_a_cancelled_batch_is_dropped_once(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = await _migrated(db)
    insert = ledger._insert
    assert insert is not None
    bad = LedgerRow("req-bad")
    bad.created_at = "not a datetime"  # type: ignore[assignment]
    batch: list[Any] = [LedgerRow(f"req-{i}") for i in range(2 * ROWS_PER_TURN)]
    batch.insert(1, bad)
    task = asyncio.ensure_future(ledger._prepare_between_turns(batch, insert))
    await asyncio.sleep(0)  # the first slice, with the bad row, is read; then a turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ledger.dropped == 1 and bad not in batch and len(batch) == 2 * ROWS_PER_TURN
    rows = await ledger._prepare_between_turns(batch, insert)  # the batch, retried
    assert ledger.dropped == 1 and len(rows) == 2 * ROWS_PER_TURN


@pytest.mark.parametrize(("writer", "server", "in_process"), [
    ("process", True, True), ("thread", True, False), ("process", False, False),
    ("thread", False, False)])
def test_the_server_writes_from_a_child_process_unless_told_otherwise_the_library_never(
        tmp_path: Path, writer: str, server: bool, in_process: bool) -> None:
    config = load_config({
        "model_list": [{"model_name": "g", "litellm_params": {
            "model": "openai/m", "api_key": "k", "api_base": "http://127.0.0.1:9"}}],
        "ledger": {"database": str(tmp_path / "l.sqlite"), "writer": writer}}, environ={})
    gateway = Gateway(config, environ={}, server=server)
    assert gateway.ledger is not None
    assert (gateway.ledger._process is not None) is in_process


async def test_the_child_outlives_a_signal_to_the_process_group(tmp_path: Path) -> None:
    # Ctrl-C or a supervisor's SIGTERM reaches the child too; the server's
    # shutdown still has rows to hand it, so it ends only when its stdin closes.
    db = str(tmp_path / "ledger.sqlite")
    async with _writing(db) as (ledger, writer):
        await writer.write(_rows(ledger, 1), ledger._wire())
        proc = _child(writer)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        await writer.write(_rows(ledger, 1, start=1), ledger._wire())
        assert writer._proc is proc and proc.returncode is None
    assert proc.returncode == 0
    with LedgerReader(db) as reader:
        assert reader.count() == 2



async def test_a_child_that_cannot_start_leaves_the_ledger_to_its_thread(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A process whose import path was set up at run time starts a child that
    # cannot import Interlock: it ends without a word, and the rows still go in.
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01), in_process=True)
    assert ledger._process is not None
    ledger._process._command = (sys.executable, "-c", "import sys; sys.exit(3)")
    await ledger.start()
    for i in range(5):
        ledger.record(LedgerRow(f"req-{i}", routed_group="g"))
    assert await ledger.flush(60)  # a child process starting on a loaded machine
    await ledger.aclose()
    assert ledger._process is None
    assert "could not start; writing from a thread" in caplog.text
    with LedgerReader(db) as reader:
        assert reader.count() == 5


async def test_datetimes_and_decimals_travel_as_text_and_are_stored_exactly(
        tmp_path: Path) -> None:
    # Pickled as objects they cost the event loop ~2 us a row (a reduce call
    # each); as text a fifth of that. What is stored must not change.
    import pickle
    from datetime import UTC, datetime

    db = str(tmp_path / "ledger.sqlite")
    stamp = datetime(2026, 11, 28, 12, 34, 56, 789012, tzinfo=UTC)
    cost = Decimal("0.000123456")
    async with _writing(db) as (ledger, writer):
        insert = ledger._insert
        assert insert is not None
        row = ledger._values(LedgerRow("req-exact", created_at=stamp, cost_usd=cost), insert)
        wire = ledger._wire()
        names = insert.names
        assert [names[i] for i in wire.timestamps] == ["created_at"]
        assert [names[i] for i in wire.decimals] == ["cost_nanousd"]
        sent = pickle.loads(pickle.dumps(row))
        assert sent[wire.timestamps[0]] == stamp.isoformat()
        assert sent[wire.decimals[0]] == "0.000123456"
        restored = wire.restored(sent)
        assert restored[wire.timestamps[0]] == stamp and restored[wire.decimals[0]] == cost
        assert (await writer.write([row], wire)).rows == 0
    with sqlite3.connect(db) as conn:
        [(created_at, nanousd)] = conn.execute(
            "SELECT created_at, cost_nanousd FROM interlock_requests").fetchall()
    assert created_at.startswith("2026-11-28 12:34:56.789012")
    assert nanousd == 123456
