"""Reading requests and writing responses at the ASGI level.

Small functions over the raw ASGI interface (no framework): the gateway's hot
path is a handful of awaits, which keeps Interlock's overhead low.

Imports: orjson, the standard library, `errors`, `openai_response`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from interlock.errors import InterlockError
from interlock.openai_response import error_dict, plain_error_dict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Response headers as the server sends them: bytes, lower-case names.
Headers = Sequence[tuple[bytes, bytes]]
log = logging.getLogger("interlock.server")


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected before the body was read."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BodyTooLarge as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_bytes(send: Send, status: int, body: bytes, *, content_type: bytes,
                     headers: Headers = ()) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
           *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, body: Any, headers: Headers = ()) -> None:
    await send_bytes(send, status, orjson.dumps(body), content_type=b"application/json",
                     headers=headers)


def error_status_and_headers(error: InterlockError) -> tuple[int, list[tuple[bytes, bytes]]]:
    headers: list[tuple[bytes, bytes]] = []
    # The errors that carry one: NoDeploymentAvailable, ProviderError, KeyRateLimited,
    # BudgetExceeded.
    retry_after: float | None = getattr(error, "retry_after", None)
    if retry_after is not None and error.status_code in (429, 503):
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    if getattr(error, "should_retry", None) is False:
        # OpenAI's and Anthropic's SDKs obey it before their own rules, which retry
        # every 429 at once (twice by default): a spent budget refuses them all.
        headers.append((b"x-should-retry", b"false"))
    return error.status_code, headers


async def send_error(send: Send, error: InterlockError, headers: Headers = ()) -> None:
    status, extra = error_status_and_headers(error)
    if error.client_message is not None:
        # The client is told less than happened (no upstream address): the
        # operator finds the rest here.
        meta = getattr(error, "meta", None)
        log.warning("request %s answered %d: %s", getattr(meta, "request_id", "-"), status,
                    error.message)
    await send_json(send, status, error_dict(error), [*extra, *headers])


async def send_plain_error(send: Send, status: int, message: str, *, type_: str,
                           code: str | None = None, param: str | None = None,
                           headers: Headers = ()) -> None:
    await send_json(send, status, plain_error_dict(message, type_=type_, code=code, param=param),
                    headers)


# A body of JSON `null` parses to None, so "already answered" needs its own marker.
ANSWERED: Any = object()


def _declares_too_much(scope: Scope | None, limit: int) -> bool:
    declared = header(scope, b"content-length") if scope is not None else None
    return declared is not None and declared.isdigit() and int(declared) > limit


async def read_json(receive: Receive, send: Send, limit: int,
                    scope: Scope | None = None) -> Any:
    """The parsed request body, or ANSWERED when the client was already answered
    (a body over `limit`, or not JSON) or has gone. A Content-Length in `scope`'s
    headers over `limit` is answered at once, without waiting for the body."""
    try:
        if _declares_too_much(scope, limit):
            raise BodyTooLarge()
        raw = await read_body(receive, limit)
    except BodyTooLarge:
        await send_plain_error(
            send, 413, f"The request body is larger than the gateway's limit of {limit} "
            "bytes. Send a smaller request, or raise general_settings.max_request_body_bytes.",
            type_="invalid_request_error", code="request_too_large")
        return ANSWERED
    except ClientGone:
        return ANSWERED
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        await send_plain_error(send, 400, _not_json(raw, exc),
                               type_="invalid_request_error", code="invalid_json")
        return ANSWERED


def _not_json(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    # orjson reports bytes that are not UTF-8 as "surrogates not allowed" at a
    # position that is not theirs: find the byte, only once the body has failed.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return (f"The request body is not valid UTF-8: byte 0x{raw[bad.start]:02x} at offset "
                f"{bad.start} cannot start or continue a character. Send JSON encoded as "
                "UTF-8.")
    return f"The request body is not valid JSON ({exc})."


def meta_headers(error: InterlockError) -> list[tuple[bytes, bytes]]:
    """The x-interlock headers of a failed request, when the gateway got that far."""
    meta = getattr(error, "meta", None)
    return meta.headers() if meta is not None else []
