"""The ledger on PostgreSQL loses no row when the database goes away mid-run.

The ledger talks to PostgreSQL through a TCP proxy run by the test, which is
cut (connections dropped, new ones refused) and restored; before and after,
the server itself terminates the ledger's connections from a separate admin
connection. Only this test's connections are terminated: they carry a unique
application_name, because other tests may share the database. Tables use a
fresh prefix and are dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.schema import ledger_tables
from interlock.costs.settings import LedgerSettings

pytestmark = pytest.mark.postgres


class CuttableProxy:
    """127.0.0.1:<port> -> the real server, with a switch that drops everything."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[CuttableProxy]:
    url = sa.make_url(postgres_url)
    p = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await p.start()
    yield p
    if p._server is not None:
        await p.cut()


def _terminate(admin: sa.Engine, app_name: str) -> int:
    with admin.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = :app AND pid <> pg_backend_pid()"), {"app": app_name}).all()
    return len(rows)


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "child-process"])
async def test_postgres_outage_loses_no_row(postgres_url: str, proxy: CuttableProxy,
                                            in_process: bool) -> None:
    run = uuid.uuid4().hex[:10]
    prefix = f"t_{run}_"
    app_name = f"interlock-ledger-test-{run}"
    url = sa.make_url(postgres_url).set(host="127.0.0.1", port=proxy.port,
                                         query={"application_name": app_name})
    admin = sa.create_engine(postgres_url)
    settings = LedgerSettings(
        database=url.render_as_string(hide_password=False), table_prefix=prefix, batch_size=25,
        flush_interval=0.02, retry_initial=0.05, retry_max=0.3, close_timeout=15)
    ledger = Ledger(settings, in_process=in_process)
    total = 1_200
    try:
        await ledger.start()

        async def produce() -> None:
            for i in range(total):
                ledger.record(LedgerRow(request_id=f"req-{i}", routed_group="g",
                                        deployment="d", cost_usd=Decimal("0.001")))
                if i % 20 == 19:
                    await asyncio.sleep(0.02)

        async def disrupt() -> tuple[int, int]:
            killed = 0
            await asyncio.sleep(0.2)
            for _ in range(3):  # the server drops the ledger's connections
                killed += await asyncio.to_thread(_terminate, admin, app_name)
                await asyncio.sleep(0.1)
            await proxy.cut()  # the network goes: connections die, new ones refused
            failures_before = ledger.write_failures
            await asyncio.sleep(0.6)
            # Until the writer has met the cut: on a busy machine its idle-class
            # child may not have tried a write in those 0.6 s.
            for _ in range(200):
                if ledger.write_failures > failures_before:
                    break
                await asyncio.sleep(0.05)
            assert ledger.pending > 0  # rows waited in the buffer meanwhile
            await proxy.start()
            await asyncio.sleep(0.2)
            killed += await asyncio.to_thread(_terminate, admin, app_name)
            return killed, ledger.write_failures - failures_before

        _, (killed, failures_during_cut) = await asyncio.gather(produce(), disrupt())
        assert await ledger.flush(20), f"{ledger.pending} rows still pending"
        assert killed >= 1
        assert failures_during_cut >= 1
        assert ledger.dropped == 0

        table = ledger_tables(prefix).requests
        with admin.connect() as conn:
            count, distinct = conn.execute(sa.select(
                sa.func.count(), sa.func.count(sa.distinct(table.c.request_id)))).one()
        assert (count, distinct) == (total, total)  # none lost, none written twice
    finally:
        await ledger.aclose()
        tables = ledger_tables(prefix)
        with contextlib.suppress(Exception):
            tables.metadata.drop_all(admin)
        admin.dispose()


async def test_migrations_race_between_replicas(postgres_url: str) -> None:
    from interlock.costs.schema import make_engine, migrate, migrations

    prefix = f"t_{uuid.uuid4().hex[:10]}_"
    tables = ledger_tables(prefix)
    engines = [make_engine(postgres_url) for _ in range(2)]
    try:
        results = await asyncio.gather(*(asyncio.to_thread(migrate, e, tables) for e in engines))
        names = [n for n, _ in migrations()]
        # Every migration applied exactly once between the two, and again by neither.
        assert sorted(n for r in results for n in r) == sorted(names)
        assert migrate(engines[0], tables) == []
    finally:
        with contextlib.suppress(Exception):
            tables.metadata.drop_all(engines[0])
        for e in engines:
            e.dispose()


def test_a_ledger_from_before_0004_gains_usage_estimated_on_postgres(postgres_url: str) -> None:
    # PostgreSQL's boolean takes no integer default: the ALTER must say false.
    from datetime import UTC, datetime

    from interlock.costs.schema import make_engine, migrate

    prefix = f"t_{uuid.uuid4().hex[:10]}_"
    tables = ledger_tables(prefix)
    engine = make_engine(postgres_url)
    try:
        old = sa.MetaData()
        before = sa.Table(
            tables.requests.name, old,
            *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
              for c in tables.requests.columns if c.name not in ("usage_estimated", "end_user")))
        old.create_all(engine)
        tables.migrations.create(engine)
        with engine.begin() as conn:
            for name in ("0001_create_requests", "0002_indexes", "0003_searches_and_tier"):
                conn.execute(tables.migrations.insert().values(name=name,
                                                               applied_at=datetime.now(UTC)))
            conn.execute(before.insert().values(
                row_id="r1", created_at=datetime.now(UTC), request_id="req-1", status="ok",
                attempts=1, fallbacks=0, input_tokens=1, cached_input_tokens=0,
                output_tokens=1, reasoning_tokens=0, web_searches=0, stream=False))
        assert migrate(engine, tables) == ["0004_usage_estimated", "0005_end_user",
                                           "0006_keys", "0007_key_budgets"]
        with engine.connect() as conn:
            assert conn.execute(sa.select(tables.requests.c.usage_estimated)).scalar_one() is False
    finally:
        with contextlib.suppress(Exception):
            tables.metadata.drop_all(engine)
        engine.dispose()
