"""The ledger's batches written from a child process.

In the server, the ledger's writer thread shared the event loop's GIL: binding a
batch's parameters, SQLAlchemy's connection handling and the INSERT's set-up all
run with the GIL held, in pieces of 0.1-0.3 ms, and each handoff of the GIL
between the thread and a busy loop is a forced switch. A request that arrived
meanwhile waited: at concurrency 1 that was most of the ledger's cost to the
99th percentile (docs/benchmarks.md, "Gateway overhead: findings"). A child
process has its own GIL, so none of that work touches the loop's.

`ProcessWriter` is the parent's side: it hands each batch to the child over a
pipe and waits for the child's answer; a failure raises, and the ledger's writer
retries the batch as it does for the thread (rows carry a `row_id`, so a batch
the child committed before dying is not written twice). The child is started
on the first batch and again after any failure that leaves its state unknown.

The rows come as `Ledger.record` read them off the request (values in the
INSERT's column order) and the child converts them to what the driver stores
(the columns' bind processors: timestamp text, nano-dollars): about 9 us a row
that the thread writer has to spend on the event loop (see `Ledger.record`) and
the child spends on its own. A row some column refuses is left out alone, and
counted, rather than failing its batch.

The child runs at a lower scheduling priority (`WRITER_NICENESS`): its batches
come in bursts of several milliseconds of CPU, and on a machine whose cores are
busy with requests a burst at normal priority takes a core from the server, or
from what it waits on, for that long. The requests caught behind it made most of
the ledger's cost to the gateway's 99th-percentile latency at concurrency 1
(docs/benchmarks.md, "Runs 36-39"). Niced, the writer takes what the requests leave;
at 10, not 19, it still gets about a tenth of a core it shares with a busy
server (the scheduler's weights), some three times what a saturated server's
rows need, so it keeps up and the ledger's buffer does not fill.

Where the system has it (Linux), the child is also put in the idle scheduling
class (SCHED_IDLE) while the ledger keeps up: a request handler woken on the
child's core takes it from an idle-class task at once, where a niced one may
keep it for the rest of its time slice; in a harness on a slow 2-core host that
wait was most of what the ledger still cost the P99 at concurrency 1
(docs/benchmarks.md, "Runs 52-54", where one full run agreed and one did not).
The idle class gets almost nothing of a core that stays busy, so whenever more
than a batch is waiting as the parent sends one (`write`'s `behind`), the child
goes back to the normal class, still niced, until it has caught up: on a
saturated machine one batch may wait out a busy spell, and the rows behind it
are then written at the niced pace, as before.

The database URL, which may hold a password, goes to the child through its
stdin, never its command line; the child never writes to stderr (a traceback
could quote the URL) and reports errors as one line that the parent redacts.

The rows' datetimes and Decimals travel as text (`Wire`): pickling them as
objects goes through a reduce call each, and a batch of 200 ledger rows took
434 us to pickle on the event loop, a stall for whichever request came then,
against 79 us as text (the text costs about 0.9 us a row when the row is
recorded, and the child parses it back). Whether the batches' writing adds to
the gateway's 99th percentile at concurrency 1 at all was not settled: of four
A/Bs with batches held back until shutdown, two showed about 0.6 ms (which
the cheaper pickle did not remove) and a later, quieter one none
(docs/benchmarks.md, "Runs 57-58").

Protocol (both directions over the child's stdin and stdout): each frame from
the parent is a 4-byte big-endian length and a pickle; the first frame is
(database, table_prefix), each later one (the `Wire`, a list of pickled lists of
row tuples: the batch pickled a slice at a time, see `_pickled`). The child
answers each batch with one line: `ok`; `dropped <n> <type>: <message>` when
it wrote all but n rows, which it could not convert; or `error <type>:
<message>` when it wrote none.

Imports: sqlalchemy (in the child), the standard library, `errors`,
`costs.batch_insert`, `costs.schema`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO, NamedTuple

from interlock.errors import failure_said

_LENGTH = struct.Struct("!I")
# Added to the child's nice value (0-19; higher yields more): see the module's text.
WRITER_NICENESS = 10
# The scheduling classes the child is moved between (None where the system has
# none: the child then stays niced in the normal class).
_IDLE_CLASS: int | None = getattr(os, "SCHED_IDLE", None)
_NORMAL_CLASS: int | None = getattr(os, "SCHED_OTHER", None)
# Rows of a batch read into their columns (`Ledger`) or pickled (`_pickled`) in
# one turn of the event loop: see `_pickled`. A request ready during a slice
# waits for it, so the slice is what the ledger adds to a request's tail: 16
# rows (about 0.15 ms a turn on a slow host) showed in Interlock's P99 at
# concurrency 1 (1.05-1.09 ms of overhead against 0.60-0.86 with 4; the P50 and
# the CPU a request the same; docs/benchmarks.md, "Runs 70-74"). 2 did no better.
ROWS_PER_TURN = 4


class WriterProcessFailed(Exception):
    """The child could not write a batch, or is gone."""


class WriterProcessUnavailable(WriterProcessFailed):
    """No child has ever answered: the first one ended without a word (it could
    not import Interlock, say, in a process whose path was set up at run time)."""


class Dropped(NamedTuple):
    """Rows of a batch left out because they could not be converted or sent (a
    bug upstream of the ledger, not the database), and the first reason."""

    rows: int = 0
    reason: str = ""


class Wire(NamedTuple):
    """Where a row's datetimes and Decimals are (indexes into its values), which
    go to the child as text: see the module's text for why."""

    timestamps: tuple[int, ...] = ()
    decimals: tuple[int, ...] = ()

    def portable(self, values: list[Any]) -> tuple[Any, ...]:
        """The row as it is sent; raises on a value of another type (the caller
        drops that row alone)."""
        for index in self.timestamps:
            value = values[index]
            if value is not None:
                values[index] = value.isoformat()
        for index in self.decimals:
            value = values[index]
            if value is not None:
                values[index] = str(value)
        return tuple(values)

    def restored(self, row: Sequence[Any]) -> list[Any]:
        """A sent row's values as they were recorded; raises if they do not parse."""
        values = list(row)
        for index in self.timestamps:
            if values[index] is not None:
                values[index] = datetime.fromisoformat(values[index])
        for index in self.decimals:
            if values[index] is not None:
                values[index] = Decimal(values[index])
        return values


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


