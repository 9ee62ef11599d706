"""The spend ledger: one row per request, written off the request path.

`Ledger.record` appends to a bounded in-memory buffer and returns at once; a
background asyncio task takes batches from it and writes them in a worker
thread (`asyncio.to_thread`), or, for the server, hands them to a child process
that writes them (`costs.writer_process`), with one INSERT compiled once
(`costs.batch_insert`). A plain synchronous engine in a thread was chosen over
SQLAlchemy's asyncio extension because the extension needs an async driver per
database (aiosqlite for the SQLite default is one more dependency) and buys
nothing here: one writer, batched inserts, and the event loop never waits on
the database either way.

When the database is unreachable, the batch goes back to the front of the
buffer and the writer retries with exponential backoff; rows are only dropped
(and counted in `dropped`) when the buffer is full. Each row carries a
`row_id` made here, and inserts ignore a `row_id` already present, so a batch
retried after a lost commit acknowledgement is not written twice.

Imports: sqlalchemy, the standard library, `errors`, `outage_log`, `costs.batch_insert`,
`costs.schema`, `costs.settings`, `costs.writer_process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import os
import random
import threading
import typing
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.engine import Engine

from interlock.costs.batch_insert import BatchInsert
from interlock.costs.schema import LedgerTables, ledger_tables, make_engine, migrate
from interlock.costs.settings import LedgerSettings
from interlock.costs.writer_process import (
    ROWS_PER_TURN,
    Dropped,
    ProcessWriter,
    Wire,
    WriterProcessUnavailable,
)
from interlock.errors import failure_said
from interlock.outage_log import OutageLog

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class LedgerRow:
    """What one client request did and cost. `api_key_id` is an alias or hash, never a key."""

    request_id: str
    requested_model: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    api_key_id: str | None = None
    router: str | None = None
    routed_group: str | None = None
    route_score: float | None = None
    deployment: str | None = None
    provider: str | None = None
    # The upstream model id the deployment called (e.g. "claude-sonnet-4-20250514").
    model: str | None = None
    # "continued": the first call of a stream continued on another deployment, a
    # billed call of the request whose own row follows (`gateway_stream`).
    status: Literal["ok", "error", "continued"] = "ok"
    error_class: str | None = None
    attempts: int = 1
    fallbacks: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    # Web searches the provider billed, and the service tier it reported.
    web_searches: int = 0
    service_tier: str | None = None
    cost_usd: Decimal | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    stream: bool = False
    # The provider reported no usage: the tokens and cost are Interlock's estimate.
    usage_estimated: bool = False
    # The request's `user` (OpenAI's end-user id), as the client gave it.
    end_user: str | None = None
    # Only stored when `log_payloads` is on.
    prompt: str | None = None
    response: str | None = None


_ROW_FIELDS = frozenset(f.name for f in fields(LedgerRow))
_ROW_HINTS = typing.get_type_hints(LedgerRow)


def _value_types(attribute: str) -> tuple[Any, ...]:
    """The types a LedgerRow attribute holds (`Decimal | None`: Decimal, NoneType)."""
    hint = _ROW_HINTS[attribute]
    return typing.get_args(hint) or (hint,)


# Columns named otherwise than the row's attribute; `row_id` is the ledger's own.
_COLUMN_ATTRIBUTE = {"cost_nanousd": "cost_usd"}


class _ColumnGetter:
    """A LedgerRow's values in the order of the INSERT's columns, read in one
    C-level call (`operator.attrgetter`)."""

    def __init__(self, names: list[str]) -> None:
        attributes = [_COLUMN_ATTRIBUTE.get(n, n) for n in names if n != "row_id"]
        unknown = [a for a in attributes if a not in _ROW_FIELDS]
        if unknown:
            raise RuntimeError(f"ledger columns without a LedgerRow field: {unknown}")
        self._get = operator.attrgetter(*attributes)
        self._row_id = names.index("row_id")
        self._created_at = names.index("created_at")
        self._payloads = [names.index("prompt"), names.index("response")]
        # Where the datetimes and Decimals are, sent to a child writer as text.
        kinds = [_value_types(_COLUMN_ATTRIBUTE.get(n, n)) if n != "row_id" else ()
                 for n in names]
        self.wire = Wire(timestamps=tuple(i for i, k in enumerate(kinds) if datetime in k),
                         decimals=tuple(i for i, k in enumerate(kinds) if Decimal in k))

    def values(self, row: LedgerRow, row_id: str, *, keep_payloads: bool) -> list[Any]:
        values = list(self._get(row))
        values.insert(self._row_id, row_id)
        if not keep_payloads:
            for index in self._payloads:
                values[index] = None
        stamp = values[self._created_at]
        if stamp.tzinfo is None:  # a naive time is taken as UTC
            values[self._created_at] = stamp.replace(tzinfo=UTC)
        return values


class Ledger:
    def __init__(
        self,
        settings: LedgerSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        engine: Engine | None = None,
        in_process: bool = False,
    ) -> None:
        """`in_process`: batches are written from a child process, not a thread
        (`costs.writer_process`; the server's choice, see `LedgerSettings.writer`),
        which needs one event loop for the ledger's life."""
        self.settings = settings
        self.clock = clock or utc_now
        self.tables: LedgerTables = ledger_tables(settings.table_prefix)
        self._engine = engine
        self._buffer: deque[LedgerRow | tuple[Any, ...]] = deque()
        # record() may be called from other threads (the sync library facade).
        self._lock = threading.Lock()
        # The start-up migration and the writer's first write may run in two
        # threads at once; one creates the engine and the schema.
        self._setup_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopping = False
        self._migrated = False
        self._insert: BatchInsert | None = None
        self._columns: _ColumnGetter | None = None
        self._process = (ProcessWriter(settings.database, settings.table_prefix,
                                       close_wait=max(1.0, settings.close_timeout))
                         if in_process and settings.database is not None else None)
        self._inflight = 0
        self.dropped = 0
        # Rows dropped because the buffer is full: said at the first, then at most
        # once a minute with the drops since (a long outage, a line a row before).
        # Never told of success: room one batch frees is no end to an overflow,
        # and a buffer kept at its brim would begin one, and say it, every batch.
        self._overflow = OutageLog()
        self.written = 0
        self.write_failures = 0
        self._outage = OutageLog()
        # row_id = a random per-ledger prefix + a counter: unique across
        # processes and restarts like a uuid4, at a fraction of its cost per row
        # (uuid4 was a tenth of the writer's time).
        self._row_prefix = os.urandom(8).hex()
        self._row_serial = itertools.count()

    # ------------------------------------------------------------------ public

    @property
    def enabled(self) -> bool:
        return self.settings.database is not None

    @property
    def pending(self) -> int:
        """Rows not yet known to be in the database (buffered or being written)."""
        return len(self._buffer) + self._inflight

    def now(self) -> datetime:
        return self.clock()

    async def start(self) -> None:
        """Create or migrate the schema, then start the background writer.

        A database that is down at start-up does not stop the server: the
        writer migrates before its first write and keeps rows buffered till then.
        """
        if not self.needs_writer:
            return
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # The writer is in place before the first await, so that concurrent first
        # calls (a library user's asyncio.gather) start one writer, not several.
        self._task = asyncio.create_task(self._run(), name="interlock-ledger-writer")
        if not self._migrated:
            try:
                await asyncio.to_thread(self._migrate)
            except Exception as exc:  # the writer retries
                log.warning("ledger database unavailable at start-up (%s); buffering rows",
                            type(exc).__name__)

    @property
    def needs_writer(self) -> bool:
        """True when rows would have no writer: never started, or its loop has
        ended (the library across `asyncio.run` calls; the rows buffered since
        are kept and written by the next one). Not once closing."""
        if not self.enabled or self._closing or self._stopping:
            return False
        if self._task is None:
            return True
        return self._task.done() and (self._loop is None or self._loop.is_closed())

    def record(self, row: LedgerRow) -> None:
        """Queue one row. Never blocks, never raises.

        For the thread writer, once the INSERT is known, the row is converted
        here (`_values`). For a child writer the row waits as it is and is read
        into its columns with the rest of its batch (`_prepare_between_turns`):
        the same work, but one row at a time, between requests, it took about
        12 us in the server against 2.5 us in the batch's loop. Deferring it
        saved 0-19 us of the server's CPU a request in three A/Bs, about 8 on
        average (docs/benchmarks.md, "Runs 59-61").
        """
        if not self.enabled:
            return
        item: LedgerRow | tuple[Any, ...] = row
        if self._insert is not None and self._process is None:
            try:
                item = self._values(row, self._insert)
            except Exception:  # a malformed row must not fail the request
                self._drop_malformed()
                return
        warning = None
        with self._lock:
            if len(self._buffer) >= self.settings.max_buffer:
                self.dropped += 1
                unsaid = self._overflow.failed()
                if unsaid is not None:  # 0: the first drop, this row
                    warning = (len(self._buffer), unsaid or 1, self.dropped)
                full = False
            else:
                self._buffer.append(item)
                full = len(self._buffer) >= self.settings.batch_size
        if warning is not None:  # logged outside the lock other threads record under
            log.warning("ledger buffer full (%d rows waiting for the database): %d rows "
                        "dropped since the last warning, %d in all; raise ledger.max_buffer "
                        "or bring the database back", *warning)
        if full:
            self._poke()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the buffer is empty (True) or the timeout passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.pending:
            if self._task is None or self._task.done():
                return False
            if deadline is not None and loop.time() >= deadline:
                return False
            self._poke()
            await asyncio.sleep(0.01)
        return True

    async def aclose(self) -> None:
        """Flush what can be flushed within `close_timeout`, then stop the writer."""
        if self._task is None:
            return
        if self._loop is not asyncio.get_running_loop():
            # The writer ran on a loop that has ended (the library used from an
            # asyncio.run, then closed from sync code): nothing of it can be
            # awaited here, so what it left is written on this thread.
            self._task = None
            self.write_pending()
            if self._engine is not None:
                self._engine.dispose()
            return
        self._closing = True
        flushed = await self.flush(self.settings.close_timeout)
        # Ask the writer to stop rather than cancelling it mid-write; cancel
        # only if it does not stop (a write hanging on a dead connection).
        self._stopping = True
        self._poke()
        task, self._task = self._task, None
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if not flushed and self.pending:
            log.warning("ledger closed with %d rows not written: those rows are lost (not "
                        "written within ledger.close_timeout, %g s: the database did not "
                        "answer, or the writer had stopped)", self.pending,
                        self.settings.close_timeout)
        if self._process is not None:
            await self._process.aclose()
        if self._engine is not None:
            await self._off_loop(self._engine.dispose)

    def write_pending(self) -> bool:
        """Write every buffered row now, on this thread, with no event loop: for a
        program that ends without `aclose` (an `asyncio.run` cancels the writer
        task on its way out, and the rows stay in the buffer). True if none is
        left unwritten."""
        if not self.enabled:
            return True
        self._closing = True
        if self._process is not None and self._buffer:
            # No event loop to talk to the child through: this thread writes.
            self._leave_the_child([], self._insert_for(self._get_engine()))
        while self._buffer:
            batch = self._take()
            try:
                self._write(batch)
            except Exception as exc:
                self._put_back(batch)
                log.warning("ledger: %d rows could not be written at exit (%s); those rows "
                            "are lost", len(self._buffer), type(exc).__name__)
                return False
            self.written += len(batch)
        return True

    def stats(self) -> dict[str, int]:
        return {"pending": self.pending, "dropped": self.dropped, "written": self.written,
                "write_failures": self.write_failures}

    # ------------------------------------------------------------------ internals

    def _poke(self) -> None:
        """Wake the writer early; safe from the loop's thread and from others."""
        wake, loop = self._wake, self._loop
        if wake is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    def _get_engine(self) -> Engine:
        if self._engine is None:
            with self._setup_lock:
                if self._engine is None:
                    assert self.settings.database is not None
                    self._engine = make_engine(self.settings.database)
        return self._engine

    def _migrate(self) -> None:
        engine = self._get_engine()
        with self._setup_lock:
            if not self._migrated:
                migrate(engine, self.tables)
                self._migrated = True
        # From now on record() converts rows as they come (see there).
        self._insert_for(engine)

    def _take(self) -> list[LedgerRow | tuple[Any, ...]]:
        with self._lock:
            n = min(self.settings.batch_size, len(self._buffer))
            return [self._buffer.popleft() for _ in range(n)]

    def _put_back(self, batch: Sequence[LedgerRow | tuple[Any, ...]]) -> None:
        # Back to the front, in order, so rows keep their order; may exceed
        # max_buffer briefly, which is better than dropping rows already taken.
        with self._lock:
            self._buffer.extendleft(reversed(batch))
            self._inflight = 0

    def _prepare(self, batch: list[LedgerRow | tuple[Any, ...]],
                 insert: BatchInsert) -> list[tuple[Any, ...]]:
        """Each row's values (`_values`), in place so that a retried batch keeps
        its row_ids, in one go: the thread writer's batch, in its thread, whose
        rows mostly arrive as values already (`record`)."""
        failed: list[int] = []
        try:
            self._convert(batch, insert, 0, len(batch), failed)
        finally:
            _drop_rows(batch, failed)
        return typing.cast(list[tuple[Any, ...]], batch)

    async def _prepare_between_turns(self, batch: list[LedgerRow | tuple[Any, ...]],
                                     insert: BatchInsert) -> list[tuple[Any, ...]]:
        """`_prepare` for a child writer, whose rows are read here, on the event
        loop, `ROWS_PER_TURN` at a time: a 200-row batch read in one go held the
        loop for 1.5-1.8 ms on a slow host (docs/benchmarks.md, "Runs 62-63"), and
        every request in flight waited that long."""
        failed: list[int] = []
        try:
            for start in range(0, len(batch), ROWS_PER_TURN):
                if start:
                    await asyncio.sleep(0)
                self._convert(batch, insert, start, start + ROWS_PER_TURN, failed)
        finally:
            # Also when cancelled between slices: a row that failed is dropped and
            # counted once, not again when the batch is put back.
            _drop_rows(batch, failed)
        return typing.cast(list[tuple[Any, ...]], batch)

    def _convert(self, batch: list[LedgerRow | tuple[Any, ...]], insert: BatchInsert,
                 start: int, stop: int, failed: list[int]) -> None:
        """Rows `start` to `stop` of `batch` read into their values in place; the
        index of a row that cannot be read goes to `failed`."""
        for index in range(start, min(stop, len(batch))):
            item = batch[index]
            if isinstance(item, tuple):
                continue
            try:
                batch[index] = self._values(item, insert)
            except Exception:  # a malformed row must not block the ones behind it
                self._drop_malformed()
                failed.append(index)

    def _values(self, row: LedgerRow, insert: BatchInsert) -> tuple[Any, ...]:
        """The row's values in the INSERT's column order, with a new row_id: as
        the row holds them for the child writer, which converts them itself (its
        datetimes and Decimals as text, `Wire`); converted to what the driver
        stores for the thread writer.

        The thread writer's rows are converted here, on the event loop, because
        that Python work holds the GIL wherever it runs, and in the writer's
        thread it made the thread and the loop trade the GIL back and forth all
        through a batch; the thread is left with the driver's work, most of
        which runs without the GIL. A child has a GIL of its own, and the
        conversion (about 9 us a row) leaves the loop."""
        if self._columns is None:
            self._columns = _ColumnGetter(insert.names)
        values = self._columns.values(row, f"{self._row_prefix}{next(self._row_serial):016x}",
                                      keep_payloads=self.settings.log_payloads)
        return (self._columns.wire.portable(values) if self._process is not None
                else insert.convert(values))

    def _insert_for(self, engine: Engine) -> BatchInsert:
        if self._insert is None:
            self._insert = BatchInsert(engine.dialect, self.tables.requests)
        return self._insert

    def _write(self, batch: list[LedgerRow | tuple[Any, ...]]) -> None:
        engine = self._get_engine()
        insert = self._insert_for(engine)
        rows = self._prepare(batch, insert)
        if not rows:
            return
        if not self._migrated:
            self._migrate()
        refused = insert.write(engine, rows)
        if refused:
            # Only the rows written stay in the batch (the caller counts them).
            for index, _ in reversed(refused):
                del batch[index]
            self._count_dropped(Dropped(len(refused), failure_said(refused[0][1])))

    async def _run(self) -> None:
        backoff = self.settings.retry_initial
        while not self._stopping:
            if not self._buffer:
                await self._sleep(self.settings.flush_interval)
                continue
            batch = self._take()
            self._inflight = len(batch)
            try:
                written = await self._write_batch(batch)
            except asyncio.CancelledError:
                # The thread or the child may still commit; row_id makes a later
                # retry harmless.
                self._put_back(batch)
                raise
            except Exception as exc:
                self._put_back(batch)
                self.write_failures += 1
                self._tell_failure(exc)
                await self._back_off(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.settings.retry_max)
                continue
            self.written += written
            self._inflight = 0
            ended = self._outage.succeeded()
            if ended is not None:
                log.info("ledger writes succeed again, after %d failed tries in %.0f s; "
                         "%d rows waiting", ended.failures, ended.seconds, self.pending)
            backoff = self.settings.retry_initial
            if len(self._buffer) < self.settings.batch_size and not self._closing:
                await self._sleep(self.settings.flush_interval)

    def _tell_failure(self, exc: Exception) -> None:
        """Say that a write failed: when failures begin, then at most once every
        `outage_log.INTERVAL` seconds (a retry every few seconds, in each worker,
        had a line each)."""
        unsaid = self._outage.failed()
        if unsaid is None:
            return
        # The reason each time: it may change in an outage (a password rotated).
        if unsaid == 0:
            log.warning("ledger write failed (%s); %d rows buffered, retrying at most "
                        "%g s apart; said again once a minute until writes succeed",
                        failure_said(exc), self.pending, self.settings.retry_max)
        else:
            log.warning("ledger writes still failing (%s): %d more tries failed; %d rows "
                        "waiting, %d dropped in all", failure_said(exc), unsaid,
                        self.pending, self.dropped)

    async def _write_batch(self, batch: list[LedgerRow | tuple[Any, ...]]) -> int:
        """Write `batch`; how many of its rows were written (the others could not
        be converted: dropped and counted)."""
        if self._process is None:
            await self._off_loop(self._write, batch)  # leaves only the rows written
            return len(batch)
        if not self._migrated:
            await self._off_loop(self._migrate)
        insert = self._insert_for(self._get_engine())
        rows = await self._prepare_between_turns(batch, insert)
        if not rows:
            return 0
        try:
            # Behind: more than a batch still waits, so the child must not idle.
            dropped = await self._process.write(
                rows, self._wire(), behind=len(self._buffer) >= self.settings.batch_size)
        except WriterProcessUnavailable:
            # The child cannot run here at all: the rows still have to be written.
            log.warning("ledger: the writer process could not start; writing from a "
                        "thread instead")
            process = self._leave_the_child(batch, insert)
            await process.aclose()
            await self._off_loop(self._write, batch)
            return len(batch)
        self._count_dropped(dropped)
        return len(rows) - dropped.rows

    def _wire(self) -> Wire:
        # Set with the first row's values, which every row sent has been through.
        return self._columns.wire if self._columns is not None else Wire()

    def _leave_the_child(self, batch: list[LedgerRow | tuple[Any, ...]],
                         insert: BatchInsert) -> ProcessWriter:
        """Hand the rows to the thread writer, which takes them converted: the
        batch's and the buffer's, read for the child, are converted now (no await
        between this and the next row recorded)."""
        assert self._process is not None
        process, self._process = self._process, None
        with self._lock:
            batch[:] = self._converted_for_thread(batch, insert)
            self._buffer = deque(self._converted_for_thread(self._buffer, insert))
        return process

    def _converted_for_thread(self, items: Iterable[LedgerRow | tuple[Any, ...]],
                              insert: BatchInsert) -> list[LedgerRow | tuple[Any, ...]]:
        out: list[LedgerRow | tuple[Any, ...]] = []
        wire = self._wire()
        for item in items:
            if isinstance(item, tuple):  # values read for the child
                try:
                    item = insert.convert(wire.restored(item))
                except Exception as exc:
                    self._count_dropped(Dropped(1, type(exc).__name__))
                    continue
            out.append(item)
        return out

    def _drop_malformed(self) -> None:
        """Count a row that could not be read into its columns, logged with its
        traceback: unlike a value the database refuses (`_count_dropped`), that
        is a bug before the ledger, and where it happened is what tells."""
        log.exception("ledger row could not be prepared; dropped")
        self.dropped += 1

    def _count_dropped(self, dropped: Dropped) -> None:
        if dropped.rows:
            self.dropped += dropped.rows
            log.warning("ledger: %d rows could not be stored; dropped (%s)",
                        dropped.rows, dropped.reason)

    async def _off_loop(self, work: Callable[..., None], *args: Any) -> None:
        try:
            await asyncio.to_thread(work, *args)
        except RuntimeError:
            # A program ending without closing the library's Router closes it from
            # an exit hook, after Python has shut its thread pools ("cannot schedule
            # new futures after shutdown"): the last flush runs on this thread.
            if not self._closing:
                raise
            work(*args)

    async def _back_off(self, seconds: float) -> None:
        """Wait out a retry's backoff. A flush pokes the writer every 10 ms (at
        close, for close_timeout), which must not cut it short: each retry at
        once logged its warning, a flood. Only stopping ends it early."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await self._sleep(left)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()


def _drop_rows(batch: list[Any], indexes: list[int]) -> None:
    """Remove the rows at `indexes` (ascending) from `batch`."""
    for index in reversed(indexes):
        del batch[index]
