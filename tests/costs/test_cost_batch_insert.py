"""The ledger's compiled INSERT on SQLite and PostgreSQL: every value comes back
as written (timestamps in UTC, money to the nano-dollar), and a batch written
again after a lost commit acknowledgement adds nothing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from interlock.costs import batch_insert
from interlock.costs.batch_insert import BatchInsert
from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.schema import LedgerTables, ledger_tables, make_engine, migrate
from interlock.costs.settings import LedgerSettings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, table prefix); PostgreSQL tables get a fresh prefix and are dropped after."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.sqlite"), "interlock_"
        return
    url = request.getfixturevalue("postgres_url")
    prefix = f"t_{uuid.uuid4().hex[:10]}_"
    yield url, prefix
    engine = make_engine(url)
    with contextlib.suppress(Exception):
        ledger_tables(prefix).metadata.drop_all(engine)
    engine.dispose()


def _rows() -> list[LedgerRow]:
    paris = timezone(timedelta(hours=1))
    return [
        LedgerRow(request_id="req-full", requested_model="auto", api_key_id="team-a",
                  router="mf", routed_group="budget", route_score=0.25, deployment="lite",
                  provider="gemini", model="gemini-2.0-flash-lite", status="error",
                  error_class="RateLimited", attempts=3, fallbacks=1, input_tokens=120,
                  cached_input_tokens=40, output_tokens=50, reasoning_tokens=7,
                  cost_usd=Decimal("0.000022501"), latency_ms=12.5, ttft_ms=3.25, stream=True,
                  created_at=datetime(2026, 3, 4, 13, 0, 0, 123456, tzinfo=paris)),
        LedgerRow(request_id="req-sparse", created_at=datetime(2026, 3, 4, 12, 0, tzinfo=UTC)),
    ]


def _read(engine: Engine, tables: LedgerTables) -> list[dict[str, object]]:
    with engine.connect() as conn:
        result = conn.execute(sa.select(tables.requests).order_by(tables.requests.c.request_id))
        return [dict(r) for r in result.mappings()]


def test_values_round_trip_and_a_rewritten_batch_adds_nothing(
        database: tuple[str, str]) -> None:
    url, prefix = database
    ledger = Ledger(LedgerSettings(database=url, table_prefix=prefix))
    batch: list[LedgerRow | dict[str, object]] = list(_rows())
    ledger._write(batch)  # the writer thread's call, made directly
    ledger._write(batch)  # a retry after a lost acknowledgement: same row_ids
    engine = ledger._get_engine()
    try:
        got = _read(engine, ledger.tables)
    finally:
        engine.dispose()
    assert [r["request_id"] for r in got] == ["req-full", "req-sparse"]
    full, sparse = got
    assert full["created_at"] == datetime(2026, 3, 4, 12, 0, 0, 123456, tzinfo=UTC)
    assert full["cost_nanousd"] == Decimal("0.000022501")
    expected = _rows()[0]
    for name in ("api_key_id", "requested_model", "router", "routed_group", "route_score",
                 "deployment", "provider", "model", "status", "error_class", "attempts",
                 "fallbacks", "input_tokens", "cached_input_tokens", "output_tokens",
                 "reasoning_tokens", "latency_ms", "ttft_ms", "stream"):
        assert full[name] == getattr(expected, name), name
    assert sparse["cost_nanousd"] is None and sparse["stream"] is False
    assert sparse["status"] == "ok" and sparse["attempts"] == 1 and sparse["input_tokens"] == 0
    assert len({r["row_id"] for r in got}) == 2


def test_a_row_missing_columns_gets_their_defaults(database: tuple[str, str]) -> None:
    url, prefix = database
    tables = ledger_tables(prefix)
    engine = make_engine(url)
    try:
        migrate(engine, tables)
        insert = BatchInsert(engine.dialect, tables.requests)
        with engine.begin() as conn:
            insert.execute(conn, [{"row_id": "r1", "request_id": "x", "status": "ok",
                                   "created_at": datetime(2026, 1, 1, tzinfo=UTC)}])
        (row,) = _read(engine, tables)
    finally:
        engine.dispose()
    assert row["attempts"] == 0 and row["stream"] is False and row["prompt"] is None


def test_rows_of_many_shapes_round_trip_in_order_past_the_shape_bound(tmp_path: Path) -> None:
    """On SQLite a batch's INSERT names only the columns some row of it fills,
    one statement per set of columns up to MAX_SHAPES; batches past the bound
    still go in, through the statement that binds NULLs. Rows keep their order."""
    url = str(tmp_path / "ledger.sqlite")
    tables = ledger_tables()
    engine = make_engine(url)
    optional = ["api_key_id", "router", "routed_group", "deployment", "provider", "model",
                "error_class", "ttft_ms"]
    rows: list[dict[str, object]] = []
    for n in range(2 ** len(optional)):  # 256 shapes, more than MAX_SHAPES
        row: dict[str, object] = {"row_id": f"r{n:03d}", "request_id": f"q{n:03d}",
                                  "status": "ok", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
        for bit, name in enumerate(optional):
            row[name] = (1.5 if name == "ttft_ms" else f"{name}-{n}") if n >> bit & 1 else None
        rows.append(row)
    try:
        migrate(engine, tables)
        insert = BatchInsert(engine.dialect, tables.requests)
        with engine.begin() as conn:
            for start in range(0, 200, 2):  # batches of two rows: many shapes
                insert.execute(conn, rows[start:start + 2])
            insert.execute(conn, rows[200:][::-1])  # one batch of mixed rows, in reverse
        got = _read_in_insert_order(engine, tables)
    finally:
        engine.dispose()
    assert len(insert._shapes) == batch_insert.MAX_SHAPES
    expected = rows[:200] + rows[200:][::-1]
    assert [r["request_id"] for r in got] == [r["request_id"] for r in expected]
    for want, have in zip(expected, got, strict=True):
        assert {k: have[k] for k in optional} == {k: want[k] for k in optional}


def _read_in_insert_order(engine: Engine, tables: LedgerTables) -> list[dict[str, object]]:
    with engine.connect() as conn:
        result = conn.execute(sa.select(tables.requests).order_by(tables.requests.c.id))
        return [dict(r) for r in result.mappings()]


def test_sqlite_timestamps_are_stored_as_sqlalchemy_writes_them(tmp_path: Path) -> None:
    """The ledger's own timestamp text on SQLite is byte for byte SQLAlchemy's
    DATETIME text, so rows written before and after compare and sort alike."""
    url = str(tmp_path / "ledger.sqlite")
    engine = make_engine(url)
    tables = ledger_tables()
    plain = sa.DateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
    assert plain is not None
    minus5 = timezone(timedelta(hours=-5))
    stamps = [datetime(2026, 11, 26, 12, 0, tzinfo=UTC),  # microsecond 0 still written
              datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a year below 1000, padded
              datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=minus5)]  # a new year in UTC
    try:
        migrate(engine, tables)
        insert = BatchInsert(engine.dialect, tables.requests)
        with engine.begin() as conn:
            insert.execute(conn, [{"row_id": f"r{i}", "request_id": f"q{i}", "status": "ok",
                                   "created_at": s} for i, s in enumerate(stamps)])
            stored = conn.exec_driver_sql(
                f"SELECT created_at FROM {tables.requests.name} ORDER BY request_id").all()
        back = [r["created_at"] for r in _read(engine, tables)]
    finally:
        engine.dispose()
    assert [r[0] for r in stored] == [
        plain(s.astimezone(UTC).replace(tzinfo=None)) for s in stamps]
    assert back == [s.astimezone(UTC) for s in stamps]


def test_a_large_sqlite_batch_goes_in_multi_row_statements_in_order(tmp_path: Path) -> None:
    """A batch is cut into INSERTs of CHUNKS rows (one sqlite3 step each, so the
    writer thread gives the GIL up a few times a batch, not twice a row); the rows
    keep their order and a rewritten batch still adds nothing."""
    url = str(tmp_path / "ledger.sqlite")
    tables = ledger_tables()
    engine = make_engine(url)
    rows = [{"row_id": f"r{n:03d}", "request_id": f"q{n:03d}", "status": "ok",
             "created_at": datetime(2026, 1, 1, tzinfo=UTC), "input_tokens": n}
            for n in range(301)]
    try:
        migrate(engine, tables)
        insert = BatchInsert(engine.dialect, tables.requests)
        with engine.begin() as conn:
            insert.execute(conn, rows)
            insert.execute(conn, rows[::-1])  # a retry: every row_id is stored already
        got = _read_in_insert_order(engine, tables)
    finally:
        engine.dispose()
    assert [r["request_id"] for r in got] == [r["request_id"] for r in rows]
    assert [r["input_tokens"] for r in got] == list(range(301))
    # 301 = 128 + 128 + 32 + 8 + 5 x 1
    assert sorted(size for _, size in insert._multi) == [8, 32, 128]


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "child-process"])
async def test_a_value_the_database_refuses_costs_only_its_own_row(
        database: tuple[str, str], in_process: bool) -> None:
    # A client's model name longer than its column is cut to fit, a NUL in it
    # (PostgreSQL takes none) and a lone surrogate (no UTF-8 encoder takes one; a
    # library caller's string can hold it) replaced; a token count no INTEGER holds is refused
    # by the database: that row alone is dropped and counted, and the rows around
    # it are written, not retried behind it forever.
    url, prefix = database
    ledger = Ledger(LedgerSettings(database=url, table_prefix=prefix, flush_interval=0.01,
                                   retry_initial=0.05, retry_max=0.2), in_process=in_process)
    await ledger.start()
    for row in (LedgerRow("first", requested_model="m" * 300),
                LedgerRow("refused", input_tokens=2**63),
                LedgerRow("nul", requested_model="a\x00b"),
                LedgerRow("surrogate", requested_model="c\ud800d"),
                LedgerRow("last", output_tokens=7)):
        ledger.record(row)
    assert await ledger.flush(60)  # a child process starting on a loaded machine
    await ledger.aclose()
    assert (ledger.written, ledger.dropped, ledger.write_failures) == (4, 1, 0)
    engine = make_engine(url)
    rows = _read(engine, ledger.tables)
    engine.dispose()
    assert [r["request_id"] for r in rows] == ["first", "last", "nul", "surrogate"]
    assert rows[0]["requested_model"] == "m" * 256 and rows[1]["output_tokens"] == 7
    # SQLite keeps a NUL; PostgreSQL gets the replacement character in its place.
    assert rows[2]["requested_model"] == ("a\ufffdb" if url.startswith("postgresql")
                                          else "a\x00b")
    assert rows[3]["requested_model"] == "c\ufffd\ufffd\ufffdd"
