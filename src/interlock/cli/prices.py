"""`interlock prices [MODEL...]`: the prices in use and where each came from.

With `--config`, every deployment's resolved price (deployment fields > the
config's `prices:` > genai-prices) and the deployments with no known price;
model names given on the command line are priced as `cost simulate` prices
them: by the config's names for them (a `prices:` key, a deployment's name or
model id, a group) when `--config` is given, else from genai-prices' bundled data.

Also home of `config_prices`, the config's prices by name, which `cost
simulate` and `report` use too.

Imports: typer, the standard library; `cli.spend`, `config` and `costs.*` inside
the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from interlock.catalog import Catalog
    from interlock.costs.prices import ModelPrice, PriceBook


def _row(name: str, price: ModelPrice | None, extra: str = "") -> dict[str, Any]:
    if price is None:
        return {"name": name, "price": None, "source": "unknown", "detail": extra}
    return {"name": name, "price": price.describe(), "source": price.source,
            "detail": " ".join(x for x in (extra, price.matched and f"= {price.matched}") if x),
            "input_per_million": str(price.input_per_token * 1_000_000),
            "output_per_million": str(price.output_per_token * 1_000_000),
            "cached_input_per_million": None if price.cached_input_per_token is None
            else str(price.cached_input_per_token * 1_000_000)}


def _load(config: Path) -> tuple[Catalog, PriceBook]:
    from interlock.cli.spend import load_config_or_exit
    from interlock.config import build_catalog
    from interlock.costs.prices import PriceBook

    loaded = load_config_or_exit(config)
    catalog = build_catalog(loaded)
    return catalog, PriceBook.build(catalog, loaded.prices)


def config_prices(config: Path | None) -> dict[str, ModelPrice | None] | None:
    """The prices a config gives, under every name it gives a model by; None without one."""
    if config is None:
        return None
    catalog, book = _load(config)
    return book.by_name(catalog)


def prices_command(
    models: Annotated[list[str] | None, typer.Argument(
        help="Model names (provider/model allowed) to look up.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="Config file: show the price of each of its deployments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the prices in use ($ per million tokens) and where each came from."""
    from interlock.costs.simulate import resolve_prices

    rows: list[dict[str, Any]] = []
    named = None
    if config is not None:
        catalog, book = _load(config)
        rows = [_row(d.name, book.price_for(d), f"({d.qualified_model}, group {d.group})")
                for d in catalog.deployments()]
        named = book.by_name(catalog)
    for model, price in resolve_prices(models or [], named=named).items():
        rows.append(_row(model, price, "(named in the config)" if named and named.get(model)
                         else ""))
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
