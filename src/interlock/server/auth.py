"""Bearer-token authentication as a plain ASGI middleware.

The master key is compared in constant time. Client keys (`api_keys`, by name)
are found by the SHA-256 digest of the token, so a request costs one lookup
however many there are, and the key found is then compared in constant time;
a client key reaches the API but not the pages that tell how the gateway is
doing or manage keys (`ADMIN_PATHS`), which take the master key. Keys made at
run time (`key_store`) are looked up the same way, by digest, after the config's.
Until those have been read once (the ledger's database away since the process
started), a token that is no other key may be one of them: it is answered 503
with Retry-After, which clients retry, not 401, which they give up on.
Health probes stay open so that load balancers need no key.

Imports: the standard library, `errors`, `key_names`, `routing.policy`, `server.asgi_io`
(`config` and `key_store` for types).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from interlock.errors import ModelNotAllowed
from interlock.key_names import KEY_ID_PREFIX, KEY_PREFIX, shown_name
from interlock.routing.policy import parse_router_alias
from interlock.server.asgi_io import ASGIApp, Receive, Scope, Send, header, send_plain_error

if TYPE_CHECKING:
    from interlock.config.schema import ClientKey
    from interlock.key_store import KeyStore

OPEN_PATHS = frozenset({"/health/liveness", "/health/readiness", "/health/liveliness"})
ADMIN_PATHS = frozenset({"/health/deployments", "/health/ledger", "/metrics",
                         "/key/generate", "/key/update", "/key/delete", "/key/list",
                         "/key/info"})
# Where an authenticated request's key id waits in the ASGI scope for the handlers,
# and, for a client key that names them, the models it may ask for.
_STATE_KEY = "interlock_key_id"
_MODELS_KEY = "interlock_models"


def key_id(token: str) -> str:
    """A stable, non-reversible name for a key, for the ledger."""
    return KEY_ID_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:12]


def caller_key_id(scope: Scope) -> str | None:
    """The key id `BearerAuth` recorded for this request (None: no auth)."""
    key: str | None = scope.get("state", {}).get(_STATE_KEY)
    return key


def caller_models(scope: Scope) -> frozenset[str] | None:
    """The names this request's key may ask for; None when it may ask for any."""
    models: frozenset[str] | None = scope.get("state", {}).get(_MODELS_KEY)
    return models


def check_model(scope: Scope, model: str) -> None:
    """Raise `ModelNotAllowed` if this request's key may not ask for `model`.
    `router-<name>-*` among a key's models allows that router at any threshold
    (RouteLLM's `router-mf-0.116`)."""
    allowed = caller_models(scope)
    if allowed is not None and model not in allowed:
        alias = parse_router_alias(model)
        if alias is None or any_threshold(alias[0]) not in allowed:
            raise ModelNotAllowed(model, list(allowed))


def any_threshold(router: str) -> str:
    """How a client key's `models` names a router at every threshold."""
    return f"router-{router}-*"


# The bytes every key made at run time starts with.
_RUN_TIME_KEY = KEY_PREFIX.encode()


