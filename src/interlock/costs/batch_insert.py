"""The ledger's batched INSERT, compiled once per engine.

SQLAlchemy Core's executemany builds and converts every row's parameters in
Python (`construct_params` and the bind processors): about 25 us a row, held
under the GIL in the writer thread while the event loop waits for it, which
showed in the gateway's tail latency. Here the statement is compiled once, each
row is converted by the columns' own bind processors (so Money and UtcDateTime
still decide what is stored), and the driver receives the finished parameters
through `exec_driver_sql`: about 6 us a row.

Rows whose `row_id` is already stored are skipped on SQLite and PostgreSQL
(ON CONFLICT DO NOTHING), so a batch retried after a lost commit
acknowledgement is not written twice.

Imports: sqlalchemy, the standard library.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect


def _statement(dialect: Dialect, table: sa.Table) -> Any:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["row_id"])
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["row_id"])
    return sa.insert(table)


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    return default.arg if isinstance(default, sa.ColumnDefault) and default.is_scalar else None


class BatchInsert:
    """INSERT of many rows (dicts keyed by column name) into `table`; the
    autoincrement primary key is left to the database."""

    def __init__(self, dialect: Dialect, table: sa.Table) -> None:
        columns = {c.key: c for c in table.columns if not c.primary_key}
        compiled = _statement(dialect, table).compile(dialect=dialect,
                                                      column_keys=list(columns))
        self.sql = str(compiled)
        self._positional = bool(compiled.positional)
        # A plain INSERT names each bind parameter after its column.
        names = list(compiled.positiontup or ()) if self._positional else list(columns)
        missing = [n for n in names if n not in columns]
        if missing:
            raise RuntimeError(f"unexpected bind parameters in the ledger INSERT: {missing}")
        self._names = names
        self._defaults = [_default(columns[n]) for n in names]
        self._get = operator.itemgetter(*names)
        # Only a few columns need converting (timestamps, money, booleans on
        # some drivers); the rest go to the driver as they are.
        self._convert: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            process = columns[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._convert.append((index, process))

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Driver parameters for `rows`: tuples for a positional driver, else dicts."""
        out: list[Any] = []
        for row in rows:
            try:
                values = list(self._get(row))
            except KeyError:  # a row without some column: its default, as an INSERT would
                values = [row.get(n, d) for n, d in zip(self._names, self._defaults,
                                                        strict=True)]
            for index, process in self._convert:
                if values[index] is not None:
                    values[index] = process(values[index])
            out.append(tuple(values) if self._positional
                       else dict(zip(self._names, values, strict=True)))
        return out

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, self.parameters(rows))
