"""The gateway's ASGI application: routes, lifespan and middleware.

    app = create_app(load_config("config.yaml"))

A plain ASGI app (no framework) so that the path from socket to provider is a
few function calls; middleware are plain ASGI classes wrapped around it.
Served by uvicorn (`interlock serve`).

Imports: the standard library, `config`, `gateway`, `key_models`, `server.*`.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from interlock.config import InterlockConfig, load_config
from interlock.errors import ConfigError, UnknownModel
from interlock.gateway import Gateway
from interlock.key_models import unknown_models
from interlock.server import metrics
from interlock.server.asgi_io import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    send_bytes,
    send_error,
    send_json,
    send_plain_error,
)
from interlock.server.auth import BearerAuth, any_threshold, caller_models
from interlock.server.chat import ChatCompletions
from interlock.server.drain import Drain
from interlock.server.embeddings import EmbeddingsEndpoint
from interlock.server.guard import ErrorGuard
from interlock.server.key_admin import METHODS as KEY_PATHS
from interlock.server.key_admin import KeyAdmin
from interlock.server.local_only import LocalOnly, is_loopback

log = logging.getLogger("interlock.server")

DEFAULT_MAX_BODY = 10 * 1024 * 1024


_SERVED = ("Interlock serves POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models, "
           "GET /v1/models/{id}, GET /health/liveness, GET /health/readiness, "
           "GET /health/deployments, GET /health/ledger, GET /metrics and /key/generate, "
           "/key/update, /key/delete, /key/list and /key/info.")


class InterlockApp:
    """Routes requests to handlers; starts and stops the gateway with the server."""

    def __init__(self, gateway: Gateway, *, max_body_bytes: int = DEFAULT_MAX_BODY,
                 tune_gc: bool = False) -> None:
        self.gateway = gateway
        # Found by the connections' protocol (server.connection_limits), which
        # tells it when shutdown begins.
        self.drain = Drain()
        self._chat = ChatCompletions(gateway, max_body_bytes=max_body_bytes, drain=self.drain)
        self._embeddings = EmbeddingsEndpoint(gateway, max_body_bytes=max_body_bytes)
        self._keys = KeyAdmin(gateway, max_body_bytes=max_body_bytes, config_keys={
            k.name for k in gateway.config.general_settings.api_keys})
        self._ready = False
        self._tune_gc = tune_gc
        # /v1/models' `created`: the groups exist (as served) since the app was made.
        self._created = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                await _method_not_allowed(send, "POST")
                return
            await self._chat(scope, receive, send)
        elif path in ("/v1/embeddings", "/embeddings"):
            if method != "POST":
                await _method_not_allowed(send, "POST")
                return
            await self._embeddings(scope, receive, send)
        elif path in ("/v1/models", "/models") or path.startswith(("/v1/models/", "/models/")):
            if method != "GET":
                await _method_not_allowed(send, "GET")
            elif path.endswith("/models"):
                await send_json(send, 200, self._models(scope))
            else:  # retrieve one (an id may hold slashes, as "openai/gpt-4o" does)
                await self._model(path.split("/models/", 1)[1], scope, send)
        elif path in KEY_PATHS:
            await self._keys(scope, receive, send)
        elif not await self._health(path, send):
            # Clients pointed here from a fuller OpenAI-compatible proxy try its
            # other endpoints (legacy completions, images): say what is served.
            await send_plain_error(send, 404, f"No route for {method} {path}. {_SERVED}",
                                   type_="invalid_request_error", code="not_found")

    async def _health(self, path: str, send: Send) -> bool:
        """The health and metrics pages; False when `path` is none of them."""
        if path in ("/health/liveness", "/health/liveliness"):
            await send_json(send, 200, {"status": "alive"})
        elif path == "/health/readiness":
            await self._readiness(send)
        elif path == "/health/deployments":
            await send_json(send, 200, {"deployments": self._deployments()})
        elif path == "/health/ledger":
            # What the ledger holds back and has lost. A database outage does not
            # make the gateway unready, so it is shown here, behind the master key
            # (the counts tell how much traffic the gateway serves).
            ledger = self.gateway.ledger
            await send_json(send, 200, {"ledger": ledger.stats() if ledger else None})
        elif path == "/metrics":
            await send_bytes(send, 200, await metrics.render(self.gateway),
                             content_type=metrics.CONTENT_TYPE)
        else:
            return False
        return True

    def _names(self, scope: Scope) -> list[str]:
        """The names this caller may ask for: all of them, or its key's `models`."""
        allowed = caller_models(scope)
        names = self.gateway.model_names()
        return names if allowed is None else [n for n in names if n in allowed]

    def _models(self, scope: Scope) -> dict[str, Any]:
        return {"object": "list",
                "data": [_model_card(name, self._created) for name in self._names(scope)]}

    async def _model(self, name: str, scope: Scope, send: Send) -> None:
        known = self._names(scope)
        if name in known:
            await send_json(send, 200, _model_card(name, self._created))
        else:  # the same 404 a chat request for that name gets
            await send_error(send, UnknownModel(name, known))

    async def _readiness(self, send: Send) -> None:
        usable = [d.name for d in self.gateway.catalog.deployments() if d.available]
        reason = ("not started, or stopping" if not self._ready else
                  "no deployment is usable" if not usable else None)
        body: dict[str, Any] = {
            "status": "ready" if reason is None else "not ready",
            "started": self._ready, "usable_deployments": len(usable),
        }
        keys = self.gateway.keys
        if keys is not None:
            # Said, not judged: a process started while the ledger's database is
            # away answers run-time keys 503 until it has read them, but serves
            # the master key and config keys, which may be all its traffic (a
            # replica unready for it took the whole service down in a database
            # outage at a deploy).
            body["run_time_keys_read"] = keys.loaded
        if reason is not None:
            body["reason"] = reason
        await send_json(send, 200 if reason is None else 503, body)

    def _deployments(self) -> list[dict[str, Any]]:
        return [h.to_dict() for h in self.gateway.dispatcher.health()]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:  # reported to the server, which refuses to start
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self._tune_gc:
                    tune_collector()
                self._ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._ready = False
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


