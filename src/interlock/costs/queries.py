"""Reading the ledger back: spend summaries, usage for replays, report series.

Used by `interlock spend`, `interlock cost simulate --from-ledger` and
`interlock report`; synchronous, because those are CLI commands. Sums are done
in SQL on whole nano-dollars, so they are exact.

Imports: sqlalchemy, the standard library, `costs.schema`, `costs.usd`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from interlock.costs.schema import (
    DEFAULT_PREFIX,
    Money,
    UtcDateTime,
    ledger_tables,
    make_engine,
)
from interlock.costs.usd import usd_text

_Q = TypeVar("_Q", bound=sa.Select)
SpendBy = Literal["day", "group", "deployment", "key", "model", "tier", "user"]


@dataclass(frozen=True, slots=True)
class SpendLine:
    key: str
    requests: int
    errors: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    # Sum over rows whose cost is known; `unpriced` counts the others.
    cost_usd: Decimal
    unpriced: int
    # Web searches the providers billed (their cost is in `cost_usd`).
    web_searches: int = 0
    # Rows: the requests and the first calls of continued streams (`continued`),
    # which `unpriced` counts among too.
    calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "requests": self.requests, "errors": self.errors,
            "input_tokens": self.input_tokens, "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens, "cost_usd": usd_text(self.cost_usd),
            "unpriced": self.unpriced, "web_searches": self.web_searches, "calls": self.calls,
        }


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """The parts of a row a cost replay needs."""

    routed_group: str | None
    deployment: str | None
    provider: str | None
    model: str | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    web_searches: int = 0
    # As the answer reported it (OpenAI's `service_tier`); None where it said none.
    service_tier: str | None = None
    # Where a replay pairs rows (`LedgerReader.usage`): a continued call's, and a
    # request's when the ledger holds continued calls; None elsewhere.
    request_id: str | None = None
    # The first call of a stream continued on another deployment: billed, and
    # its request's row is another record.
    continued: bool = False


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    deployment: str
    requests: int
    errors: int
    fallbacks: int
    attempts: int


class LedgerReader:
    def __init__(self, database: str, *, table_prefix: str = DEFAULT_PREFIX,
                 engine: Engine | None = None) -> None:
        self.engine = engine or make_engine(database, create_dirs=False)
        self.tables = ledger_tables(table_prefix)
        self.t = self.tables.requests
        self._added: list[sa.ColumnElement[Any]] | None = None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self) -> bool:
        """Whether the ledger table is there. A SQLite file that is not there is
        not opened: connecting would leave an empty database behind."""
        url = self.engine.url
        if (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
                and not Path(url.database).exists()):
            return False
        return sa.inspect(self.engine).has_table(self.t.name)

    # ------------------------------------------------------------------ expressions

    def _added_columns(self) -> list[sa.ColumnElement[Any]]:
        """`web_searches`, `service_tier` and `end_user`, as 0 or NULL in a ledger
        no gateway of this version has migrated yet (a reader does not change the
        schema). The table is inspected once a reader: a query may need several (a
        spend by tier), and every query of one command then reads the same columns."""
        if self._added is None:
            columns = {c["name"] for c in sa.inspect(self.engine).get_columns(self.t.name)}
            c = self.t.c
            self._added = [c.web_searches if "web_searches" in columns else sa.literal(0),
                           c.service_tier if "service_tier" in columns else sa.null(),
                           c.end_user if "end_user" in columns else sa.null()]
        return self._added

    def _day(self) -> sa.ColumnElement[Any]:
        col = self.t.c.created_at
        if self.engine.dialect.name == "postgresql":
            return sa.func.to_char(sa.func.timezone("UTC", col), "YYYY-MM-DD")
        return sa.func.strftime("%Y-%m-%d", col)

    def _key(self, by: SpendBy) -> sa.ColumnElement[Any]:
        if by == "day":
            return self._day()
        if by == "tier":  # the service tier the provider reported serving at
            return sa.func.coalesce(self._added_columns()[1], "(none)")
        if by == "user":  # the end user the client named (OpenAI's `user`); "" names none
            return sa.func.coalesce(sa.func.nullif(self._added_columns()[2], ""), "(none)")
        column = {"group": "routed_group", "deployment": "deployment", "key": "api_key_id",
                  "model": "model"}[by]
        return sa.func.coalesce(self.t.c[column], "(none)")

    def _since(self, query: _Q, since: datetime | None) -> _Q:
        return query if since is None else query.where(self.t.c.created_at >= since)

    # ------------------------------------------------------------------ queries

    def spend(self, by: SpendBy = "day", *, since: datetime | None = None) -> list[SpendLine]:
        c = self.t.c
        key = self._key(by).label("key")
        web_searches = self._added_columns()[0]
        query = sa.select(
            key,
            # A continued stream's first call has a row of its own (`continued`):
            # its cost and tokens count, but not as a request, nor as a failed one.
            sa.func.sum(sa.case((c.status != "continued", 1), else_=0)),
            sa.func.sum(sa.case((c.status == "error", 1), else_=0)),
            sa.func.sum(c.input_tokens),
            sa.func.sum(c.cached_input_tokens),
            sa.func.sum(c.output_tokens),
            sa.type_coerce(sa.func.sum(c.cost_nanousd), Money()),
            sa.func.sum(sa.case((c.cost_nanousd.is_(None), 1), else_=0)),
            sa.func.sum(web_searches),
            sa.func.count(),
        ).group_by(key).order_by(key)
        with self.engine.connect() as conn:
            rows = conn.execute(self._since(query, since)).all()
        return [
            SpendLine(str(r[0]), int(r[1] or 0), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0),
                      int(r[5] or 0), r[6] if r[6] is not None else Decimal(0), int(r[7] or 0),
                      int(r[8] or 0), int(r[9]))
            for r in rows
        ]

    def spend_since(self, since: datetime, column: str, among: Sequence[str] | None = None,
                    until: datetime | None = None) -> dict[str, int]:
        """Nano-dollars recorded from `since` (to before `until`, when given), by
        the value of `column` (deployment, provider, api_key_id or end_user; rows
        without one left out), only for the values `among` when given: what
        budgets counted in memory start from after a restart
        (`budget_record.recorded_spend`), and each client key's spend (`server.key_admin`)."""
        c = self.t.c
        key = self._added_columns()[2] if column == "end_user" else c[column]
        nano = sa.type_coerce(c.cost_nanousd, sa.BigInteger)  # as stored, not as dollars
        query = (sa.select(key, sa.func.sum(nano))
                 .where(c.created_at >= since, key.is_not(None), c.cost_nanousd.is_not(None))
                 .group_by(key))
        if among is not None:
            query = query.where(key.in_(list(among)))
        if until is not None:
            query = query.where(c.created_at < until)
        with self.engine.connect() as conn:
            return {str(k): int(v or 0) for k, v in conn.execute(query)}

    def usage(self, *, since: datetime | None = None) -> Iterator[UsageRecord]:
        """The rows a replay of what requests cost reads: first the first calls of
        streams continued elsewhere (`continued`: billed, but not requests), then
        the successful requests' rows.

        No join pairs the two (one over a large ledger took most of a minute): the
        continued calls, rare, are read on their own first, and the requests' rows
        in one plain scan, carrying their request id only when there is a
        continued call to pair them with (`replay` does, as they stream by). The
        first read is a scan of the ledger (no index holds `status`; with `since`,
        the `created_at` one serves): offline work, for report and cost."""
        c = self.t.c
        web_searches, service_tier = self._added_columns()[:2]
        first_calls = sa.select(c.request_id, c.cost_nanousd).where(c.status == "continued")
        with self.engine.connect() as conn:
            continued = conn.execute(self._since(first_calls, since)).all()
            for request_id, cost in continued:
                yield UsageRecord(None, None, None, None, 0, 0, 0, cost,
                                  request_id=request_id, continued=True)
            query = sa.select(
                c.routed_group, c.deployment, c.provider, c.model, c.input_tokens,
                c.cached_input_tokens, c.output_tokens, c.cost_nanousd, web_searches,
                service_tier, c.request_id if continued else sa.null(),
            ).where(c.status == "ok")
            result = conn.execution_options(yield_per=5_000).execute(self._since(query, since))
            for r in result:
                yield UsageRecord(r[0], r[1], r[2], r[3], int(r[4] or 0), int(r[5] or 0),
                                  int(r[6] or 0), r[7], int(r[8] or 0), r[9] or None, r[10])

    def daily_spend_by(self, by: SpendBy = "deployment", *,
                       since: datetime | None = None) -> dict[str, dict[date, Decimal]]:
        """{series name: {day: dollars}} for the spend-over-time chart."""
        day = self._day().label("day")
        key = self._key(by).label("key")
        query = sa.select(
            key, day, sa.type_coerce(sa.func.sum(self.t.c.cost_nanousd), Money()),
        ).group_by(key, day).order_by(day)
        out: dict[str, dict[date, Decimal]] = {}
        with self.engine.connect() as conn:
            for name, d, cost in conn.execute(self._since(query, since)):
                out.setdefault(str(name), {})[date.fromisoformat(str(d))] = cost or Decimal(0)
        return out

    def deployment_health(self, *, since: datetime | None = None) -> list[DeploymentHealth]:
        c = self.t.c
        key = sa.func.coalesce(c.deployment, "(none)").label("key")
        # Calls that ended on each deployment: a stream that broke there and was
        # continued elsewhere (`continued`) is one of its failures.
        query = sa.select(
            key, sa.func.count(), sa.func.sum(sa.case((c.status != "ok", 1), else_=0)),
            sa.func.sum(c.fallbacks), sa.func.sum(c.attempts),
        ).group_by(key).order_by(key)
        with self.engine.connect() as conn:
            rows = conn.execute(self._since(query, since)).all()
        return [DeploymentHealth(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0),
                                 int(r[4] or 0)) for r in rows]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.t)).scalar_one())

    def group_models(self) -> list[tuple[str, str | None, str | None, str | None, int]]:
        """(group, deployment, provider, model, requests) for every pairing seen
        (requests: a continued stream's first call is not one)."""
        c = self.t.c
        group = sa.func.coalesce(c.routed_group, "(none)").label("g")
        query = sa.select(group, c.deployment, c.provider, c.model, sa.func.count()).where(
            c.status != "continued").group_by(
            group, c.deployment, c.provider, c.model).order_by(sa.func.count().desc())
        with self.engine.connect() as conn:
            return [(str(r[0]), r[1], r[2], r[3], int(r[4])) for r in conn.execute(query)]

    def period(self) -> tuple[datetime | None, datetime | None]:
        c = self.t.c
        with self.engine.connect() as conn:
            first, last = conn.execute(sa.select(
                sa.type_coerce(sa.func.min(c.created_at), UtcDateTime()),
                sa.type_coerce(sa.func.max(c.created_at), UtcDateTime()))).one()
        return first, last
