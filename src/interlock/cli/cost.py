"""`interlock cost simulate`: monthly cost of routing strategies, or of recorded traffic.

    interlock cost simulate --prices seed          # the seed's table, to the cent
    interlock cost simulate --strategy "all-opus=claude-opus-4.5" \\
        --strategy "mix=claude-sonnet-4:30%,gemini-2.5-pro:50%,gemini-2.0-flash-lite:20%"
    interlock cost simulate --from-ledger --config gateway.yaml

Imports: typer, the standard library; `costs.*`, `cli.spend` and `cli.prices` inside the
command.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from interlock.costs.prices import ModelPrice
    from interlock.costs.simulate import Profile, Replay, Strategy, StrategyCost

cost_app = typer.Typer(help="Cost tools: simulate routing strategies.", no_args_is_help=True)

STRATEGY_HELP = (
    "NAME=MODEL[:SHARE][,MODEL:SHARE...] with shares as 0.3 or 30% adding up to 1 "
    "(repeatable). Default: the seed's all-Opus, all-Gemini-2.5-Pro and 30/50/20 mix.")


def parse_price_option(text: str) -> tuple[str, ModelPrice]:
    """MODEL=IN,OUT[,CACHED] in dollars per million tokens (the same form as `eval --price`)."""
    from interlock.costs.prices import ModelPrice

    model, eq, spec = text.partition("=")
    values = [v.strip() for v in spec.replace("/", ",").split(",") if v.strip()]
    try:
        if not eq or not model.strip() or len(values) not in (2, 3):
            raise InvalidOperation
        numbers = [Decimal(v) for v in values]
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r}: expected MODEL=IN,OUT[,CACHED] per million",
                                 param_hint="--price") from None
    # A negative or infinite price would print a "saving" no traffic can make.
    if any(not n.is_finite() or n < 0 for n in numbers):
        raise typer.BadParameter(
            f"{text!r}: prices must be dollars per million tokens, 0 or more "
            f"(e.g. {model.strip()}=3,15)", param_hint="--price")
    cached = numbers[2] if len(numbers) == 3 else None
    return model.strip(), ModelPrice.per_million(numbers[0], numbers[1], cached, source="option")


def _strategies(texts: list[str] | None, baseline: str | None) -> list[Strategy]:
    """The strategies asked for, checked with the baseline before any work is done."""
    from interlock.costs.simulate import (
        Strategy,
        StrategyError,
        check_strategies,
        default_strategies,
    )

    try:
        strategies = [Strategy.parse(t) for t in texts] if texts else default_strategies()
        check_strategies(strategies)
    except StrategyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--strategy") from None
    try:
        check_strategies(strategies, baseline)
    except StrategyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--baseline") from None
    return strategies


def _profile(requests: int | None, input_tokens: int | None, output_tokens: int | None,
             from_ledger: bool) -> Profile:
    """The traffic profile; the options left out (None) take `Profile`'s defaults.
    A replay has no use for them, so one given with --from-ledger is refused."""
    from interlock.costs.simulate import Profile

    options = {"requests": requests, "input_tokens": input_tokens,
               "output_tokens": output_tokens}
    given = {name: value for name, value in options.items() if value is not None}
    if from_ledger and given:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise typer.BadParameter(
            f"{flag} sets the traffic profile, and --from-ledger replays the recorded "
            f"requests instead; leave {flag} out, or --from-ledger", param_hint=flag)
    return Profile(**given)


def _check_modes(from_ledger: bool, database: str | None, baseline: str | None) -> None:
    """An option the chosen mode would ignore is refused (or, where the run still
    answers what was asked, warned about), never dropped without a word."""
    if not from_ledger and database is not None:
        raise typer.BadParameter(
            "--database names the ledger for --from-ledger; add --from-ledger to replay it, "
            "or leave --database out to simulate the traffic profile", param_hint="--database")
    if from_ledger and baseline is not None:
        typer.echo("warning: --baseline is not used with --from-ledger, which compares "
                   "each model with the recorded cost", err=True)


def resolve_prices(models: list[str], mode: str, options: list[str] | None,
                   book_prices: dict[str, ModelPrice | None] | None = None
                   ) -> dict[str, ModelPrice | None]:
    """Price per model name: --price options > config > the chosen source."""
    from interlock.costs.simulate import resolve_prices as resolve

    given = dict(parse_price_option(p) for p in options or [])
    return resolve(models, seed=mode == "seed", given=given, named=book_prices)


def _table(results: list[StrategyCost], baseline: str) -> list[str]:
    from interlock.costs.usd import money

    width = max(12, *(len(r.strategy.name) for r in results))
    lines = [f"{'strategy':<{width}}  {'monthly cost':>14}  {'saving vs ' + baseline:>24}  mix",
             "-" * (width + 60)]
    for r in results:
        if r.saving_usd is None:
            saving = "n/a"
        else:
            pct = f" ({r.saving_pct:.1f}%)" if r.saving_pct is not None else ""
            saving = f"{money(r.saving_usd)}{pct}"
        missing = f"  [no price: {', '.join(r.missing)}]" if r.missing else ""
        lines.append(f"{r.strategy.name:<{width}}  {money(r.monthly_usd):>14}  {saving:>24}  "
                     f"{r.strategy.describe()}{missing}")
    return lines


def simulate_command(
    requests: Annotated[int | None, typer.Option(
        min=0, help="Requests per month (default 100,000; not with --from-ledger).")] = None,
    input_tokens: Annotated[int | None, typer.Option(
        min=0, help="Mean input tokens (default 1,000).")] = None,
    output_tokens: Annotated[int | None, typer.Option(
        min=0, help="Mean output tokens (default 500).")] = None,
    prices: Annotated[str, typer.Option(
        help="seed: the seed's prices; default: today's, from genai-prices.")] = "default",
    strategy: Annotated[list[str] | None, typer.Option(help=STRATEGY_HELP)] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Strategy to compare against (default: the first).")] = None,
    price: Annotated[list[str] | None, typer.Option(
        help="Price override MODEL=IN,OUT[,CACHED] in $ per million tokens (repeatable).")]
    = None,
    from_ledger: Annotated[bool, typer.Option(
        "--from-ledger", help="Replay the traffic recorded in the ledger instead.")] = False,
    config: Annotated[Path | None, typer.Option(
        help="Config file: its prices, and its ledger for --from-ledger.")] = None,
    database: Annotated[str | None, typer.Option(
        help="Ledger database for --from-ledger (SQLite file or URL).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Monthly cost of each strategy for a traffic profile, and the saving against a baseline."""
    from interlock.cli.prices import config_prices
    from interlock.costs.simulate import price_differences, seed_prices, simulate
    from interlock.costs.usd import money

    if prices not in ("seed", "default"):
        raise typer.BadParameter("expected seed or default", param_hint="--prices")
    _check_modes(from_ledger, database, baseline)
    profile = _profile(requests, input_tokens, output_tokens, from_ledger)
    strategies = _strategies(strategy, baseline)
    models = sorted({m for s in strategies for m in s.models})
    book = config_prices(config)
    if from_ledger:
        _replay(config, database, models, prices, price, book, as_json)
        return
    resolved = resolve_prices(models, prices, price, book)
    # The strategies and the baseline were checked by `_strategies`, before any work.
    results = simulate(profile, strategies, resolved, baseline)
    base = baseline or strategies[0].name
    differences = [] if prices == "seed" else price_differences(resolved, seed_prices())
    if differences:
        at_seed = simulate(profile, strategies,
                           {**resolved, **{m: p for m, p in seed_prices().items()
                                           if m in resolved}}, baseline)
        differences += [f"{r.strategy.name}: {money(today.monthly_usd)} today, "
                        f"{money(r.monthly_usd)} at the seed's prices"
                        for r, today in zip(at_seed, results, strict=True)
                        if r.monthly_usd != today.monthly_usd]
    if as_json:
        typer.echo(json.dumps(_json(results, resolved, differences), indent=2))
        return
    typer.echo(f"{profile.requests:,} requests/month x ({profile.input_tokens:,} in, "
               f"{profile.output_tokens:,} out) "
               f"tokens; prices: {prices}")
    for line in _table(results, base):
        typer.echo(line)
    _echo_prices(models, resolved)
    if differences:
        typer.echo("\nWhere today's prices differ from the seed's:")
        for line in differences:
            typer.echo(f"  {line}")


