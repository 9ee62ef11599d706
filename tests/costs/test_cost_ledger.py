"""The SQLite ledger: round trip, migrations, buffering while the database is down."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.queries import LedgerReader
from interlock.costs.schema import ledger_tables, make_engine, migrate, migrations
from interlock.costs.settings import LedgerSettings
from interlock.outage_log import OutageLog


def _row(i: int, **kw: object) -> LedgerRow:
    values: dict[str, object] = dict(
        request_id=f"req-{i}", requested_model="auto", routed_group="budget",
        deployment="flash-lite", provider="gemini", model="gemini-2.0-flash-lite",
        input_tokens=100 + i, output_tokens=50, cost_usd=Decimal("0.000022500") + i,
        latency_ms=12.5, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        prompt="secret prompt", response="secret answer",
    )
    values.update(kw)
    return LedgerRow(**values)  # type: ignore[arg-type]


IN_PROCESS = pytest.mark.parametrize("in_process", [False, True],
                                     ids=["thread", "child-process"])


@IN_PROCESS
async def test_round_trip_keeps_every_field(tmp_path: Path, in_process: bool) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01), in_process=in_process)
    await ledger.start()
    row = _row(1, api_key_id="team-a", router="mf", route_score=0.42, status="error",
               error_class="RateLimited", attempts=3, fallbacks=1, cached_input_tokens=40,
               reasoning_tokens=7, ttft_ms=3.5, stream=True, web_searches=2,
               service_tier="flex")
    ledger.record(row)
    assert await ledger.flush(5)
    await ledger.aclose()

    engine = make_engine(db)
    with engine.connect() as conn:
        got = conn.execute(sa.select(ledger.tables.requests)).mappings().one()
    engine.dispose()
    assert got["created_at"] == row.created_at
    assert got["cost_nanousd"] == Decimal("1.000022500")
    for name in ("request_id", "api_key_id", "requested_model", "router", "routed_group",
                 "route_score", "deployment", "provider", "model", "status", "error_class",
                 "attempts", "fallbacks", "input_tokens", "cached_input_tokens",
                 "output_tokens", "reasoning_tokens", "latency_ms", "ttft_ms", "stream",
                 "web_searches", "service_tier"):
        assert got[name] == getattr(row, name), name
    # Payloads are never stored unless log_payloads is on.
    assert got["prompt"] is None and got["response"] is None
    assert ledger.dropped == 0


async def test_payloads_stored_only_when_asked(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, log_payloads=True, flush_interval=0.01))
    await ledger.start()
    ledger.record(_row(1))
    await ledger.aclose()
    with LedgerReader(db) as reader, reader.engine.connect() as conn:
        prompt, response = conn.execute(sa.select(reader.t.c.prompt, reader.t.c.response)).one()
    assert (prompt, response) == ("secret prompt", "secret answer")


def test_migrations_are_named_ordered_and_idempotent(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "m.sqlite"))
    tables = ledger_tables("t_")
    names = [name for name, _ in migrations()]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert migrate(engine, tables) == names
    assert migrate(engine, tables) == []
    with engine.connect() as conn:
        recorded = [r[0] for r in conn.execute(sa.select(tables.migrations.c.name))]
    assert sorted(recorded) == names
    inspector = sa.inspect(engine)
    assert inspector.has_table("t_requests")
    assert {ix["name"] for ix in inspector.get_indexes("t_requests")} >= {
        "ix_t_requests_created_at", "ix_t_requests_routed_group"}
    engine.dispose()


@IN_PROCESS
async def test_many_rows_batched_none_dropped(tmp_path: Path, in_process: bool) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, batch_size=100, flush_interval=0.01),
                    in_process=in_process)
    await ledger.start()
    for i in range(3_000):
        ledger.record(_row(i))
        if i % 500 == 0:
            await asyncio.sleep(0)
    await ledger.aclose()
    assert ledger.dropped == 0 and ledger.pending == 0
    with LedgerReader(db) as reader:
        assert reader.count() == 3_000
        [line] = reader.spend("group")
    assert line.requests == 3_000
    assert line.cost_usd == sum((Decimal("0.0000225") + i for i in range(3_000)), Decimal(0))


def test_rows_left_by_an_ended_event_loop_are_written_without_one(tmp_path: Path) -> None:
    # asyncio.run cancels the writer task on its way out; the rows stay buffered,
    # and write_pending (the library's exit hook) writes them with no loop at all.
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, batch_size=100, flush_interval=60))

    async def serve_briefly() -> None:
        await ledger.start()
        for i in range(250):
            ledger.record(_row(i))

    asyncio.run(serve_briefly())
    assert ledger.pending == 250  # the writer was cancelled before its flush
    assert ledger.write_pending() and ledger.pending == 0 and ledger.written == 250
    with LedgerReader(db) as reader:
        assert reader.count() == 250


async def test_concurrent_first_starts_make_one_writer(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A library user's first calls often arrive together (asyncio.gather): each
    # starts the ledger. They used to start a writer each and migrate the schema
    # in several threads at once, which failed and logged "unavailable".
    ledger = Ledger(LedgerSettings(database=str(tmp_path / "l.sqlite")))
    await asyncio.gather(*(ledger.start() for _ in range(8)))
    writers = [t for t in asyncio.all_tasks() if t.get_name() == "interlock-ledger-writer"]
    assert len(writers) == 1
    for i in range(20):
        ledger.record(LedgerRow(request_id=f"r{i}"))
    assert await ledger.flush(5)
    await ledger.aclose()
    assert "unavailable" not in caplog.text
    with sqlite3.connect(tmp_path / "l.sqlite") as db:
        assert db.execute("SELECT count(*) FROM interlock_requests").fetchone()[0] == 20


async def test_record_never_raises_and_counts_drops_when_full(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ledger = Ledger(LedgerSettings(database=str(tmp_path / "x.sqlite"), max_buffer=100))
    now = [0.0]
    ledger._overflow = OutageLog(interval=60, clock=lambda: now[0])
    # Not started: rows wait in the buffer; past max_buffer they are dropped, counted,
    # and said in the log at the first drop, then at most once an interval.
    with caplog.at_level(logging.WARNING, logger="interlock.costs.ledger"):
        for i in range(150):
            ledger.record(_row(i))
        assert ledger.pending == 100 and ledger.dropped == 50
        assert [r.getMessage() for r in caplog.records] == [
            "ledger buffer full (100 rows waiting for the database): 1 rows dropped since "
            "the last warning, 1 in all; raise ledger.max_buffer or bring the database back"]
        now[0] = 60.0
        ledger.record(_row(150))
    assert "50 rows dropped since the last warning, 51 in all" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 2 and ledger.stats()["dropped"] == 51


@IN_PROCESS
async def test_a_malformed_row_is_dropped_and_does_not_block_others(
        tmp_path: Path, in_process: bool, caplog: pytest.LogCaptureFixture) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01), in_process=in_process)
    await ledger.start()
    bad = _row(0)
    bad.created_at = "not a date"  # type: ignore[assignment]
    ledger.record(bad)  # does not raise on the request path
    for i in range(1, 4):
        ledger.record(_row(i))
    assert await ledger.flush(5)
    await ledger.aclose()
    assert ledger.dropped == 1 and ledger.written == 3
    assert "could not be prepared; dropped" in caplog.text
    with LedgerReader(db) as reader:
        assert reader.count() == 3


class _Switch:
    """A SQLite connection factory that can be made to fail, like a database going away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.down = False
        self.refused = 0

    def connect(self) -> sqlite3.Connection:
        if self.down:
            self.refused += 1
            raise sqlite3.OperationalError("unable to open database file (switched off)")
        return sqlite3.connect(self.path, check_same_thread=False)