# Requests in flight hold a few hundred collector-tracked objects each, so at
# concurrency 64 the default threshold (700 allocations) ran a collection every
# few requests, each one walking live objects it could not free: about a tenth
# of a millisecond of CPU per request. Requests make almost no cyclic garbage
# (refcounting frees what they leave), so collecting rarely costs no memory.
GEN0_THRESHOLD = 10_000


def tune_collector() -> None:
    """For a process the server owns, once started: everything alive now
    (modules, config, routers, the ledger's engine) lives as long as the
    process, so freeze it out of the collector's full passes (one walked ~100k
    objects for tens of milliseconds), and collect the young generation less
    often."""
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GEN0_THRESHOLD, gen0), gen1, gen2)


def _model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "interlock"}


async def _method_not_allowed(send: Send, allowed: str) -> None:
    await send_plain_error(send, 405, f"Use {allowed} for this path.",
                           type_="invalid_request_error", code="method_not_allowed",
                           headers=[(b"allow", allowed.encode())])


def master_key_from(config: InterlockConfig, environ: Mapping[str, str]) -> str | None:
    """The config's key, else INTERLOCK_MASTER_KEY in `environ` (which may differ
    from the environment the config was loaded under, in tests and embedders),
    unless the config named a variable of its own that is unset."""
    settings = config.general_settings
    key = settings.master_key
    if key:
        return key.get_secret_value() or None
    if settings.unset_master_key_var is not None:
        return None
    return environ.get("INTERLOCK_MASTER_KEY") or None


def create_app(config: InterlockConfig, *, host: str = "127.0.0.1",
               environ: Mapping[str, str] | None = None,
               gateway: Gateway | None = None, server_process: bool = False) -> ASGIApp:
    """The app with its middleware. Refuses to run without auth unless told to,
    and then only on a loopback address, for requests addressed to it
    (`LocalOnly`). `server_process` is for a process the server owns (`interlock
    serve`): `tune_collector` runs once the gateway has started, and the gateway
    it builds writes its ledger from a child process (unless `ledger.writer:
    thread`)."""
    env = os.environ if environ is None else environ
    settings = config.general_settings
    gateway = gateway or Gateway(config, environ=env, server=server_process)
    app: ASGIApp = InterlockApp(gateway, max_body_bytes=settings.max_request_body_bytes,
                                tune_gc=server_process)
    key = master_key_from(config, env)
    clients = settings.api_keys
    known = gateway.model_names() + [any_threshold(r) for r in gateway.routing.alias_routers()]
    for index, client in enumerate(clients):
        problem = unknown_models(client.models or (), known)
        if problem is not None:
            raise ConfigError(f"general_settings.api_keys[{index}].models: {problem}.")
    if key:
        if config.ledger is not None and config.ledger.database:
            gateway.use_key_store()  # /key/*: client keys made at run time
        try:
            return ErrorGuard(BearerAuth(app, key, clients, gateway.keys))
        except ValueError as exc:
            raise ConfigError(f"general_settings.api_keys: {exc}.") from None
    if settings.unset_master_key_var is not None:
        raise ConfigError(
            f"general_settings.master_key names the environment variable "
            f"{settings.unset_master_key_var}, which is not set: export it. (The gateway "
            "does not fall back to INTERLOCK_MASTER_KEY when the config names a variable.)")
    if clients:
        raise ConfigError(
            "general_settings.api_keys are set but there is no master key: set "
            "general_settings.master_key (or INTERLOCK_MASTER_KEY), which the health and "
            "metrics pages take.")
    if not settings.allow_unauthenticated:
        raise ConfigError(
            "No master key is set. Export INTERLOCK_MASTER_KEY or set "
            "general_settings.master_key; to run without auth on this machine only, set "
            "general_settings.allow_unauthenticated: true and bind to 127.0.0.1.")
    if not is_loopback(host):
        raise ConfigError(
            f"allow_unauthenticated is only allowed on a loopback bind, not {host!r}. "
            "Set a master key to listen on other addresses.")
    log.warning("authentication is OFF (allow_unauthenticated on %s)", host)
    return ErrorGuard(LocalOnly(app))


def app_from_environment() -> ASGIApp:
    """uvicorn factory for `interlock serve --workers N`: each worker process
    loads the config named by INTERLOCK_CONFIG."""
    path = os.environ.get("INTERLOCK_CONFIG")
    if not path:
        raise ConfigError("INTERLOCK_CONFIG is not set; start the server with `interlock serve`.")
    host = os.environ.get("INTERLOCK_HOST", "127.0.0.1")
    return create_app(load_config(path), host=host, server_process=True)
