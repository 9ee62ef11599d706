"""`interlock keys generate|update|list|delete --config FILE`: run-time client keys.

The same keys as the gateway's `/key/*` API (`key_store`), made in the config's
ledger database directly, so that an operator needs no running gateway and no
master key in a shell: running gateways know a new key, or forget a revoked one,
within five seconds. A key's `models` are checked against the config's names and
its name against the config's own keys, as the API checks them.

Imports: typer, the standard library; `config`, `costs.budgets`, `gateway`,
`key_store` and `server.*` inside the commands.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

keys_app = typer.Typer(help="Client keys made at run time, kept in the ledger's database.",
                       no_args_is_help=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="YAML config file.",
                                            exists=True, dir_okay=False, readable=True)]


def _store(config: Path) -> tuple[Any, Any]:
    """(the loaded config, a KeyStore on its ledger), or exit 2 saying why."""
    from interlock.cli.spend import load_config_or_exit
    from interlock.key_store import KeyStore

    loaded = load_config_or_exit(config)
    if loaded.ledger is None or not loaded.ledger.database:
        typer.echo("error: client keys are kept in the ledger's database, and this config "
                   "has none: set ledger.database", err=True)
        raise typer.Exit(2)
    return loaded, KeyStore(loaded.ledger)


async def _run(store: Any, work: Any) -> Any:
    """`work(store)` with the store's keys read first; the database errors
    become exit 1 with the error's class (its text could quote the URL)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        await store.read()
        return await work(store)
    except SQLAlchemyError as exc:
        typer.echo(f"error: the ledger's database could not be used ({type(exc).__name__})",
                   err=True)
        raise typer.Exit(1) from None
    finally:
        await store.aclose()


ModelsOption = Annotated[str | None, typer.Option(
    help="Comma-separated names it may ask for ('*' for all; a new key given none may ask"
    " for all).")]
RpmOption = Annotated[int | None, typer.Option(help="Requests a minute.")]
TpmOption = Annotated[int | None, typer.Option(help="Tokens a minute.")]
ParallelOption = Annotated[int | None, typer.Option(
    help="Requests at once: over all gateways and workers when router_settings name "
         "Redis (redis_url or redis_host), else in each gateway process.")]
DurationOption = Annotated[str | None, typer.Option(
    help="How long it lasts from now: 2w, 30d, 12h, 15m, 45s, or seconds "
         "(default: until deleted).")]
BudgetOption = Annotated[str | None, typer.Option(
    help="Dollars its requests may spend a period.")]
PeriodOption = Annotated[str | None, typer.Option(
    help="The budget's period: day, month (the default) or a number of hours; "
         "calendar periods in UTC.")]


def _asked(loaded: Any, fields: dict[str, Any], *, new: bool) -> tuple[Any, Any]:
    """(the fields as the API reads them, the lifetime), checked as the API checks
    them; exit 2 saying what is wrong."""
    from pydantic import ValidationError

    from interlock.gateway import Gateway
    from interlock.server.key_admin import (
        GenerateKey,
        first_problem,
        models_problem,
        new_key_problem,
    )

    if isinstance(fields.get("models"), str):
        fields["models"] = [m.strip() for m in fields["models"].split(",") if m.strip()]
    try:
        asked = GenerateKey.model_validate(fields)
        lifetime = asked.lifetime()
    except (ValidationError, ValueError) as exc:
        typer.echo(f"error: {first_problem(exc)}", err=True)
        raise typer.Exit(2) from None
    gateway = Gateway(loaded)
    problem = (new_key_problem(gateway, asked, {k.name for k in loaded.general_settings.api_keys})
               if new else models_problem(gateway, asked.models))
    if problem is not None:
        typer.echo(f"error: {problem[0]}", err=True)
        raise typer.Exit(2)
    return asked, lifetime


