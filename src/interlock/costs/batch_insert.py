"""The ledger's batched INSERT, compiled once per engine.

SQLAlchemy Core's executemany builds and converts every row's parameters in
Python (`construct_params` and the bind processors): about 25 us a row, held
under the GIL in the writer thread while the event loop waits for it, which
showed in the gateway's tail latency. Here the statement is compiled once, each
row is converted by the columns' own bind processors (so Money and UtcDateTime
still decide what is stored), and the driver receives the finished parameters
through `exec_driver_sql`: about 6 us a row.

On SQLite, NULLs are not bound where it can be helped: Python's sqlite3 module
sends every None through its adapter lookup, which formats and discards an
AttributeError each time (about 0.6 us a None where binding a whole row of
twelve values took 1.5 us, and a ledger row has seven or so empty columns). A
batch is inserted naming only the columns that some row of it fills, and the
table fills the rest with NULL. A few such sets of columns cover a whole
workload; past `MAX_SHAPES` of them the full statement binds the NULLs.

On SQLite, too, a batch goes in as a few multi-row INSERTs (`CHUNKS`) rather
than an executemany: see `_insert_chunks` for why.

Rows whose `row_id` is already stored are skipped on SQLite and PostgreSQL
(ON CONFLICT DO NOTHING), so a batch retried after a lost commit
acknowledgement is not written twice.

Imports: sqlalchemy, the standard library.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine


def _statement(dialect: Dialect, table: sa.Table) -> Any:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["row_id"])
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["row_id"])
    return sa.insert(table)


# What is raised for a row the database will never store, however often asked (a
# value out of range or of the wrong kind, a constraint), as opposed to a failure
# a retry may get past (the database away). Python's sqlite3 refuses an int past
# 64 bits itself, with an OverflowError SQLAlchemy does not wrap; a driver, text
# it cannot encode (which `_fitted` should leave none of).
REFUSED_ROWS = (sa.exc.DataError, sa.exc.IntegrityError, OverflowError, UnicodeError)

# Distinct sets of empty columns given their own INSERT; a bound on compiled
# statements kept, not on what can be written.
MAX_SHAPES = 64
# Rows per multi-row INSERT on SQLite, largest first; 128 rows of the ledger's
# ~20 columns stay far below SQLite's 32,766 bound variables.
CHUNKS = (128, 32, 8, 1)


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    return default.arg if isinstance(default, sa.ColumnDefault) and default.is_scalar else None


def _fitted(length: int | None, no_nul: bool,
            then: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A text made storable, then `then`: cut to its column's length; a lone
    surrogate (which no UTF-8 encoder takes, and a library caller's string may
    hold) replaced by U+FFFD; where `no_nul` (PostgreSQL), NUL characters too.
    Otherwise the database or its driver refuses the row, and a caller chooses
    what goes in some of these columns (the model name asked for; the prompt,
    with log_payloads): a refused row would be lost, and a request could keep
    itself out of the ledger."""
    def process(value: Any) -> Any:
        if value.__class__ is str:
            if length is not None and len(value) > length:
                value = value[:length]
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            if no_nul and "\x00" in value:
                value = value.replace("\x00", "\ufffd")
        return then(value) if then is not None else value
    return process