async def test_rows_buffered_while_database_down_then_flushed(tmp_path: Path) -> None:
    switch = _Switch(tmp_path / "ledger.sqlite")
    engine = sa.create_engine("sqlite://", creator=switch.connect, poolclass=NullPool)
    settings = LedgerSettings(database="sqlite://", flush_interval=0.01, batch_size=10,
                              retry_initial=0.02, retry_max=0.1)
    switch.down = True
    ledger = Ledger(settings, engine=engine)
    await ledger.start()  # the database is down at start-up: no exception
    for i in range(50):
        ledger.record(_row(i))
    await asyncio.sleep(0.3)
    assert ledger.pending == 50 and ledger.write_failures >= 2 and switch.refused >= 2

    switch.down = False
    assert await ledger.flush(5)
    for i in range(50, 60):
        ledger.record(_row(i))
    await ledger.aclose()
    assert ledger.dropped == 0
    with LedgerReader("sqlite://", engine=engine) as reader:
        assert reader.count() == 60
        ids = {r.request_id for r in _all(reader)}
    assert ids == {f"req-{i}" for i in range(60)}


def _ledger_of_a_database_down(tmp_path: Path, **settings: float) -> tuple[_Switch, Ledger]:
    """A ledger (not started) on a SQLite database switched off for now."""
    switch = _Switch(tmp_path / "ledger.sqlite")
    switch.down = True
    engine = sa.create_engine("sqlite://", creator=switch.connect, poolclass=NullPool)
    return switch, Ledger(LedgerSettings(database="sqlite://", flush_interval=0.01, **settings),
                          engine=engine)


