"""`interlock eval`: cross-validate routers on outcome data and compare them.

Prints the table (APGR, CPT(50%), CPT(80%), strong share for 95 % quality,
dollars per 1,000 requests at 95 %), and optionally writes the JSON report and
the PNG plot.

Imports: typer, the standard library; `evaluation.*`, `routing.data` and `routing.features`
inside the command so `interlock --help` stays quick.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_ROUTERS = "sw_ranking,mf,knn,classifier"


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _unique_routers(text: str) -> list[str]:
    """--routers without repeats (a repeat gives an identical row), with a warning."""
    names = _split(text)
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        typer.echo(f"warning: --routers names {', '.join(repeated)} more than once; "
                   "each is evaluated once", err=True)
    return unique


def _warn_if_swapped(table: Any, strong: str | None, weak: str | None) -> None:
    """The two-model metrics assume the strong model is the better one on the data."""
    if strong is None or weak is None or {strong, weak} - set(table.models):
        return
    mean = table.scores.mean(axis=0)
    s, w = mean[table.models.index(strong)], mean[table.models.index(weak)]
    if s < w:
        typer.echo(f"warning: --strong {strong} scores lower on this data than --weak {weak} "
                   f"({s:.3f} < {w:.3f}), so the metrics come out negative or empty; "
                   "did you swap them?", err=True)


def _run(table: Any, options: Any) -> Any:
    """evaluate(), holding numpy's RuntimeWarnings back: shown after a successful run,
    dropped when a clear error follows (they would only say the same thing worse)."""
    from interlock.evaluation.runner import evaluate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        report = evaluate(table, options)
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return report


def _featurizer_factory(spec: str, params: dict[str, Any]) -> Callable[[], Any] | None:
    """None (the harness default) for plain "hashed"; else a fresh featuriser per fold."""
    if spec == "hashed" and not params:
        return None
    from interlock.routing.features import make_featurizer

    make_featurizer(spec, **params)  # fail before the run, which can take minutes
    return lambda: make_featurizer(spec, **params)


def eval_command(
    data: Annotated[Path, typer.Option(
        "--data", help="Outcome data: RouteLLM CSV directory, CSV, JSONL, Parquet, "
        "or MT-Bench judgements JSONL.")],
    routers: Annotated[str, typer.Option(
        help="Comma-separated routers to cross-validate (random, sw_ranking, mf, knn, "
        "classifier). The random and oracle baselines are always added.")] = DEFAULT_ROUTERS,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for folds and training.")] = 0,
    strong: Annotated[str | None, typer.Option(help="Strong model (two-model metrics).")] = None,
    weak: Annotated[str | None, typer.Option(help="Weak model (two-model metrics).")] = None,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated models to keep from the data (default: all).")] = None,
    questions: Annotated[Path | None, typer.Option(
        help="MT-Bench question file (default: question.jsonl beside the data).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")]
    = None,
    plot: Annotated[Path | None, typer.Option(help="Write the plot as a PNG.")] = None,
    price: Annotated[list[str] | None, typer.Option(
        help="Price override MODEL=IN_PER_M,OUT_PER_M in dollars per million tokens "
        "(repeatable).")] = None,
    output_tokens: Annotated[int, typer.Option(
        min=0, help="Output tokens per request when the data has no token counts.")] = 500,
    random_seeds: Annotated[int, typer.Option(
        min=10, help="Seeds averaged for the random baseline.")] = 10,
    featurizer: Annotated[str, typer.Option(
        help="Prompt features: hashed, st:/local/model or hashed+st:/local/model "
             "(the last two need the embeddings extra).")] = "hashed",
    featurizer_param: Annotated[list[str] | None, typer.Option(
        "--featurizer-param", help="Featuriser parameter name=value (repeatable), e.g. "
        "max_chars=null, dim=64.")] = None,
) -> None:
    """Cross-validate routers on outcome data: table, JSON and plot."""
    from interlock.errors import ConfigError
    from interlock.evaluation.cost_axis import parse_price
    from interlock.evaluation.datasets import load_eval_data
    from interlock.evaluation.report import render_table, report_json
    from interlock.evaluation.runner import EvalOptions
    from interlock.routing.data import rows_summary
    from interlock.routing.training import parse_params

    if plot is not None and find_spec("matplotlib") is None:
        # Said before the run, which can take minutes, not after it.
        typer.echo("error: --plot needs matplotlib: pip install 'interlock[plots]'", err=True)
        raise typer.Exit(2)
    try:
        overrides = dict(parse_price(p) for p in price or [])
        table = load_eval_data(data, models=_split(models) or None, questions=questions)
        if table.dropped:  # said, as train says it: the folds hold only the rows kept
            typer.echo(f"note: {data}: {rows_summary(len(table), table.dropped)}", err=True)
        _warn_if_swapped(table, strong, weak)
        options = EvalOptions(
            routers=_unique_routers(routers), folds=folds, seed=seed, strong=strong, weak=weak,
            prices=overrides, output_tokens=output_tokens, random_seeds=random_seeds,
            featurizer_factory=_featurizer_factory(
                featurizer, parse_params(featurizer_param or [])),
        )
        report = _run(table, options)
    except (ValueError, LookupError, FileNotFoundError, ImportError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(render_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report_json(report), indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {json_out}")
    if plot is not None:
        from interlock.evaluation.plots import save_plot

        typer.echo(f"wrote {save_plot(report, plot)}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
