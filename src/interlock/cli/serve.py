"""`interlock serve`: run the OpenAI-compatible gateway.

Imports: typer, `config`, `gateway`, `server.app`, `server.connection_limits`,
`cli.serve_logging`, `cli.uvicorn_run` (uvicorn; inside the command).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from interlock.config import InterlockConfig
    from interlock.gateway import Gateway

log = logging.getLogger(__name__)


def serve(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file.", exists=True,
                                dir_okay=False, readable=True),
    host: str | None = typer.Option(
        None, help="Address to bind (default: general_settings.host, else 127.0.0.1)."),
    port: int | None = typer.Option(
        None, help="Port to listen on (default: general_settings.port, else 4000)."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    drain_timeout: float | None = typer.Option(
        None, help="Seconds in-flight requests get to finish on shutdown "
        "(default: general_settings.drain_timeout, else 30)."),
    log_level: str = typer.Option(
        "warning", help="Log level of Interlock and uvicorn: critical, error, warning, info, "
        "debug or trace."),
    log_format: str = typer.Option(
        "text", help="text (time, level, logger, message) or json (one object a line)."),
    access_log: bool = typer.Option(
        False, help="One line a request (client, request line, status), shown at "
        "--log-level info or below; off by default, as every request is in the ledger."),
) -> None:
    """Serve /v1/chat/completions, /v1/models and health checks."""
    # Routing decisions score one prompt at a time: BLAS threads only add tail
    # latency there (P99 went from under 1 ms to several ms with two threads on
    # a busy 2-core machine). Set before numpy loads; an explicit setting wins.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # The ledger writes from a worker thread; with Python's default 5 ms switch
    # interval a batch being prepared could hold the event loop up that long,
    # which showed as the gateway's P99. The server owns its process, so it can
    # ask for shorter turns.
    sys.setswitchinterval(0.0005)
    from interlock.cli import serve_logging, uvicorn_run
    from interlock.config import load_config
    from interlock.errors import ConfigError, RouterNotTrained
    from interlock.gateway import Gateway
    from interlock.server.app import create_app
    from interlock.server.connection_limits import uvicorn_options

    try:
        logs = serve_logging.log_config(log_level, log_format)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    serve_logging.apply(logs)
    if access_log and log_level.lower() in ("warning", "error", "critical"):
        log.warning("--access-log lines are at level info: add --log-level info to see them")
    try:
        loaded = load_config(config)
        settings = loaded.general_settings
        host = host or settings.host or "127.0.0.1"
        port = port or settings.port or 4000
        # Fails fast on a bad config or auth setting.
        gateway = Gateway(loaded, environ=os.environ, server=True)
        app = create_app(loaded, host=host, gateway=gateway, server_process=True)
    except (ConfigError, RouterNotTrained) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    drain = drain_timeout if drain_timeout is not None else settings.drain_timeout
    common = dict(host=host, port=port, log_level=log_level.lower(), log_config=logs,
                  timeout_graceful_shutdown=drain, lifespan="on", access_log=access_log,
                  backlog=4096, **uvicorn_options(settings))
    # uvicorn binds only after the start line, and an address already taken was
    # its error under a line saying the gateway serves there.
    problem = cannot_listen(host, port)
    if problem is not None:
        said = f"cannot listen on {host}:{port}: {problem}"
        if log_format == "text":
            typer.echo(f"error: {said}", err=True)
        else:  # a record, as every other line is
            log.error("%s", said)
        raise typer.Exit(3)  # uvicorn's own code when a server cannot start
    # uvicorn says nothing below its "info" level: one line, so that an operator
    # sees where the gateway is.
    url = f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"
    groups, names, routers = _served_names(loaded, gateway)
    started = (f"Interlock: serving {url} for {_names_to_ask_for(groups, names, routers)} "
               f"({workers} worker{'s' if workers > 1 else ''})")

    def say_started() -> None:
        if log_format == "text":
            typer.echo(f"{started}; Ctrl-C stops it", err=True)
        else:  # a record among the others, its facts as fields for the log collector
            logging.getLogger(serve_logging.START_LOGGER).info(started, extra={
                serve_logging.FIELDS: {"url": url, "workers": workers, "groups": groups,
                                       "names": names, "routers": routers}})

    if workers == 1:
        # uvicorn exits with its code 3 when the server cannot start (it says why).
        uvicorn_run.serve_until_stopped(app, workers=1, say_started=say_started, **common)
        return
    for warning in per_worker_limits(loaded, workers):
        log.warning("%s", warning)
    # Several workers each build their own gateway from the same file.
    os.environ["INTERLOCK_CONFIG"] = str(config.resolve())
    os.environ["INTERLOCK_HOST"] = host
    uvicorn_run.serve_until_stopped("interlock.server.app:app_from_environment",
                                    workers=workers, say_started=say_started, factory=True,
                                    **common)


def cannot_listen(host: str, port: int) -> str | None:
    """Why a socket cannot be bound to host:port (as uvicorn will bind it, with
    SO_REUSEADDR), and what to do, or None. The socket is closed at once:
    uvicorn binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            return ("no address is known by that name; check --host (or "
                    "general_settings.host)")
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                return (f"{why}. Stop what holds it, or choose another --port (or "
                        "general_settings.port)")
            return f"{why}. Check --host (or general_settings.host): is it this machine's?"
    return None


def per_worker_limits(config: InterlockConfig, workers: int) -> list[str]:
    """The limits that `workers` processes would each count alone, so that together
    they allow up to `workers` times as much: a deployment's calls at once always
    (counted in each process, as LiteLLM counts them), and without Redis client
    keys' calls at once, the rpm/tpm windows and the budgets too. Said once at
    start-up: the config gives no hint of it."""
    from interlock.config import build_catalog

    deployments = list(build_catalog(config).deployments())
    keys = config.general_settings.api_keys
    shared = config.router_settings.redis_connection_url() is not None
    out = []
    capped = [d.name for d in deployments if d.max_parallel_requests is not None]
    if not shared:  # a client key's cap is shared through Redis, a deployment's never
        capped += [f"client key {k.name}" for k in keys if k.max_parallel_requests is not None]
    if capped:
        out.append(f"max_parallel_requests is counted by each of the {workers} workers, so "
                   f"up to {workers} times the cap may run at once ({_some(capped)}); divide "
                   "it by the workers, or run one worker a replica")
    if shared:
        return out
    counted = [what for what, present in (
        ("rpm/tpm windows", any(d.rpm or d.tpm for d in deployments)
         or any(k.rpm_limit or k.tpm_limit for k in keys)),
        ("budgets", bool(config.budgets))) if present]
    if counted:
        out.append(f"without router_settings.redis_url each of the {workers} workers counts "
                   f"its own {' and '.join(counted)}: together they may allow up to "
                   f"{workers} times a limit; set redis_url to share the counts")
    return out


def _served_names(config: InterlockConfig,
                  gateway: Gateway) -> tuple[list[str], list[str], list[str]]:
    """What clients may ask for: the model groups (in the config's order), the
    other names (routed groups, aliases), and the learned routers' RouteLLM-style
    names, which are not in the config as written, so the start line says them."""
    groups = list(config.group_names)
    names = [n for n in gateway.model_names() if n not in groups]
    return groups, names, [f"router-{r}-<threshold>" for r in gateway.routing.alias_routers()]


def _names_to_ask_for(groups: list[str], names: list[str], routers: list[str]) -> str:
    shown = _some(groups + names)
    return shown + "; routers " + ", ".join(routers) if routers else shown


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