class BatchInsert:
    """INSERT of many rows into `table`, given as dicts keyed by column name or
    as values in `names` order; the autoincrement primary key is left to the
    database."""

    def __init__(self, dialect: Dialect, table: sa.Table) -> None:
        columns = {c.key: c for c in table.columns if not c.primary_key}
        self._dialect = dialect
        self._table = table
        sql, names = self._compile(list(columns))
        self.sql = sql
        self._positional = names is not None
        # A plain INSERT names each bind parameter after its column.
        names = names if names is not None else list(columns)
        missing = [n for n in names if n not in columns]
        if missing:
            raise RuntimeError(f"unexpected bind parameters in the ledger INSERT: {missing}")
        self._names = names
        # SQLite: an INSERT per set of columns a batch fills (see the module doc).
        self._skip_nulls = dialect.name == "sqlite" and self._positional
        self._shapes: dict[tuple[bool, ...], str] = {}
        self._multi: dict[tuple[str, int], str | None] = {}
        self._nones = (None,) * len(names)
        self._defaults = [_default(columns[n]) for n in names]
        self._get = operator.itemgetter(*names)
        # Only a few columns need converting (timestamps, money, booleans on
        # some drivers); the rest go to the driver as they are.
        self._convert: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            column_type = columns[name].type
            process: Callable[[Any], Any] | None = column_type.dialect_impl(
                dialect).bind_processor(dialect)
            if isinstance(column_type, sa.String):  # Text too
                process = _fitted(column_type.length, dialect.name == "postgresql", process)
            if process is not None:
                self._convert.append((index, process))

    @property
    def names(self) -> list[str]:
        """The columns in the order `convert` and `execute_converted` take their values."""
        return list(self._names)

    def convert(self, values: list[Any]) -> tuple[Any, ...]:
        """One row's values, in `names` order, as the driver stores them (the
        columns' bind processors applied). Raises on a value a column refuses."""
        for index, process in self._convert:
            if values[index] is not None:
                values[index] = process(values[index])
        return tuple(values)

    def convert_each(self, rows: Sequence[Sequence[Any]],
                     restore: Callable[[Sequence[Any]], list[Any]] = list,
                     ) -> tuple[list[tuple[Any, ...]], list[Exception]]:
        """`convert` for each of `rows`, each first made a list of its values by
        `restore` (a child writer's parses what travelled as text); a row that
        step or some column refuses is left out and its error returned, so that
        one bad row does not cost the others."""
        out: list[tuple[Any, ...]] = []
        errors: list[Exception] = []
        for values in rows:
            try:
                out.append(self.convert(restore(values)))
            except Exception as exc:
                errors.append(exc)
        return out, errors

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Converted values of `rows` (dicts keyed by column name), in `names` order."""
        out: list[tuple[Any, ...]] = []
        for row in rows:
            try:
                values = list(self._get(row))
            except KeyError:  # a row without some column: its default, as an INSERT would
                values = [row.get(n, d) for n, d in zip(self._names, self._defaults,
                                                        strict=True)]
            out.append(self.convert(values))
        return out

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        self.execute_converted(conn, self.parameters(rows))

    def write(self, engine: Engine, parameters: list[tuple[Any, ...]]
              ) -> list[tuple[int, Exception]]:
        """INSERT converted rows in one transaction. When the database refuses a
        value in it (out of range, say), the rows go again one transaction each
        and those refused are left out: (their index, the error) is returned. A
        refused value would otherwise fail its batch at every retry, and hold up
        every row behind it. Any other failure (the database away) raises, for
        the caller to retry the batch; rows already stored are then skipped by
        their row_id."""
        try:
            with engine.begin() as conn:
                self.execute_converted(conn, parameters)
            return []
        except REFUSED_ROWS:
            pass
        refused: list[tuple[int, Exception]] = []
        for index, row in enumerate(parameters):
            try:
                with engine.begin() as conn:
                    self.execute_converted(conn, [row])
            except REFUSED_ROWS as exc:
                refused.append((index, exc))
        return refused

    def execute_converted(self, conn: Connection, parameters: list[tuple[Any, ...]]) -> None:
        """INSERT rows already converted (`convert`, `parameters`)."""
        if not parameters:
            return
        if not self._positional:
            names = self._names
            conn.exec_driver_sql(self.sql, [dict(zip(names, values, strict=True))
                                            for values in parameters])
            return
        if not self._skip_nulls:
            conn.exec_driver_sql(self.sql, parameters)
            return
        # The columns some row of the batch gives a value for; the others are
        # left out of the INSERT. One statement per batch keeps the rows'
        # order (and so the autoincrement ids in the order rows were recorded).
        is_not, nones = operator.is_not, self._nones
        shape = tuple(map(any, zip(*[map(is_not, values, nones) for values in parameters],
                                   strict=True)))
        sql = self._sql_for(shape) if not all(shape) else None
        if sql is None:
            self._insert_chunks(conn, self.sql, parameters)
        else:
            compress = itertools.compress
            self._insert_chunks(conn, sql, [tuple(compress(values, shape))
                                            for values in parameters])

    def _insert_chunks(self, conn: Connection, sql: str,
                       parameters: list[tuple[Any, ...]]) -> None:
        """The rows in multi-row INSERTs of `CHUNKS` sizes, in order.

        Python's sqlite3 releases the GIL around every step of an executemany,
        once a row, and takes it back to bind the next: under load the writer
        thread and the event loop then trade the GIL twice a ledger row, each
        trade a forced switch. One statement of many rows steps once."""
        start, total = 0, len(parameters)
        while start < total:
            size = next(n for n in CHUNKS if n <= total - start)
            rows = parameters[start:start + size]
            multi = self._multi_row(sql, size) if size > 1 else None
            if multi is None:
                conn.exec_driver_sql(sql, rows)
            else:
                conn.exec_driver_sql(multi, tuple(itertools.chain.from_iterable(rows)))
            start += size

    def _multi_row(self, sql: str, rows: int) -> str | None:
        """`sql` inserting `rows` rows at once; None if its VALUES clause is not the
        single group of `?` placeholders this expects (then rows go one by one)."""
        key = (sql, rows)
        if key not in self._multi:
            head, found, rest = sql.partition(" VALUES (")
            group, closed, tail = rest.partition(")")
            usable = found and closed and set(group) <= set("?, ")
            self._multi[key] = (f"{head} VALUES " + ", ".join([f"({group})"] * rows) + tail
                                if usable else None)
        return self._multi[key]

    def _sql_for(self, shape: tuple[bool, ...]) -> str | None:
        sql = self._shapes.get(shape)
        if sql is None and len(self._shapes) < MAX_SHAPES:
            given = list(itertools.compress(self._names, shape))
            sql, names = self._compile(given)
            if names != given:  # the dialect reordered them: never seen, but then bind NULLs
                return None
            self._shapes[shape] = sql
        return sql

    def _compile(self, keys: list[str]) -> tuple[str, list[str] | None]:
        """SQL for an INSERT of these columns, and its bind order (None: named binds)."""
        compiled = _statement(self._dialect, self._table).compile(dialect=self._dialect,
                                                                  column_keys=keys)
        names = list(compiled.positiontup or ()) if compiled.positional else None
        return str(compiled), names
