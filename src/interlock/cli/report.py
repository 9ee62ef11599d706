"""`interlock report --out report.html`: the savings report from the ledger.

Writes one self-contained HTML page (charts as embedded PNGs, nothing fetched
when it is opened) and prints the summary.

Imports: typer, the standard library, `cli.paths`; `cli.spend` and `costs.*` inside the command.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.paths import nearest_existing
from interlock.cli.spend import ConfigOption, DatabaseOption, PrefixOption, SinceOption


def report_command(
    out: Annotated[Path, typer.Option(help="Where to write the HTML page.")]
    = Path("interlock-report.html"),
    config: ConfigOption = None,
    database: DatabaseOption = None,
    since: SinceOption = None,
    table_prefix: PrefixOption = None,
) -> None:
    """Write the savings report (HTML) and print its summary."""
    from interlock.cli.prices import config_prices
    from interlock.cli.spend import ledger_source, open_reader_or_exit, parse_since
    from interlock.costs.report import build_report, group_prices, render_html, summary_lines

    if find_spec("matplotlib") is None:
        typer.echo("error: the report draws its charts with matplotlib: "
                   "pip install 'interlock[plots]'", err=True)
        raise typer.Exit(2)
    _check_out(out)  # before the ledger is read: a wrong --out should not cost a wait
    source = ledger_source(config, database, table_prefix)
    configured = config_prices(config)
    with open_reader_or_exit(source) as reader:
        prices = group_prices(reader, configured)
        data = build_report(reader, prices, since=parse_since(since),
                            prices_from="genai-prices" if configured is None else "config")
    page = render_html(data)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:  # no permission, a full disk: what the system said, no traceback
        typer.echo(f"error: cannot write the report to {out}: {exc.strerror or exc}; "
                   "give --out a file you can write", err=True)
        raise typer.Exit(1) from None
    for line in summary_lines(data):
        typer.echo(line)
    typer.echo(f"report written to {out} ({len(page) // 1024} KiB)")


def _check_out(out: Path) -> None:
    """Exit 2 with the reason when --out cannot be the page's file. A missing
    parent directory is fine: it is made."""
    if out.is_dir():
        typer.echo(f"error: --out {out} is a directory; name the file to write, such as "
                   f"--out {out / 'interlock-report.html'}", err=True)
        raise typer.Exit(2)
    parent = nearest_existing(out.parent)
    if not parent.is_dir():
        typer.echo(f"error: --out {out}: {parent} is a file, not a directory; "
                   "give a path in a directory", err=True)
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
