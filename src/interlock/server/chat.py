"""POST /v1/chat/completions: OpenAI JSON in, the gateway, OpenAI JSON or SSE out.

A client that disconnects cancels its upstream call: the handler races the
gateway against the ASGI disconnect message. A stream that breaks after its
first byte ends with an OpenAI-format error event and `data: [DONE]`, never a
silent truncation.

Imports: orjson, the standard library, `gateway`, `openai_*`, `errors`, `server.asgi_io`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from interlock.errors import InterlockError
from interlock.gateway import Gateway, GatewayStream, new_request_id
from interlock.openai_request import include_usage, parse_chat_request
from interlock.openai_response import ChunkRenderer, completion_dict, error_dict
from interlock.server.asgi_io import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    read_body,
    send_error,
    send_json,
    send_plain_error,
)
from interlock.types import ChatRequest

log = logging.getLogger("interlock.server")
T = TypeVar("T")
_DONE = b"data: [DONE]\n\n"
# A body of JSON `null` parses to None, so "already answered" needs its own marker.
_ANSWERED = object()
# Seconds a request runs before a task starts watching for its client to leave.
WATCH_AFTER = 0.05


class _Disconnected(Exception):
    pass


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race_disconnect(work: Awaitable[T], receive: Receive) -> T:
    """Run `work` in this task; if the client goes away first, cancel it and raise
    _Disconnected.

    The watcher task starts only once the work has run for `WATCH_AFTER`
    seconds: a request that ends sooner (most of the gateway's own work) never
    pays for creating, starting and cancelling a task, two event-loop turns
    each; a client that leaves early has its upstream call cancelled at most
    that much later."""
    current = asyncio.current_task()
    loop = asyncio.get_running_loop()
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await _until_disconnect(receive)
        gone = True
        if current is not None:
            current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise _Disconnected() from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


@dataclass(slots=True)
class _Call:
    """One chat request as the handler carries it."""

    request: ChatRequest
    request_id: str
    key_id: str | None
    arrived: float  # perf_counter at arrival, so reported overhead includes parsing
    include_usage: bool


class ChatCompletions:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()
        body = await self._read_json(receive, send)
        if body is _ANSWERED:
            return
        try:
            request = self.gateway.bounded_for_client(parse_chat_request(body))
        except InterlockError as exc:
            await send_error(send, exc)
            return
        call = _Call(request, new_request_id(), scope.get("state", {}).get("interlock_key_id"),
                     arrived, include_usage(body))
        try:
            if request.stream:
                await self._stream(call, receive, send)
            else:
                await self._complete(call, receive, send)
        except _Disconnected:
            log.info("client disconnected; request %s cancelled", call.request_id)

    async def _read_json(self, receive: Receive, send: Send) -> Any:
        """The parsed body, or _ANSWERED when the client was already answered (or gone)."""
        try:
            raw = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await send_plain_error(
                send, 413, f"The request body is larger than the gateway's limit of "
                f"{self.max_body_bytes} bytes. Send a smaller request, or raise "
                "general_settings.max_request_body_bytes.",
                type_="invalid_request_error", code="request_too_large")
            return _ANSWERED
        except ClientGone:
            return _ANSWERED
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await send_plain_error(
                send, 400, f"The request body is not valid JSON ({exc}).",
                type_="invalid_request_error", code="invalid_json")
            return _ANSWERED

    async def _complete(self, call: _Call, receive: Receive, send: Send) -> None:
        try:
            done = await _race_disconnect(self.gateway.complete(
                call.request, request_id=call.request_id, key_id=call.key_id,
                arrived=call.arrived), receive)
        except InterlockError as exc:
            await send_error(send, exc, _meta_headers(exc))
            return
        await send_json(send, 200, completion_dict(done.response, request_id=call.request_id),
                        done.meta.headers())

    async def _stream(self, call: _Call, receive: Receive, send: Send) -> None:
        # One race for opening and writing: one timer per stream, and at most one
        # watcher task, instead of one of each per phase.
        await _race_disconnect(self._open_and_write(call, send), receive)

    async def _open_and_write(self, call: _Call, send: Send) -> None:
        try:
            stream = await self.gateway.stream(
                call.request, request_id=call.request_id, key_id=call.key_id,
                arrived=call.arrived)
        except InterlockError as exc:
            # Nothing has been sent yet, so this is still a plain HTTP error.
            await send_error(send, exc, _meta_headers(exc))
            return
        try:
            await _SseWriter(send, stream, call.request_id, call.include_usage).run()
        finally:
            await stream.aclose()


def _meta_headers(exc: InterlockError) -> list[tuple[str, str]]:
    meta = getattr(exc, "meta", None)
    return meta.headers() if meta is not None else []


def _event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class _SseWriter:
    """Writes a stream as SSE, one send per batch of deltas: when the upstream
    delivers several events in one read they leave in one send, instead of one
    send per event (about a quarter of a streamed call's CPU in the overhead
    profile). The first token is never held back: the adapter hands it on alone
    and it is sent at once. A batch after which the stream ends without waiting
    (`DeltaBatch.final`) goes out with the end, the usage chunk and `[DONE]`."""

    def __init__(self, send: Send, stream: GatewayStream, request_id: str,
                 include_usage: bool) -> None:
        self.send = send
        self.stream = stream
        self.request_id = request_id
        self.include_usage = include_usage
        self._render = ChunkRenderer(request_id)

    async def run(self) -> None:
        meta = self.stream.meta
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no")]
        headers += [(k.encode(), v.encode("latin-1", "replace")) for k, v in meta.headers()]
        send = self.send
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        held = b""
        try:
            async for batch in self.stream.batches():
                body = held + self._render.sse(batch.deltas, plain=batch.plain)
                if batch.final:
                    held = body
                else:
                    held = b""
                    if body:
                        await send({"type": "http.response.body", "body": body,
                                    "more_body": True})
        except InterlockError as exc:
            log.warning("stream %s broke after its first byte: %s", self.request_id,
                        exc.message)
            end = _event(error_dict(exc))
        except Exception:
            # A bug must still end the stream with an error event, not a clean [DONE].
            log.exception("stream %s failed inside Interlock", self.request_id)
            end = _event(error_dict(InterlockError(
                "Interlock hit an unexpected internal error mid-stream; it has been logged.")))
        else:
            end = _event(self._render.usage_chunk(
                self.stream.response().usage, self.stream.meta.stream_summary())
            ) if self.include_usage else b""
        await send({"type": "http.response.body", "body": held + end + _DONE,
                    "more_body": False})
