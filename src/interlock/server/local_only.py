"""Without a key, answer only this machine's own clients, not web pages.

`allow_unauthenticated` serves on a loopback address only, but a web page the
operator visits runs on the same machine: it could POST a chat request as
`Content-Type: text/plain` (a "simple" request, which browsers send across
origins without asking), spending on the operator's providers, and through DNS
rebinding (a name of the page's that now resolves to 127.0.0.1) read the
answers too. `LocalOnly` wraps the app only when auth is off, so keyed
gateways pay nothing for it, and refuses:

- a Host that is not a loopback name or address (localhost, 127.0.0.1, [::1],
  any port): a rebound name is the page's, never one of these (403);
- a POST body not declared `application/json`: a page can send JSON across
  origins only after a CORS preflight, which the gateway never grants (415).

Imports: the standard library, `server.asgi_io`.
"""

from __future__ import annotations

import ipaddress

from interlock.server.asgi_io import ASGIApp, Receive, Scope, Send, header, send_plain_error


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or a Host name, no port) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name or address of a Host header, without its port or an IPv6 literal's
    brackets."""
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def is_json(content_type: str | None) -> bool:
    return (content_type is not None
            and content_type.partition(";")[0].strip().lower() == "application/json")


class LocalOnly:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or await _allowed(scope, send):
            await self.app(scope, receive, send)


async def _allowed(scope: Scope, send: Send) -> bool:
    """Whether the request may go on; if not, it has been answered why."""
    host = header(scope, b"host")
    if host is None or not is_loopback(host_name(host)):
        shown = "no Host header" if host is None else f"Host {host[:100]!r}"
        await send_plain_error(
            send, 403, f"Without a key this gateway answers only requests addressed to "
            f"this machine (Host localhost, 127.0.0.1 or [::1]), not {shown}. Use "
            "http://127.0.0.1:<port>, or set a master key to serve other names.",
            type_="permission_error", code="host_not_allowed")
        return False
    content_type = header(scope, b"content-type")
    if scope["method"] == "POST" and not is_json(content_type):
        shown = repr(content_type[:100]) if content_type else "none"
        await send_plain_error(
            send, 415, "Without a key this gateway takes request bodies only as "
            f"'Content-Type: application/json' (this request's: {shown}), so that "
            "web pages cannot send them. Send that header with the JSON body.",
            type_="invalid_request_error", code="unsupported_media_type")
        return False
    return True