async def test_closing_during_a_database_outage_keeps_the_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Closing flushes, which pokes the writer every 10 ms: each poke ended the
    # backoff, and each retry logged a warning, ~100 lines a second for close_timeout.
    _, ledger = _ledger_of_a_database_down(tmp_path, retry_initial=30, retry_max=30,
                                           close_timeout=0.3)
    await ledger.start()
    ledger.record(_row(1))
    with caplog.at_level(logging.WARNING, logger="interlock.costs.ledger"):
        await ledger.aclose()
    assert caplog.text.count("ledger write failed") == 1  # then the backoff of 15-30 s
    assert "ledger closed with 1 rows not written: those rows are lost" in caplog.text


async def test_an_outage_is_told_when_it_begins_and_when_writes_succeed_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Every retry said "ledger write failed", a dozen lines a minute a worker, and
    # nothing said when the writes went through again.
    switch, ledger = _ledger_of_a_database_down(tmp_path, retry_initial=0.01, retry_max=0.02)
    with caplog.at_level(logging.INFO, logger="interlock.costs.ledger"):
        await ledger.start()
        ledger.record(_row(1))
        for _ in range(1000):  # until five retries have failed
            if ledger.write_failures >= 5:
                break
            await asyncio.sleep(0.01)
        assert ledger.write_failures >= 5
        switch.down = False
        assert await ledger.flush(5)
        await ledger.aclose()
    assert caplog.text.count("ledger write failed") == 1
    assert "still failing" not in caplog.text  # once a minute, and this took less
    assert caplog.text.count("ledger writes succeed again, after") == 1
    assert ledger.written == 1


def test_each_line_of_an_outage_says_why_in_its_own_words(
        caplog: pytest.LogCaptureFixture) -> None:
    # Only the first line said why; a password rotated during the outage never
    # showed, and the driver's message may quote the URL's password.
    ledger = Ledger(LedgerSettings(database=None))
    ledger._outage = OutageLog(interval=0)
    with caplog.at_level(logging.WARNING, logger="interlock.costs.ledger"):
        ledger._tell_failure(OSError("connection refused"))
        ledger._tell_failure(OSError(
            "password authentication failed for postgresql://u:hunter2hunter2@db/x"))
    said = [r.getMessage() for r in caplog.records]
    assert "connection refused" in said[0]
    assert "still failing (OSError: password authentication failed" in said[1]
    assert "hunter2hunter2" not in caplog.text
    # Cut after redacting: a URL across the 200th character kept its password's start.
    from interlock.errors import failure_said

    assert "S3cre" not in failure_said(
        OSError("x" * 170 + " dsn postgresql://ledger:S3cretPassw0rd@db:5432/x"))


def _all(reader: LedgerReader) -> list[sa.Row[tuple[str]]]:
    with reader.engine.connect() as conn:
        return list(conn.execute(sa.select(reader.t.c.request_id)))


