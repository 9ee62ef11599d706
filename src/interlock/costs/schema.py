"""The ledger's tables and the named, ordered migrations that create them.

Every table name starts with a prefix (`interlock_` by default), so a test can
use a fresh set of tables in a shared database and drop them after. Costs are
stored as whole nano-dollars (BigInteger) so that sums in SQL stay exact on
SQLite, which has no decimal type; `Money` converts to and from `Decimal`.

Imports: sqlalchemy, the standard library, `costs.usd`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine

from interlock.costs.usd import NANO

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "interlock_"


class Money(sa.types.TypeDecorator[Decimal]):
    """USD as a Decimal in Python, whole nano-dollars in the database."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int((Decimal(value) / NANO).to_integral_value(ROUND_HALF_EVEN))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)) * NANO


# SQLAlchemy's default text for a SQLite DATETIME, which `isoformat(" ",
# "microseconds")` writes too (a test holds the two to the same output).
_ISO_WITH_MICROSECONDS = ("%(year)04d-%(month)02d-%(day)02d "
                          "%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d")


def _storage_format(impl: Any) -> str | None:
    return getattr(impl, "_storage_format", None)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps written in UTC and read back timezone-aware, on SQLite too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, the text SQLAlchemy's DATETIME would store, written by
        `isoformat`: one call per row instead of a replace and a %-format of a
        seven-key dict (about an eighth of the ledger writer's instructions per row)."""
        if dialect.name != "sqlite" or _storage_format(self.impl_instance.dialect_impl(
                dialect)) != _ISO_WITH_MICROSECONDS:
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("ledger timestamps must be timezone-aware (UTC)")
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            # "YYYY-MM-DD HH:MM:SS.ffffff+00:00", the year always four digits.
            return value.isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class LedgerTables:
    metadata: sa.MetaData
    requests: sa.Table
    migrations: sa.Table
    keys: sa.Table


def _id_column() -> sa.Column[int]:
    # SQLite makes an INTEGER PRIMARY KEY the rowid (autoincrementing); a BIGINT one not.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                     autoincrement=True)


def ledger_tables(prefix: str = DEFAULT_PREFIX) -> LedgerTables:
    """The table objects for one prefix (a fresh MetaData each time: no shared state)."""
    md = sa.MetaData()
    requests = sa.Table(
        f"{prefix}requests",
        md,
        _id_column(),
        # Made by the ledger when the row is recorded: retries after a lost
        # commit acknowledgement insert the same row_id and are ignored.
        sa.Column("row_id", sa.String(32), nullable=False, unique=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("api_key_id", sa.String(128)),
        sa.Column("requested_model", sa.String(256)),
        sa.Column("router", sa.String(128)),
        sa.Column("routed_group", sa.String(256)),
        sa.Column("route_score", sa.Float),
        sa.Column("deployment", sa.String(256)),
        sa.Column("provider", sa.String(64)),
        sa.Column("model", sa.String(256)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(128)),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("fallbacks", sa.Integer, nullable=False, default=0),
        sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
        sa.Column("cached_input_tokens", sa.Integer, nullable=False, default=0),
        sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False, default=0),
        sa.Column("cost_nanousd", Money()),
        # Web searches the provider billed for the call, and the service tier it
        # said it served the call at (both priced in cost_nanousd). Added by
        # 0003_searches_and_tier: a database that predates it gets them appended,
        # with a server default so its existing rows read 0.
        sa.Column("web_searches", sa.Integer, nullable=False, default=0,
                  server_default=sa.text("0")),
        sa.Column("service_tier", sa.String(32)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("stream", sa.Boolean, nullable=False, default=False),
        # True when the provider reported no usage (a stream cut before its usage
        # came) and the tokens and cost are Interlock's estimate. Added by
        # 0004_usage_estimated, as 0003's columns were.
        sa.Column("usage_estimated", sa.Boolean, nullable=False, default=False,
                  server_default=sa.false()),
        # The request's OpenAI `user`: the end user the client says it served
        # (for spend by customer). Added by 0005_end_user.
        sa.Column("end_user", sa.String(256)),
        sa.Column("prompt", sa.Text),
        sa.Column("response", sa.Text),
    )
    migrations = sa.Table(
        f"{prefix}migrations",
        md,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("applied_at", UtcDateTime(), nullable=False),
    )
    # Client keys made at run time (POST /key/generate; `key_store`). Added by 0006_keys.
    keys = sa.Table(
        f"{prefix}keys",
        md,
        _id_column(),
        # What the ledger records as api_key_id for the key's requests.
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        # SHA-256 of the key, in hex: the key itself is shown once and never stored.
        sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
        # The key's last characters, to tell keys apart in a listing.
        sa.Column("key_hint", sa.String(16), nullable=False),
        # A JSON list of the names it may ask for; NULL: all of them.
        sa.Column("models", sa.Text),
        sa.Column("rpm_limit", sa.Integer),
        sa.Column("tpm_limit", sa.Integer),
        sa.Column("max_parallel_requests", sa.Integer),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime()),
        # Added by 0007_key_budgets. Dollars as exact decimal text; NULL: no budget.
        sa.Column("max_budget_usd", sa.String(40)),
        # "day", "month" or a number of hours (`costs.settings.Budget.period`).
        sa.Column("budget_period", sa.String(32)),
    )
    return LedgerTables(md, requests, migrations, keys)


# --------------------------------------------------------------------------- migrations

Migration = Callable[[Connection, LedgerTables], None]


def _m0001_create_requests(conn: Connection, t: LedgerTables) -> None:
    t.requests.create(conn, checkfirst=True)


def _m0002_indexes(conn: Connection, t: LedgerTables) -> None:
    name = t.requests.name
    for column in ("created_at", "routed_group", "deployment", "api_key_id"):
        sa.Index(f"ix_{name}_{column}", t.requests.c[column]).create(conn, checkfirst=True)


def _add_missing_columns(conn: Connection, t: LedgerTables, columns: dict[str, str],
                         table: sa.Table | None = None) -> None:
    """ALTER TABLE ... ADD COLUMN for each of `columns` (name -> its type and
    default in SQL) that `table` (the requests table by default) lacks: a table
    created from today's definition has them already."""
    name = (t.requests if table is None else table).name
    have = {c["name"] for c in sa.inspect(conn).get_columns(name)}
    quoted = conn.dialect.identifier_preparer.quote(name)
    for column, definition in columns.items():
        if column not in have:
            conn.execute(sa.text(f"ALTER TABLE {quoted} ADD COLUMN {column} {definition}"))


def _m0003_searches_and_tier(conn: Connection, t: LedgerTables) -> None:
    _add_missing_columns(conn, t, {"web_searches": "INTEGER NOT NULL DEFAULT 0",
                                   "service_tier": "VARCHAR(32)"})


def _m0004_usage_estimated(conn: Connection, t: LedgerTables) -> None:
    # PostgreSQL's boolean takes false, SQLite's 0 (its older releases lack FALSE).
    false = "false" if conn.dialect.name == "postgresql" else "0"
    _add_missing_columns(conn, t, {"usage_estimated": f"BOOLEAN NOT NULL DEFAULT {false}"})


def _m0005_end_user(conn: Connection, t: LedgerTables) -> None:
    _add_missing_columns(conn, t, {"end_user": "VARCHAR(256)"})


def _m0006_keys(conn: Connection, t: LedgerTables) -> None:
    t.keys.create(conn, checkfirst=True)


def _m0007_key_budgets(conn: Connection, t: LedgerTables) -> None:
    _add_missing_columns(conn, t, {"max_budget_usd": "VARCHAR(40)",
                                   "budget_period": "VARCHAR(32)"}, t.keys)


def migrations() -> list[tuple[str, Migration]]:
    """In the order they apply; a name, once released, never changes meaning."""
    return [
        ("0001_create_requests", _m0001_create_requests),
        ("0002_indexes", _m0002_indexes),
        ("0003_searches_and_tier", _m0003_searches_and_tier),
        ("0004_usage_estimated", _m0004_usage_estimated),
        ("0005_end_user", _m0005_end_user),
        ("0006_keys", _m0006_keys),
        ("0007_key_budgets", _m0007_key_budgets),
    ]


def migrate(engine: Engine, tables: LedgerTables) -> list[str]:
    """Apply the migrations not yet applied; returns their names. Safe to run again."""
    with contextlib.suppress(sa.exc.IntegrityError, sa.exc.ProgrammingError):
        tables.migrations.create(engine, checkfirst=True)  # racing replicas: one wins
    done = _applied(engine, tables)
    applied: list[str] = []
    for name, step in migrations():
        if name in done:
            continue
        try:
            with engine.begin() as conn:
                step(conn, tables)
                conn.execute(tables.migrations.insert().values(
                    name=name, applied_at=datetime.now(UTC)))
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            # Another replica applied it between our read and our write.
            if name not in _applied(engine, tables):
                raise
            continue
        applied.append(name)
        log.info("ledger migration applied: %s", name)
    return applied


def _applied(engine: Engine, tables: LedgerTables) -> set[str]:
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(sa.select(tables.migrations.c.name))}


# --------------------------------------------------------------------------- engines


def database_url(database: str) -> str:
    """A SQLAlchemy URL from a URL or a plain SQLite file path."""
    if "://" in database:
        return database
    return f"sqlite:///{Path(database).expanduser().resolve()}"


def make_engine(database: str, *, connect_timeout: float = 5.0,
                create_dirs: bool = True) -> Engine:
    """An engine for a URL or a SQLite path; `create_dirs` makes a SQLite file's
    folder (the writer wants it, a reader must not leave folders behind)."""
    url = sa.make_url(database_url(database))
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        connect_args["timeout"] = connect_timeout
        if create_dirs and url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    elif url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, int(connect_timeout))
    # pre_ping notices connections the server dropped (restart, terminate) before use.
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        sa.event.listen(engine, "connect", _sqlite_wal)
    return engine


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL: readers (`interlock spend`) never block the
    writer, and a commit no longer waits for a full fsync, so the writer thread
    gives the event loop back sooner. A power cut can lose the last commits, not
    corrupt the file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