class BearerAuth:
    def __init__(self, app: ASGIApp, master_key: str,
                 client_keys: Sequence[ClientKey] = (), store: KeyStore | None = None) -> None:
        """`client_keys`: each recorded by its name in the ledger (the master key's
        requests by a digest, `key_id`); `store`: the keys made at run time, looked
        up after the config's."""
        self._store = store
        if not master_key:
            raise ValueError("an empty master key would let anyone in")
        self.app = app
        self._key = master_key.encode()
        self._key_id = key_id(master_key)
        # digest -> (key, name, the models it may ask for or None)
        self._clients: dict[bytes, tuple[bytes, str, frozenset[str] | None]] = {}
        for client in client_keys:
            key, name = client.key.get_secret_value(), client.name
            if not key or key == master_key:
                raise ValueError(f"the api key {name!r} is empty or the master key")
            digest = hashlib.sha256(key.encode()).digest()
            if digest in self._clients:
                raise ValueError(f"the api keys {self._clients[digest][1]!r} and {name!r} "
                                 "are the same key")
            models = frozenset(client.models) if client.models is not None else None
            self._clients[digest] = (key.encode(), name, models)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer(header(scope, b"authorization")) or header(scope, b"x-api-key")
        raw = token.encode() if token is not None else None
        models = None
        if raw is not None and hmac.compare_digest(raw, self._key):
            caller = self._key_id
        else:
            found = self._caller(raw) if raw is not None else None
            if found is None or isinstance(found, str):
                # Checked only here, once the token is no key known: a known
                # key's request does no more work for it. Only a token shaped as a
                # run-time key may be one not read yet; any other is wrong for good.
                if (found is None and raw is not None and raw.startswith(_RUN_TIME_KEY)
                        and self._keys_unread()):
                    await self._keys_not_read_yet(send)
                    return
                await send_plain_error(
                    send, 401, found or self._unknown_key(raw),
                    type_="authentication_error", code="invalid_api_key")
                return
            if scope["path"] in ADMIN_PATHS:
                await send_plain_error(
                    send, 403, "This page takes the gateway's master key, not a client key.",
                    type_="permission_error", code="master_key_required")
                return
            caller, models = found
        state = scope.setdefault("state", {})
        state[_STATE_KEY] = caller
        if models is not None:
            state[_MODELS_KEY] = models
        await self.app(scope, receive, send)

    def _caller(self, raw: bytes) -> tuple[str, frozenset[str] | None] | str | None:
        """(name, models it may ask for) of the client key `raw` is, from the
        config or made at run time; why not, for a run-time key that has expired;
        None when it is no key."""
        token_digest = hashlib.sha256(raw).digest()  # once, for both kinds of key
        if self._clients:
            client = self._client(raw, token_digest)
            if client is not None:
                return client[1], client[2]
        store = self._store
        stored = store.find_digest(token_digest) if store is not None else None
        if store is None or stored is None:
            return None
        if stored.expires_at is not None and stored.expired(store.now()):
            return (f"The API key {shown_name(stored.name)} expired at "
                    f"{stored.expires_at.isoformat()}; ask for a new one.")
        return stored.name, stored.models

    def _unknown_key(self, raw: bytes | None) -> str:
        said = ("Missing or invalid API key. Send the gateway's master key, or a client "
                "key, as 'Authorization: Bearer <key>'.")
        store = self._store
        if store is None or raw is None or not raw.startswith(_RUN_TIME_KEY):
            return said
        # Replicas read the keys made elsewhere every few seconds: without this, a
        # client handed a key made a moment ago on another replica takes the 401
        # for a wrong key and never tries it again.
        return (f"{said} A key made with /key/generate on another replica is known here "
                f"within {math.ceil(store.retry_after)} s of its making; if it was just "
                "made, try it again then.")

    def _keys_unread(self) -> bool:
        store = self._store
        return store is not None and not store.loaded

    async def _keys_not_read_yet(self, send: Send) -> None:
        assert self._store is not None
        retry_after = str(max(1, math.ceil(self._store.retry_after))).encode()
        await send_plain_error(
            send, 503, "The client keys made at run time could not be read from the "
            "ledger's database yet, so this key cannot be checked; retry in a few seconds. "
            "The master key and the config's keys still work.",
            type_="service_unavailable", code="keys_not_loaded",
            headers=[(b"retry-after", retry_after)])

    def _client(self, raw: bytes,
                token_digest: bytes) -> tuple[bytes, str, frozenset[str] | None] | None:
        """The client key `raw` (whose SHA-256 is `token_digest`) is, if it is one."""
        found = self._clients.get(token_digest)
        if found is None or not hmac.compare_digest(raw, found[0]):
            return None
        return found


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()
