"""Bearer-token authentication as a plain ASGI middleware.

The master key is compared in constant time. Client keys (`api_keys`, by name)
are found by the SHA-256 digest of the token, so a request costs one lookup
however many there are, and the key found is then compared in constant time;
a client key reaches the API but not the pages that tell how the gateway is
doing (`ADMIN_PATHS`), which take the master key. Health probes stay open so
that load balancers need no key.

Imports: the standard library, `server.asgi_io`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from interlock.server.asgi_io import ASGIApp, Receive, Scope, Send, header, send_plain_error

OPEN_PATHS = frozenset({"/health/liveness", "/health/readiness", "/health/liveliness"})
ADMIN_PATHS = frozenset({"/health/deployments", "/health/ledger", "/metrics"})
# Where an authenticated request's key id waits in the ASGI scope for the handlers.
_STATE_KEY = "interlock_key_id"


def key_id(token: str) -> str:
    """A stable, non-reversible name for a key, for the ledger."""
    return "key-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def caller_key_id(scope: Scope) -> str | None:
    """The key id `BearerAuth` recorded for this request (None: no auth)."""
    key: str | None = scope.get("state", {}).get(_STATE_KEY)
    return key


class BearerAuth:
    def __init__(self, app: ASGIApp, master_key: str,
                 client_keys: Mapping[str, str] | None = None) -> None:
        """`client_keys`: name -> key, each name what the ledger records for its
        requests (the master key's is a digest, `key_id`)."""
        if not master_key:
            raise ValueError("an empty master key would let anyone in")
        self.app = app
        self._key = master_key.encode()
        self._key_id = key_id(master_key)
        self._clients: dict[bytes, tuple[bytes, str]] = {}
        for name, key in (client_keys or {}).items():
            if not key or key == master_key:
                raise ValueError(f"the api key {name!r} is empty or the master key")
            digest = hashlib.sha256(key.encode()).digest()
            if digest in self._clients:
                raise ValueError(f"the api keys {self._clients[digest][1]!r} and {name!r} "
                                 "are the same key")
            self._clients[digest] = (key.encode(), name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer(header(scope, b"authorization")) or header(scope, b"x-api-key")
        raw = token.encode() if token is not None else None
        caller: str | None = None
        if raw is not None and hmac.compare_digest(raw, self._key):
            caller = self._key_id
        elif raw is not None and self._clients and (caller := self._client(raw)) is not None:
            if scope["path"] in ADMIN_PATHS:
                await send_plain_error(
                    send, 403, "This page takes the gateway's master key, not a client key.",
                    type_="permission_error", code="master_key_required")
                return
        else:
            await send_plain_error(
                send, 401,
                "Missing or invalid API key. Send the gateway's master key, or a key from "
                "general_settings.api_keys, as 'Authorization: Bearer <key>'.",
                type_="authentication_error", code="invalid_api_key")
            return
        scope.setdefault("state", {})[_STATE_KEY] = caller
        await self.app(scope, receive, send)

    def _client(self, raw: bytes) -> str | None:
        """The name of the client key `raw` is, if it is one."""
        found = self._clients.get(hashlib.sha256(raw).digest())
        if found is None or not hmac.compare_digest(raw, found[0]):
            return None
        return found[1]


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()
