"""`interlock spend`: what the recorded traffic cost, by day, group, deployment, key, model
or service tier.

Also home of the small pieces the other ledger commands share (`cost simulate
--from-ledger`, `report`): finding the ledger from `--config` or `--database`.

Imports: typer, the standard library; `config` and `costs.*` inside commands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer

if TYPE_CHECKING:
    from interlock.costs.queries import LedgerReader

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Interlock config file: its ledger and prices are used.")]
DatabaseOption = Annotated[str | None, typer.Option(
    "--database", help="Ledger database: a SQLite file or a SQLAlchemy URL.")]
PrefixOption = Annotated[str | None, typer.Option(
    "--table-prefix", help="Ledger table prefix (default: the config's, else interlock_).")]
SinceOption = Annotated[str | None, typer.Option(
    help="Only rows since: a date (2026-01-31), an ISO time, or an age such as 7d or 12h.")]


@dataclass
class LedgerSource:
    database: str
    table_prefix: str
    config: Any = None

    def reader(self) -> LedgerReader:
        from interlock.costs.queries import LedgerReader

        return LedgerReader(self.database, table_prefix=self.table_prefix)


def load_config_or_exit(path: Path) -> Any:
    from interlock.config import load_config
    from interlock.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:  # it lists every problem, with its line
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def ledger_source(config: Path | None, database: str | None,
                  table_prefix: str | None = None) -> LedgerSource:
    loaded = load_config_or_exit(config) if config else None
    db = database
    prefix = table_prefix
    if loaded is not None:
        if not db and not (loaded.ledger and loaded.ledger.database):
            # Not the default file in this folder: it may be another gateway's.
            typer.echo(f"error: {config} has no ledger (ledger.database is null), so there "
                       "is nothing of its to read; name a ledger with --database", err=True)
            raise typer.Exit(1)
        db = db or loaded.ledger.database
        prefix = prefix or loaded.ledger.table_prefix
    if not db:
        from interlock.costs.settings import LedgerSettings

        db = LedgerSettings().database
    assert db is not None
    return LedgerSource(db, prefix or "interlock_", loaded)


def open_reader_or_exit(source: LedgerSource) -> LedgerReader:
    """The ledger's reader; a clear message and exit 1 when it cannot be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from interlock.errors import redact

    where = redact(source.database)
    try:
        reader = source.reader()
        found = reader.exists()
    except (SQLAlchemyError, ImportError) as exc:
        # The driver's first line says why (refused, unknown host, bad URL);
        # the rest is SQLAlchemy's boilerplate.
        why = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        typer.echo(f"error: cannot read the ledger at {where}: {why}", err=True)
        raise typer.Exit(1) from None
    if not found:
        typer.echo(f"error: no ledger at {where} (table {reader.t.name}); run the gateway "
                   "with a ledger first, or name it with --config or --database", err=True)
        reader.close()
        raise typer.Exit(1)
    return reader


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    if not text:
        return None
    now = now or datetime.now(UTC)
    units = {"d": 86_400, "h": 3_600, "m": 60}
    if text[-1] in units and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a date, an ISO time or 7d/12h/30m",
                                 param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def spend_command(
    config: ConfigOption = None,
    database: DatabaseOption = None,
    by: Annotated[str, typer.Option(
        help="Group by day, group, deployment, key, model, tier (the service tier served) "
             "or user (the request's `user`, the client's end user).")]
    = "day",
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    table_prefix: PrefixOption = None,
) -> None:
    """Summarise recorded spend from the ledger."""
    from interlock.costs.queries import SpendBy
    from interlock.costs.usd import money, usd_text

    if by not in get_args(SpendBy):
        raise typer.BadParameter("expected day, group, deployment, key, model, tier or user",
                                 param_hint="--by")
    source = ledger_source(config, database, table_prefix)
    with open_reader_or_exit(source) as reader:
        lines = reader.spend(by, since=parse_since(since))  # type: ignore[arg-type]
    total = sum((line.cost_usd for line in lines), Decimal(0))
    if as_json:
        typer.echo(json.dumps({"by": by, "lines": [line.as_dict() for line in lines],
                               "total_cost_usd": usd_text(total),
                               "requests": sum(line.requests for line in lines)}, indent=2))
        return
    # The searches column only where some request searched the web.
    searched = any(line.web_searches for line in lines)

    def searches(cell: str) -> str:
        return f" {cell:>9}" if searched else ""

    # As wide as the longest name: deployments that differ only at the end (two
    # dated snapshots of one model) would look alike if cut.
    width = max(28, *(len(line.key) for line in lines)) if lines else 28
    header = f"{by:<{width}} {'requests':>9} {'errors':>7} {'input tok':>12} {'output tok':>12}" \
             f"{searches('searches')} {'cost':>12}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for line in lines:
        note = f"  ({line.unpriced} unpriced)" if line.unpriced else ""
        # A line whose every row is unpriced has no cost to show: "$0.00" would read
        # as free (docs/costs.md: unknown cost is never shown as zero).
        cost = "unpriced" if line.unpriced and line.unpriced == line.calls \
            else money(line.cost_usd)
        typer.echo(f"{line.key:<{width}} {line.requests:>9,} {line.errors:>7,} "
                   f"{line.input_tokens:>12,} {line.output_tokens:>12,}"
                   f"{searches(f'{line.web_searches:,}')} {cost:>12}{note}")
    typer.echo("-" * len(header))
    total_searches = sum(x.web_searches for x in lines)
    typer.echo(f"{'total':<{width}} {sum(x.requests for x in lines):>9,} "
               f"{sum(x.errors for x in lines):>7,} {'':>12} {'':>12}"
               f"{searches(f'{total_searches:,}')} {money(total):>12}")


def register(app: typer.Typer) -> None:
    app.command("spend")(spend_command)
