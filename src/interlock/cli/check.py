"""`interlock check --config FILE`: would `interlock serve` start, and what to look at.

For a config about to be deployed (a CI step, a review): it is loaded and the
gateway is built exactly as `serve` builds them (routers read, the master key
checked against the address to bind), without listening, calling a provider or
opening the ledger. It prints the model groups with their deployments, each
deployment's availability, limits (the input limit with where it came from, when
model data rather than the config gave it, and with pre-call checks on the prompt
estimate above which they skip it) and price, the auth and the ledger,
and the warnings loading gave. With `--connect` it also reaches the ledger's database
and Redis, where the config names them: serve starts without them (rows wait
in memory, limits and cooldowns fall back to the process), so a deploy step is
where their absence is worth a failure.

Exit status: 0 ready; 1 would start, but something needs a look (a warning, a
deployment without its key, a deployment whose cost would be unknown, a budget
that matches no call or cannot count one); 2 would not start (the error is
printed as `serve` prints it).

Imports: typer, the standard library, `cli.paths`, `errors`; `config`, `gateway`,
`server.app`, `dispatch.selection`, `costs.schema`, `costs.budget_periods`, `types`,
sqlalchemy and redis inside the command.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interlock.cli.paths import nearest_existing
from interlock.errors import failure_said, redact

if TYPE_CHECKING:
    from interlock.catalog import Deployment
    from interlock.config.schema import InterlockConfig
    from interlock.gateway import Gateway


def check_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.",
                                         exists=True, dir_okay=False, readable=True)],
    host: Annotated[str | None, typer.Option(
        help="The address serve would bind (default: general_settings.host, else "
             "127.0.0.1); a server without a master key may only bind a loopback one.")
    ] = None,
    connect: Annotated[bool, typer.Option(
        help="Also connect to the ledger's database and to Redis, where configured.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a config as `serve` would load it, without serving: exit 0 ready,
    1 ready with something to look at, 2 would not start."""
    from interlock.cli.spend import load_config_or_exit
    from interlock.errors import ConfigError, RouterNotTrained
    from interlock.gateway import Gateway
    from interlock.server.app import create_app

    loaded = load_config_or_exit(config)
    bind = host or loaded.general_settings.host or "127.0.0.1"
    try:
        gateway = Gateway(loaded)
        create_app(loaded, host=bind, gateway=gateway)
    except (ConfigError, RouterNotTrained) as exc:  # serve would stop on either
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    report = _report(loaded, gateway, bind)
    if connect:
        report["connections"] = _connections(loaded)
        report["to_look_at"] += [f"{c['what']} is unreachable: {c['error']}"
                                 for c in report["connections"] if c["error"]]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    raise typer.Exit(1 if report["to_look_at"] else 0)


