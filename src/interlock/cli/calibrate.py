"""`interlock calibrate ROUTER_DIR --prompts FILE --strong-share 0.3`: the threshold
(two models) or lambda / quality target (N models) that sends that share of your
prompts to the strong model, or keeps within a budget.

Imports: typer, the standard library; `routing.*` inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MODES = ("lambda", "target")


def _two_model(router: object, prompts: list[str], strong: str, weak: str,
               share: float) -> None:
    from interlock.routing.calibrate import calibrate_threshold

    c = calibrate_threshold(router.win_prob(prompts, strong, weak), share)  # type: ignore[attr-defined]
    if c.note:
        typer.echo(f"warning: {c.note}", err=True)
    typer.echo(f"threshold {c.shown}  (strong={strong}, weak={weak}; "
               f"{c.strong_share:.1%} of {len(prompts)} prompts go to the strong model)")
    typer.echo(f"route with: model=\"router-{getattr(router, 'name', 'ROUTER')}-{c.shown}\"")


def _n_model(router: object, prompts: list[str], costs: list[float], share: float | None,
             budget: float | None, mode: str) -> None:
    from interlock.routing.calibrate import calibrate_lambda, calibrate_target

    quality = router.predict_quality(prompts)  # type: ignore[attr-defined]
    fn = calibrate_lambda if mode == "lambda" else calibrate_target
    c = fn(quality, costs, strong_share=share, budget_per_1k=budget)
    typer.echo(f"{c.kind} {c.value:.6g}  ({c.strong_share:.1%} to the priciest model, "
               f"${c.cost_per_1k:,.4g} per 1,000 requests on {len(prompts)} prompts)")


def _costs(text: str, models: list[str]) -> list[float]:
    """--costs as numbers, one per model in the router's order."""
    try:
        costs = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--costs must be numbers separated by commas, one per model in "
                         f"the router's order ({', '.join(models)}); got {text!r}") from None
    if len(costs) != len(models) or any(c < 0 for c in costs):
        raise ValueError(f"--costs needs {len(models)} costs of 0 or more, one per model in "
                         f"the router's order ({', '.join(models)}); got {text!r}")
    return costs


def _check_share_and_mode(share: float | None, pct: float | None, mode: str) -> float | None:
    """The share asked for, by either name. Checked whichever way the run goes: a
    two-model run has no use for --mode, but a misspelt one should not pass unnoticed."""
    if mode not in MODES:
        raise ValueError(f"--mode must be {' or '.join(MODES)}, got {mode!r}")
    if share is not None and pct is not None:
        raise ValueError("give --strong-share or --strong-model-pct, not both: they are two "
                         "names for the same share")
    flag, value = ("--strong-model-pct", pct) if pct is not None else ("--strong-share", share)
    # Not typer's min/max: its "should be less than or equal to 1" does not say that
    # a percentage was given where a share belongs (RouteLLM's pct is a share too).
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{flag} is a share of prompts in [0, 1] (0.3 for 30 %); "
                         f"got {value:g}")
    return value


def _check_n_model(share: float | None, budget: float | None, costs: list[float]) -> None:
    if share is not None and budget is not None:
        raise ValueError("give --strong-share or --budget, not both: each sets the calibration "
                         "on its own")
    if share is None and budget is None:
        raise ValueError("with --costs, give --strong-share or --budget")
    if budget is not None and budget < 0:
        raise ValueError(f"--budget is a cost per 1,000 requests and cannot be negative; "
                         f"got {budget:g}")
    if budget is not None and budget < min(costs):
        typer.echo(f"warning: --budget {budget:g} is below the cheapest model's cost "
                   f"({min(costs):g} per 1,000 requests): no routing stays within it, so the "
                   "calibration sends every prompt to the cheapest model", err=True)


def _two_model_pair(router: object, strong: str | None, weak: str | None) -> tuple[str, str]:
    models = list(router.models)  # type: ignore[attr-defined]
    if (strong is None or weak is None) and len(models) != 2:
        raise ValueError("the router has more than two models: name --strong and --weak")
    default_strong, default_weak = router.strong_weak()  # type: ignore[attr-defined]
    s, w = strong or default_strong, weak or default_weak
    if s == w:
        raise ValueError(f"strong and weak must be different models, both are {s!r}; "
                         f"the router's models: {', '.join(models)}")
    return s, w


def calibrate_command(
    router_dir: Annotated[Path, typer.Argument(help="A trained router's artefact directory.")],
    prompts: Annotated[Path, typer.Option(
        "--prompts", help="Your prompts: JSONL with 'prompt', a text file (one per line) "
        "or training data (outcome table or battles), read as train reads it.")],
    strong_share: Annotated[float | None, typer.Option(
        "--strong-share",
        help="Share of prompts to send to the strong model, in [0, 1] (0.3 for 30 %).")]
    = None,
    # Its own option, not an alias: an error then names the flag that was given,
    # and giving both is refused rather than the last one silently winning.
    strong_model_pct: Annotated[float | None, typer.Option(
        "--strong-model-pct", help="RouteLLM's name for --strong-share (a share there too).")]
    = None,
    strong: Annotated[str | None, typer.Option(help="Strong model (two models).")] = None,
    weak: Annotated[str | None, typer.Option(help="Weak model (two models).")] = None,
    costs: Annotated[str | None, typer.Option(
        help="N models: comma-separated cost per 1,000 requests, in the router's model order.")]
    = None,
    budget: Annotated[float | None, typer.Option(
        help="N models: cost per 1,000 requests to stay within (instead of --strong-share; "
             "give one of the two).")] = None,
    mode: Annotated[str, typer.Option(
        help="N models: 'lambda' (quality - lambda x cost) or 'target' (cheapest reaching).")]
    = "lambda",
) -> None:
    """Print the threshold (or lambda / target) for a strong-model share or a budget."""
    from interlock.errors import ConfigError, RouterNotTrained
    from interlock.routing.calibrate import load_prompts_counted
    from interlock.routing.data import rows_summary
    from interlock.routing.learned import load_router

    try:
        router = load_router(router_dir)
        if router.name == "llm":
            raise ValueError("the llm router asks a live judge model about every prompt; it "
                             "cannot be calibrated offline. Pick its threshold on traffic "
                             "through the gateway, or calibrate another router")
        strong_share = _check_share_and_mode(strong_share, strong_model_pct, mode)
        texts, dropped = load_prompts_counted(prompts)
        if dropped:  # said, as train says it: the share is of the prompts kept
            typer.echo(f"note: {prompts}: {rows_summary(len(texts), dropped)}", err=True)
        if costs is None:
            if strong_share is None:
                raise ValueError("give --strong-share (two models) or --costs (N models)")
            if budget is not None:
                raise ValueError("--budget needs --costs (N models); for two models give "
                                 "--strong-share")
            s, w = _two_model_pair(router, strong, weak)
            _two_model(router, texts, s, w, strong_share)
        else:
            cost_list = _costs(costs, list(router.models))
            _check_n_model(strong_share, budget, cost_list)
            _n_model(router, texts, cost_list, strong_share, budget, mode)
    # ConfigError: a router whose featuriser's model is not on this machine
    # (EmbeddingModelUnavailable), or without the package to load it, as train
    # and eval say it.
    except (RouterNotTrained, ConfigError, ValueError, FileNotFoundError, ImportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