async def _pickled(wire: Wire, rows: list[tuple[Any, ...]]) -> tuple[bytes, Dropped]:
    """The batch's frame: its rows pickled `ROWS_PER_TURN` at a time, the event
    loop taking a turn between slices (a 200-row batch pickled at once held the
    loop for 0.35-1 ms on a slow host, and every request in flight waited); a row
    that cannot be pickled is left out of it, alone."""
    parts: list[bytes] = []
    dropped = Dropped()
    for start in range(0, len(rows), ROWS_PER_TURN):
        if start:
            await asyncio.sleep(0)
        part, unsent = _pickled_slice(rows[start:start + ROWS_PER_TURN])
        parts.append(part)
        if unsent.rows:
            dropped = Dropped(dropped.rows + unsent.rows, dropped.reason or unsent.reason)
    return _frame(pickle.dumps((wire, parts), protocol=pickle.HIGHEST_PROTOCOL)), dropped


def _pickled_slice(rows: list[tuple[Any, ...]]) -> tuple[bytes, Dropped]:
    try:
        return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL), Dropped()
    except Exception:
        pass
    kept: list[tuple[Any, ...]] = []
    dropped = Dropped()
    for row in rows:
        try:
            pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            dropped = Dropped(dropped.rows + 1,
                              dropped.reason or _reason(exc).decode(errors="replace"))
        else:
            kept.append(row)
    return pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL), dropped