def _report(config: InterlockConfig, gateway: Gateway, bind: str) -> dict[str, Any]:
    from interlock.config.loading import names_holding_keys
    from interlock.costs.prices import unknown_price
    from interlock.key_names import NOT_SHOWN, holds_key_like
    from interlock.server.app import master_key_from

    # A client key named like a key, or holding one, is warned of at load; its
    # name is not printed here (`check`'s output goes to terminals and CI logs).
    holding = names_holding_keys(config.general_settings)

    def shown(name: str) -> str:
        return NOT_SHOWN if name in holding or holds_key_like(name) else name

    deployments = []
    for d in gateway.catalog.deployments():
        price = gateway.prices.price_for(d)
        deployments.append({
            "name": d.name, "group": d.group, "model": d.qualified_model,
            "available": d.available, "unavailable_reason": d.unavailable_reason,
            "rpm": d.rpm, "tpm": d.tpm, "max_parallel_requests": d.max_parallel_requests,
            # The limit the pre-call checks use, and whether the config or model
            # data gave it (a figure from the data may be worth overriding).
            "max_input_tokens": d.max_input_tokens,
            "max_input_tokens_from": d.max_input_tokens_from,
            "max_input_tokens_listed": d.max_input_tokens_listed,
            # The prompt estimate above which those checks skip it: a model
            # table's window is held to the estimate more loosely than a
            # configured limit, so the limit alone would mislead.
            "skipped_above_estimated_tokens": _skipped_above(config, d),
            "price": price.describe() if price is not None else None})
    to_look_at = [f"warning: {w}" for w in config.warnings]
    # A missing key is among the warnings already; another reason is listed here.
    to_look_at += [f"{d['name']} is unavailable: {d['unavailable_reason']}"
                   for d in deployments if not d["available"]
                   and not any(str(d["unavailable_reason"]) in w for w in config.warnings)]
    unpriced = set(gateway.prices.unknown())  # priced once, by the book
    to_look_at += [f"{d.name} has no known price: {unknown_price(d)}"
                   for d in gateway.catalog.deployments() if d.name in unpriced]
    to_look_at += _budget_findings(config, gateway, {str(d["name"]) for d in deployments
                                                     if d["price"] is None})
    ledger = config.ledger
    return {
        "config": str(config.source),
        "groups": gateway.catalog.group_names,
        # The learned routers' names too: with routing's strong and weak groups set,
        # clients may ask for router-<name>-<threshold> at any threshold.
        "names_clients_can_ask_for": gateway.model_names() + [
            f"router-{r}-<threshold>" for r in gateway.routing.alias_routers()],
        "deployments": deployments,
        # As create_app reads it (the config's key, else the environment's).
        "auth": ("master key set" if master_key_from(config, os.environ)
                 else f"OFF (allow_unauthenticated, on {bind} only)"),
        "client_keys": [shown(k.name) for k in config.general_settings.api_keys],
        # The keys with limits of their own, and those limits.
        "client_key_limits": {
            shown(k.name): limits for k in config.general_settings.api_keys
            if (limits := k.model_dump(include={"rpm_limit", "tpm_limit",
                                                "max_parallel_requests"}, exclude_none=True))},
        "budgets": [{"target": b.target[0], "name": b.target[1], "period": b.period,
                     "max_usd": str(b.max_usd)} for b in config.budgets],
        "ledger": (ledger.model_dump(mode="json")["database"]
                   if ledger is not None and ledger.database else None),
        "to_look_at": to_look_at,
    }


def _budget_findings(config: InterlockConfig, gateway: Gateway,
                     unpriced: set[str]) -> list[str]:
    """Budgets that would not hold: one no deployment falls under, and one over
    deployments without a price, whose calls it cannot count."""
    from interlock.costs.budget_periods import covers
    from interlock.types import ChatRequest

    deployments = list(gateway.catalog.deployments())
    findings = []
    for index, budget in enumerate(config.budgets):
        kind, name = budget.target
        # A request of the budget's own end user or client key: the ones it counts.
        asked = ChatRequest(model="", messages=[], user=name, api_key_id=name)
        covered = [d for d in deployments if covers(budget, d, asked)]
        blind = [d.name for d in covered if d.name in unpriced]
        head = f"budgets[{index}] ({kind} {name}, {budget.limit})"
        if not covered:  # a provider: load checked the other names exist
            providers = sorted({d.provider for d in deployments})
            findings.append(f"{head} matches no call: no deployment in model_list is of "
                            f"{kind} {name} (their providers: {', '.join(providers)})")
        elif len(blind) == len(covered):
            findings.append(f"{head} cannot be enforced: no deployment it covers has a known "
                            f"price ({', '.join(blind)}), so its calls cost 'unknown' and the "
                            "budget never moves; give them prices (input_cost_per_token, "
                            "output_cost_per_token or prices:)")
        elif blind:
            findings.append(f"{head} does not count calls to {', '.join(blind)}: "
                            + ("its price is unknown" if len(blind) == 1
                               else "their prices are unknown"))
    return findings


def _connections(config: InterlockConfig) -> list[dict[str, Any]]:
    """Each external service the config names: reached, or why not (redacted)."""
    out = []
    ledger = config.ledger
    if ledger is not None and ledger.database:
        shown = ledger.model_dump(mode="json")["database"]
        error = _failure(lambda: _reach_database(ledger.database or ""))
        out.append({"what": f"ledger database {shown}", "error": error,
                    "note": None if error else _sqlite_note(ledger.database)})
    redis_url = config.router_settings.redis_connection_url()
    if redis_url:
        out.append({"what": f"Redis {redact(redis_url)}",
                    "error": _failure(lambda: _reach_redis(redis_url))})
    return out


def _failure(reach: Callable[[], None]) -> str | None:
    try:
        reach()
    except Exception as exc:  # the reason is what the operator needs; redacted
        return failure_said(exc)
    return None


