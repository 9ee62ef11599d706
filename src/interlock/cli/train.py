"""`interlock train ROUTER --data FILE_OR_DIR --out DIR`: fit a learned router.

Router parameters follow as `--param name=value` (repeatable), for example
`--param k=40` for knn or `--param c=0.5` for the classifier.

Imports: typer, the standard library, `cli.paths`; `routing.training` inside the command.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.paths import nearest_existing


def train_command(
    router: Annotated[str, typer.Argument(
        help="random, sw_ranking, mf, knn, classifier or llm.")],
    data: Annotated[Path, typer.Option(
        "--data", help="Outcome table (RouteLLM CSV, a directory of them, CSV/JSONL/Parquet "
        "with a prompt column and a score column per model) or battles "
        "(prompt, model_a, model_b, winner).")],
    out: Annotated[Path, typer.Option("--out", help="Artefact directory to write.")],
    models: Annotated[str | None, typer.Option(
        help="Comma-separated models to keep (default: every score column).")] = None,
    featurizer: Annotated[str, typer.Option(
        help="'hashed' (built in, offline), 'st:/path/to/sentence-transformers-model' or "
             "'hashed+st:/path/...' (both, for the classifier; needs the embeddings extra).")]
    = "hashed",
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same weights.")] = 0,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Router parameter name=value (repeatable).")] = None,
    featurizer_param: Annotated[list[str] | None, typer.Option(
        "--featurizer-param", help="Featuriser parameter name=value (repeatable), e.g. "
        "max_chars=null max_sparse_chars=null to read whole prompts, dim=64.")] = None,
) -> None:
    """Train a learned router and save it as plain files."""
    from interlock.errors import ConfigError
    from interlock.routing.training import parse_params, train_router

    names = [m.strip() for m in (models or "").split(",") if m.strip()] or None
    _check_out(out)
    started = time.perf_counter()
    try:
        run = train_router(router, data, out, models=names, featurizer=featurizer,
                           featurizer_params=parse_params(featurizer_param or []),
                           seed=seed, params=parse_params(param or []))
    except (ValueError, FileNotFoundError, ImportError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:  # such as a directory where --out's weights.npz goes
        typer.echo(f"error: {exc.filename}: {exc.strerror}; training reads --data and writes "
                   "the router's files into --out: fix or remove that path, or pick another "
                   "--out", err=True)
        raise typer.Exit(2) from exc
    for note in run.notes:
        typer.echo(f"warning: {note}", err=True)
    verb = "saved an untrained" if router == "llm" else "trained"  # no judge offline
    typer.echo(f"{verb} {router} on {data} for models {', '.join(run.models)} "
               f"({run.summary()}) in {time.perf_counter() - started:.1f} s -> {out}")


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot become a directory before training, not after:
    training a large table takes minutes, and its result would be lost."""
    path = nearest_existing(out)
    if not path.is_dir():
        where = "is a file" if path == out else f"lies under the file {path}"
        typer.echo(f"error: --out {out} {where}; name a directory for the router's "
                   "files, such as --out models/mf", err=True)
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
