"""`interlock prices [MODEL...]`: the prices in use and where each came from.

With `--config`, every deployment's resolved price (deployment fields > the
config's `prices:` > genai-prices) and the deployments with no known price;
model names given on the command line are looked up in genai-prices' bundled
data (or the config's `prices:` when it names them).

Imports: typer, the standard library; `config` and `costs.*` inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from interlock.costs.prices import ModelPrice


def _row(name: str, price: ModelPrice | None, extra: str = "") -> dict[str, Any]:
    if price is None:
        return {"name": name, "price": None, "source": "unknown", "detail": extra}
    return {"name": name, "price": price.describe(), "source": price.source,
            "detail": " ".join(x for x in (extra, price.matched and f"= {price.matched}") if x),
            "input_per_million": str(price.input_per_token * 1_000_000),
            "output_per_million": str(price.output_per_token * 1_000_000),
            "cached_input_per_million": None if price.cached_input_per_token is None
            else str(price.cached_input_per_token * 1_000_000)}


def _config_rows(config: Path) -> tuple[list[dict[str, Any]], dict[str, ModelPrice]]:
    from interlock.cli.spend import load_config_or_exit
    from interlock.config import build_catalog
    from interlock.costs.prices import PriceBook

    loaded = load_config_or_exit(config)
    catalog = build_catalog(loaded)
    book = PriceBook.build(catalog, loaded.prices)
    rows = [_row(d.name, book.price_for(d), f"({d.qualified_model}, group {d.group})")
            for d in catalog.deployments()]
    return rows, dict(book.extra)


def prices_command(
    models: Annotated[list[str] | None, typer.Argument(
        help="Model names (provider/model allowed) to look up.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="Config file: show the price of each of its deployments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the prices in use ($ per million tokens) and where each came from."""
    from interlock.costs.prices import lookup_model_price

    rows: list[dict[str, Any]] = []
    configured: dict[str, ModelPrice] = {}
    if config is not None:
        rows, configured = _config_rows(config)
    for model in models or []:
        price = configured.get(model) or lookup_model_price(model)
        rows.append(_row(model, price))
    if not rows:
        typer.echo("give model names or --config FILE", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            shown = r["price"] or "unknown: its cost is recorded as unknown, never as zero"
            typer.echo(f"{r['name']:<{width}}  {shown}  [{r['source']}] {r['detail']}".rstrip())
    if any(r["price"] is None for r in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("prices")(prices_command)