def _sqlite_folder_can_be_made(folder: Path) -> None:
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise NotADirectoryError(f"{existing} is a file, so the folder {folder} for the "
                                 "SQLite file cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"the folder {folder} for the SQLite file "
                              + ("is not writable" if existing == folder else
                                 f"cannot be made: {existing} is not writable"))


def _sqlite_note(database: str) -> str | None:
    """What serve will do about a SQLite file's missing folder."""
    import sqlalchemy as sa

    from interlock.costs.schema import database_url

    url = sa.make_url(database_url(database))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    folder = Path(url.database).resolve().parent
    return None if folder.is_dir() else f"serve will create the folder {folder}"


def _reach_database(database: str) -> None:
    import sqlalchemy as sa

    from interlock.costs.schema import make_engine

    # A SQLite file is made at the first write, in a folder serve creates if it
    # is missing (as the ledger's writer does): what must hold is that it can.
    engine = make_engine(database, connect_timeout=5.0, create_dirs=False)
    try:
        if engine.url.get_backend_name() == "sqlite" and engine.url.database:
            _sqlite_folder_can_be_made(Path(engine.url.database).resolve().parent)
            return
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def _reach_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def _print(report: dict[str, Any]) -> None:
    echo = typer.echo
    echo(f"config: {report['config']}")
    echo(f"auth: {report['auth']}"
         + (f"; client keys: {', '.join(report['client_keys'])}" if report["client_keys"]
            else ""))
    for name, limits in report["client_key_limits"].items():
        echo(f"client key {name}: " + ", ".join(f"{k} {v:,}" for k, v in limits.items()))
    echo(f"ledger: {report['ledger'] or 'off'}")
    echo(f"clients may ask for: {', '.join(report['names_clients_can_ask_for'])}")
    for c in report.get("connections", ()):
        echo(f"{c['what']}: "
             + ("UNREACHABLE" if c["error"] is not None else c.get("note") or "reached"))
    for b in report["budgets"]:
        period = b["period"]
        every = f"a {period}" if isinstance(period, str) else f"every {period:g} hours"
        echo(f"budget: {b['target']} {b['name']}: ${b['max_usd']} {every}")
    for group in report["groups"]:
        echo(f"group {group}:")
        for d in report["deployments"]:
            if d["group"] != group:
                continue
            limits = ", ".join(f"{k} {d[k]}" for k in ("rpm", "tpm", "max_parallel_requests")
                               if d[k] is not None)
            if d["max_input_tokens"] is not None:
                limits += (", " if limits else "") + _input_limit(d)
            state = "ready" if d["available"] else "UNAVAILABLE"
            echo(f"  {d['name']}  {d['model']}  {state}"
                 + (f"  [{limits}]" if limits else "")
                 + f"  {d['price'] or 'price unknown'}")
    if report["to_look_at"]:
        echo(f"to look at ({len(report['to_look_at'])}):")
        for item in report["to_look_at"]:
            echo(f"  - {item}")
        echo("result: serve would start")
    else:
        echo("result: ready")


def _skipped_above(config: InterlockConfig, deployment: Deployment) -> int | None:
    """The prompt estimate above which the pre-call checks skip the deployment,
    as they compute it; None without a limit, or with the checks off."""
    from interlock.dispatch.selection import largest_fitting_estimate

    settings = config.router_settings
    if not settings.enable_pre_call_checks:
        return None
    largest = largest_fitting_estimate(deployment, settings.pre_call_safety_margin)
    # Floored: an estimate of exactly the next whole number is already skipped.
    return None if largest is None else math.floor(largest)


def _input_limit(deployment: dict[str, Any]) -> str:
    """The input limit as the pre-call checks hold it: a model table's window
    'window 128000 tokens (genai-prices openai/gpt-4o; skipped only above
    ~170,666 estimated)'; the config's own 'max_input_tokens 50000 (skipped
    above ~47,500 estimated)', as the other limits are shown."""
    skipped_above = deployment["skipped_above_estimated_tokens"]
    if deployment["max_input_tokens_listed"]:
        cutoff = (f"skipped only above ~{skipped_above:,} estimated"
                  if skipped_above is not None else "pre-call checks off")
        return (f"window {deployment['max_input_tokens']} tokens "
                f"({deployment['max_input_tokens_from']}; {cutoff})")
    text = f"max_input_tokens {deployment['max_input_tokens']}"
    if skipped_above is not None:
        text += f" (skipped above ~{skipped_above:,} estimated)"
    return text


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