def _echo_prices(models: list[str], resolved: dict[str, ModelPrice | None]) -> None:
    """Each model's price and its source, under the figures it made."""
    typer.echo("")
    for model in models:
        p = resolved[model]
        shown = f"{p.describe()} [{p.source}]" if p else (
            f"unknown; give it with --price '{model}=IN,OUT' ($ per million tokens)")
        typer.echo(f"  {model}: {shown}")


def _json(results: list[StrategyCost], resolved: dict[str, ModelPrice | None],
          differences: list[str]) -> dict[str, Any]:
    return {
        "strategies": [{
            "name": r.strategy.name,
            "mix": {m: str(s) for m, s in r.strategy.shares},
            "monthly_usd": None if r.monthly_usd is None else str(r.monthly_usd),
            "saving_usd": None if r.saving_usd is None else str(r.saving_usd),
            "saving_pct": None if r.saving_pct is None else str(r.saving_pct),
            "missing_prices": r.missing,
        } for r in results],
        "prices": {m: None if p is None else {
            "input_per_million": str(p.input_per_token * 1_000_000),
            "output_per_million": str(p.output_per_token * 1_000_000),
            "source": p.source} for m, p in resolved.items()},
        "differences_from_seed": differences,
    }


def _replay(config: Path | None, database: str | None, models: list[str], mode: str,
            options: list[str] | None, book: dict[str, ModelPrice | None] | None,
            as_json: bool) -> None:
    from interlock.cli.spend import ledger_source, open_reader_or_exit
    from interlock.costs.simulate import replay
    from interlock.costs.usd import money

    source = ledger_source(config, database)
    resolved = resolve_prices(models, mode, options, book)
    with open_reader_or_exit(source) as reader:
        result = replay(reader.usage(), resolved)
    if as_json:
        from interlock.costs.usd import usd_text

        typer.echo(json.dumps({
            "requests": result.requests, "recorded_usd": usd_text(result.recorded_usd),
            "unpriced": result.unpriced, "priced": result.requests - result.unpriced,
            "by_group": result.by_group,
            "single_model_usd": {m: usd_text(v) for m, v in result.single_model.items()},
            "continued_calls": result.continued_calls,
            "continued_usd": usd_text(result.continued_usd),
            "continued_unpriced": result.continued_unpriced,
        }, indent=2))
        return
    unpriced = (f" ({result.unpriced:,} more with unknown cost, left out of every figure here)"
                if result.unpriced else "")
    typer.echo(f"{result.requests - result.unpriced:,} recorded requests cost "
               f"{money(result.recorded_usd)}{unpriced}")
    for line in _continued_lines(result):
        typer.echo(line)
    typer.echo("On one model alone they would have cost:")
    for model, usd in sorted(result.single_model.items(), key=lambda kv: kv[1]):
        diff = usd - result.recorded_usd
        typer.echo(f"  {model:<28} {money(usd):>12}  ({'+' if diff >= 0 else ''}"
                   f"{money(diff)} vs recorded)")
    for model in (m for m, p in resolved.items() if p is None):
        typer.echo(f"  {model:<28} {'unknown':>12}  (no price)")
    # Without --config these are genai-prices' (or the seed's), not necessarily
    # what the gateway recorded with: shown, so the comparison can be judged.
    _echo_prices(models, resolved)


def _continued_lines(result: Replay) -> list[str]:
    """What the recorded cost holds of streams continued on another deployment:
    their first calls were billed, though each stream is one request here."""
    from interlock.costs.usd import money

    lines = []
    if result.continued_calls:
        lines.append(f"  of which {money(result.continued_usd)} on the first calls of "
                     f"{result.continued_calls:,} streams continued on another deployment "
                     "(billed; each stream is one request here, priced below on its "
                     "answering call)")
    if result.continued_unpriced:
        lines.append(f"  ({result.continued_unpriced:,} first calls of continued streams have "
                     "unknown cost: the recorded figure lacks them)")
    return lines


def register(app: typer.Typer) -> None:
    cost_app.command("simulate")(simulate_command)
    app.add_typer(cost_app, name="cost")