class ProcessWriter:
    """The parent's side: one child process writing one ledger's batches. The
    child's pipes belong to the event loop that started it, so a writer serves
    one loop for its life (the server's); the library, which may run one
    `asyncio.run` after another, writes from a thread instead."""

    def __init__(self, database: str, table_prefix: str, *, close_wait: float = 5.0,
                 command: tuple[str, ...] | None = None) -> None:
        """`close_wait`: how long `aclose` waits for the child to finish its last
        batch and exit before killing it; `command`: what starts the child (tests)."""
        self._close_wait = close_wait
        self._command = command or (sys.executable, "-m", "interlock.costs.writer_process")
        self._answered = False  # some child has answered a batch
        self._setup = _frame(pickle.dumps((database, table_prefix)))
        self._proc: asyncio.subprocess.Process | None = None
        # The child's scheduling class as last set (None: not set since it started).
        self._class: int | None = None
        # Children killed and not yet seen to exit: `aclose` waits for them, so
        # that none outlives the ledger (nor its pipes the event loop).
        self._dying: list[asyncio.subprocess.Process] = []

    def __repr__(self) -> str:  # the URL may hold a password
        return f"ProcessWriter(pid={self._proc.pid if self._proc else None})"

    async def write(self, rows: list[tuple[Any, ...]], wire: Wire, *,
                    behind: bool = False) -> Dropped:
        """Write `rows` (values in the INSERT's column order, as `Ledger.record`
        read them and `wire` made them portable) in one transaction, but for
        those that cannot be converted, which are counted in the answer;
        WriterProcessFailed if none were written (they may still have been, when
        the child died after committing).
        `behind`: more rows than a batch are waiting after these, so the child
        runs in the normal scheduling class (niced) to catch up, not the idle one."""
        frame, unsent = await _pickled(wire, rows)
        proc = self._proc
        if proc is None or proc.returncode is not None:
            proc = self._proc = await self._start()
        self._pace(proc, _NORMAL_CLASS if behind else _IDLE_CLASS)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(frame)
            await proc.stdin.drain()
            answer = await proc.stdout.readline()
        except BaseException:
            # Cancelled or broken mid-batch: what the child will answer next is
            # unknown, so this child goes and the next batch starts another.
            self._kill()
            raise
        if answer == b"ok\n":
            self._answered = True
            return unsent
        if answer.startswith(b"dropped "):
            self._answered = True
            count, _, reason = answer.removeprefix(b"dropped ").partition(b" ")
            return Dropped(unsent.rows + int(count),
                           unsent.reason or reason.decode(errors="replace").strip())
        if not answer:
            self._kill()
            if not self._answered:
                raise WriterProcessUnavailable(
                    "the ledger's writer process ended before writing anything")
            raise WriterProcessFailed("the ledger's writer process exited")
        self._answered = True
        # The database refused (it is down, say): the child answered and stays.
        raise WriterProcessFailed(answer.removeprefix(b"error ").decode(errors="replace")
                                  .strip())

    async def aclose(self) -> None:
        """End the child once it has finished what it was given (bounded)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            with contextlib.suppress(ConnectionError):
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), self._close_wait)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        dying, self._dying = self._dying, []
        for gone in dying:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), self._close_wait)

    def _pace(self, proc: asyncio.subprocess.Process, wanted: int | None) -> None:
        """Move the child to the scheduling class `wanted` (see the module's text),
        a system call only when it changes. Best effort: where the system refuses
        (a sandbox, say), the child stays niced in the class it has."""
        if wanted is None or wanted == self._class:
            return
        self._class = wanted
        with contextlib.suppress(OSError):
            os.sched_setscheduler(proc.pid, wanted, os.sched_param(0))

    async def _start(self) -> asyncio.subprocess.Process:
        self._dying = [p for p in self._dying if p.returncode is None]
        self._class = None
        proc = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(self._setup)
        return proc

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, RuntimeError):
                proc.kill()
            self._dying.append(proc)


# -- the child -----------------------------------------------------------------

def _read(stream: BinaryIO) -> bytes | None:
    """One frame's payload; None at the end of input."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def _reason(exc: BaseException) -> bytes:
    # One redacted line naming the exception: its first line could quote the URL.
    return failure_said(exc).encode(errors="replace")


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The child's loop: write each batch from `stdin`, answer on `stdout`."""
    from interlock.costs.batch_insert import BatchInsert
    from interlock.costs.schema import ledger_tables, make_engine

    setup = _read(stdin)
    if setup is None:
        return
    database, prefix = pickle.loads(setup)
    engine = make_engine(database)
    insert: BatchInsert | None = None
    try:
        while (frame := _read(stdin)) is not None:
            try:
                if insert is None:
                    insert = BatchInsert(engine.dialect, ledger_tables(prefix).requests)
                wire, parts = pickle.loads(frame)
                sent = [row for part in parts for row in pickle.loads(part)]
                rows, refused = insert.convert_each(sent, Wire(*wire).restored)
                if rows:
                    refused += [exc for _, exc in insert.write(engine, rows)]
            except Exception as exc:  # answered, and the parent retries
                stdout.write(b"error " + _reason(exc) + b"\n")
            else:
                stdout.write(b"ok\n" if not refused else
                             b"dropped %d %s\n" % (len(refused), _reason(refused[0])))
            stdout.flush()
    finally:
        engine.dispose()


if __name__ == "__main__":
    # Ctrl-C and a supervisor's SIGTERM reach the whole process group; the child
    # outlives them so that the server's shutdown can still hand it the last
    # rows, and ends when its stdin closes (the parent closing it, or exiting).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "nice"):  # not on Windows, where the writer runs at normal priority
        os.nice(WRITER_NICENESS)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BaseException:  # no traceback: it could quote the database URL
        sys.exit(1)