@keys_app.command("generate")
def generate_command(
    name: Annotated[str, typer.Argument(help="What the ledger records the key's requests as.")],
    config: ConfigOption, models: ModelsOption = None, rpm_limit: RpmOption = None,
    tpm_limit: TpmOption = None, max_parallel_requests: ParallelOption = None,
    duration: DurationOption = None, max_budget: BudgetOption = None,
    budget_period: PeriodOption = None,
) -> None:
    """Make a key and print it (this once: only a digest of it is kept)."""
    from interlock.key_store import KeyNameTaken
    from interlock.server.key_admin import name_taken

    loaded, store = _store(config)
    asked, lifetime = _asked(loaded, {
        "name": name, "models": models, "rpm_limit": rpm_limit, "tpm_limit": tpm_limit,
        "max_parallel_requests": max_parallel_requests, "duration": duration,
        "max_budget": max_budget, "budget_period": budget_period}, new=True)

    async def make(s: Any) -> Any:
        return await s.generate(name, models=asked.models, rpm_limit=asked.rpm_limit,
                                tpm_limit=asked.tpm_limit,
                                max_parallel_requests=asked.max_parallel_requests,
                                lifetime=lifetime, max_budget=asked.max_budget,
                                budget_period=asked.budget_period)

    try:
        token, key = asyncio.run(_run(store, make))
    except KeyNameTaken:
        typer.echo(f"error: {name_taken(name)}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)
    expires = f", until {key.expires_at.isoformat()}" if key.expires_at else ""
    typer.echo(f"# {key.name}: shown this once; running gateways know it within 5 s{expires}",
               err=True)


@keys_app.command("update")
def update_command(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    config: ConfigOption, models: ModelsOption = None, rpm_limit: RpmOption = None,
    tpm_limit: TpmOption = None, max_parallel_requests: ParallelOption = None,
    duration: DurationOption = None, max_budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    # One flag each: typer would add a --no-<name> twin (--no-no-expiry).
    all_models: Annotated[bool, typer.Option(
        "--all-models", help="Let it ask for every name.")] = False,
    no_expiry: Annotated[bool, typer.Option(
        "--no-expiry", help="Let it last until deleted.")] = False,
    no_budget: Annotated[bool, typer.Option(
        "--no-budget", help="Take its budget away.")] = False,
) -> None:
    """Change a key's models, limits, budget or expiry; what is not given stays."""
    options = {"models": models, "rpm_limit": rpm_limit, "tpm_limit": tpm_limit,
               "max_parallel_requests": max_parallel_requests, "duration": duration,
               "max_budget": max_budget, "budget_period": budget_period}
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if all_models:
        given["models"] = None
    if no_expiry:
        given["duration"] = None
    if no_budget:
        given["max_budget"] = None
    loaded, store = _store(config)
    asked, lifetime = _asked(loaded, {"name": name, **given}, new=False)
    changes = {k: getattr(asked, k) for k in given if k != "duration"}
    if "duration" in given:
        changes["lifetime"] = lifetime

    async def change(s: Any) -> Any:
        return await s.update(name, **changes)

    key = asyncio.run(_run(store, change))
    if key is None:
        typer.echo(f"error: no key made at run time is named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(key.as_dict(), indent=2))


@keys_app.command("list")
def list_command(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The keys made at run time, without the keys themselves."""
    from interlock.costs.settings import per_period

    _, store = _store(config)

    async def listed(s: Any) -> list[Any]:
        return list(s.listed())

    found = [k.as_dict() for k in asyncio.run(_run(store, listed))]
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for key in found:
        limits = ", ".join(f"{k} {key[k]:,}" for k in ("rpm_limit", "tpm_limit",
                                                      "max_parallel_requests") if key[k])
        if key["max_budget"] is not None:
            limits += (", " if limits else "") + (f"budget ${key['max_budget']} "
                                                  f"{per_period(key['budget_period'])}")
        typer.echo(f"{key['name']}  ...{key['key_hint']}  models: "
                   f"{', '.join(key['models']) if key['models'] is not None else 'all'}"
                   + (f"  {limits}" if limits else "")
                   + (f"  expires {key['expires_at']}" if key["expires_at"] else ""))
    if not found:
        typer.echo("no client keys made at run time")


@keys_app.command("delete")
def delete_command(
    names: Annotated[list[str], typer.Argument(help="The keys' names.")],
    config: ConfigOption,
) -> None:
    """Revoke keys by name; running gateways refuse them within 5 s. Exits 1 when
    a name is not found (the others are revoked all the same)."""
    from interlock.key_names import NOT_SHOWN, holds_key_like

    loaded, store = _store(config)

    async def revoke(s: Any) -> Any:
        return await s.delete(names)

    revoked = asyncio.run(_run(store, revoke))
    if revoked.names:
        # A key made before such names were refused is deleted by its name.
        typer.echo("deleted: " + ", ".join(NOT_SHOWN if holds_key_like(n) else n
                                           for n in revoked.names))
    if revoked.missing_names:
        typer.echo(f"error: {_not_found(revoked, loaded, store, len(set(names)))} "
                   f"`interlock keys list --config {shlex.quote(str(config))}` lists the "
                   "keys made at run time; those in the config file are changed there.",
                   err=True)
        raise typer.Exit(1)


def _not_found(revoked: Any, loaded: Any, store: Any, given: int) -> str:
    """How many of the `given` names a delete did not find, and which. A name
    may be a key pasted in its place, and a terminal's lines are scrolled back
    and shared: one that is, holds or looks like a key is only counted."""
    from interlock.server.key_admin import keys_judge, unsaid_names

    hidden = unsaid_names(revoked, keys_judge(loaded.general_settings, lambda: store))
    missing = revoked.missing_names
    if given == 1:
        return ("no key made at run time has that name (not shown: it may be a key)."
                if hidden else f"no key made at run time is named {missing[0]!r}.")
    said = ", ".join(repr(n) for n in missing if n not in hidden)
    if hidden:
        said += (f"{' and ' if said else ''}{len(hidden)}{' more' if said else ''} not "
                 f"shown, as {'it' if len(hidden) == 1 else 'each'} may be a key")
    return (f"{len(missing)} of the {given} names given {'was' if len(missing) == 1 else 'were'}"
            f" not found among the keys made at run time: {said}.")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