async def test_spend_summaries(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01))
    await ledger.start()
    day1 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    day2 = day1 + timedelta(hours=2)
    ledger.record(_row(1, created_at=day1, cost_usd=Decimal("0.5"), routed_group="hq",
                       deployment="sonnet", api_key_id="k1"))
    ledger.record(_row(2, created_at=day2, cost_usd=Decimal("0.25"), routed_group="hq",
                       deployment="sonnet", api_key_id="k2"))
    ledger.record(_row(3, created_at=day2, cost_usd=None, routed_group="cheap",
                       deployment="local", status="error", api_key_id=None))
    await ledger.aclose()
    with LedgerReader(db) as reader:
        by_day = {line.key: line for line in reader.spend("day")}
        by_group = {line.key: line for line in reader.spend("group")}
        by_key = {line.key: line for line in reader.spend("key")}
        since = {line.key: line for line in reader.spend("group", since=day2)}
    assert set(by_day) == {"2026-03-01", "2026-03-02"}
    assert by_day["2026-03-01"].cost_usd == Decimal("0.5")
    assert by_day["2026-03-02"].cost_usd == Decimal("0.25")
    assert by_day["2026-03-02"].unpriced == 1
    assert by_group["hq"].requests == 2 and by_group["hq"].cost_usd == Decimal("0.75")
    assert by_group["cheap"].errors == 1 and by_group["cheap"].cost_usd == 0
    assert set(by_key) == {"k1", "k2", "(none)"}
    assert since["hq"].cost_usd == Decimal("0.25")


@pytest.mark.parametrize("when", [datetime(2026, 1, 1, 12, 0)])
async def test_naive_timestamps_are_taken_as_utc(tmp_path: Path, when: datetime) -> None:
    db = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01))
    await ledger.start()
    ledger.record(_row(1, created_at=when))
    await ledger.aclose()
    with LedgerReader(db) as reader, reader.engine.connect() as conn:
        got = conn.execute(sa.select(reader.t.c.created_at)).scalar_one()
    assert got == when.replace(tzinfo=UTC)


def test_a_ledger_from_before_0003_gains_its_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    # (and 0004's and 0005's: a ledger from before 0003 predates them too)
    db = str(tmp_path / "old.sqlite")
    engine = make_engine(db)
    tables = ledger_tables()
    # The requests table as 0001 created it before web searches and tiers were kept.
    old = sa.MetaData()
    sa.Table(tables.requests.name, old,
             *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
               for c in tables.requests.columns
               if c.name not in ("web_searches", "service_tier", "usage_estimated", "end_user")))
    old.create_all(engine)
    tables.migrations.create(engine)
    with engine.begin() as conn:
        for name in ("0001_create_requests", "0002_indexes"):
            conn.execute(tables.migrations.insert().values(name=name,
                                                           applied_at=datetime.now(UTC)))
        conn.execute(sa.text(
            f"INSERT INTO {tables.requests.name} (row_id, created_at, request_id, status, "
            "attempts, fallbacks, input_tokens, cached_input_tokens, output_tokens, "
            "reasoning_tokens, stream) VALUES ('r1', '2026-01-02 03:04:05.000000', 'req-1', "
            "'ok', 1, 0, 10, 0, 5, 0, 0)"))
    # A reader does not migrate, and still replays the old rows (no searches).
    with LedgerReader(db) as reader:
        assert [(r.web_searches, r.service_tier) for r in reader.usage()] == [(0, None)]
        assert [line.web_searches for line in reader.spend("group")] == [0]
        assert [line.key for line in reader.spend("tier")] == ["(none)"]
        assert [line.key for line in reader.spend("user")] == ["(none)"]
    assert migrate(engine, tables) == ["0003_searches_and_tier", "0004_usage_estimated",
                                       "0005_end_user", "0006_keys", "0007_key_budgets"]
    with engine.connect() as conn:
        got = conn.execute(sa.select(tables.requests.c.web_searches,
                                     tables.requests.c.service_tier,
                                     tables.requests.c.usage_estimated,
                                     tables.requests.c.end_user)).one()
    assert tuple(got) == (0, None, False, None)
    engine.dispose()
