"""Bearer-token authentication as a plain ASGI middleware.

The master key is compared in constant time. Health probes stay open so that
load balancers need no key.

Imports: the standard library, `server.asgi_io`.
"""

from __future__ import annotations

import hashlib
import hmac

from interlock.server.asgi_io import ASGIApp, Receive, Scope, Send, header, send_plain_error

OPEN_PATHS = frozenset({"/health/liveness", "/health/readiness", "/health/liveliness"})
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
    def __init__(self, app: ASGIApp, master_key: str) -> None:
        if not master_key:
            raise ValueError("an empty master key would let anyone in")
        self.app = app
        self._key = master_key.encode()
        self._key_id = key_id(master_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer(header(scope, b"authorization")) or header(scope, b"x-api-key")
        if token is None or not hmac.compare_digest(token.encode(), self._key):
            await send_plain_error(
                send, 401,
                "Missing or invalid API key. Send the gateway's master key as "
                "'Authorization: Bearer <key>'.",
                type_="authentication_error", code="invalid_api_key")
            return
        scope.setdefault("state", {})[_STATE_KEY] = self._key_id
        await self.app(scope, receive, send)


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()
