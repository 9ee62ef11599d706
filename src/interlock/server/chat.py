"""POST /v1/chat/completions: OpenAI JSON in, the gateway, OpenAI JSON or SSE out.

A client that disconnects cancels its upstream call (`server.disconnect`). A
stream that breaks after its first byte ends with an OpenAI-format error event
and `data: [DONE]`, never a silent truncation.

Imports: orjson, the standard library, `gateway`, `openai_*`, `errors`, `server.asgi_io`,
`server.auth`, `server.disconnect`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.errors import GatewayShuttingDown, InterlockError
from interlock.gateway import Gateway, GatewayStream, new_request_id
from interlock.openai_request import include_usage, parse_chat_request
from interlock.openai_response import ChunkRenderer, completion_dict, error_dict
from interlock.server.asgi_io import (
    ANSWERED,
    Receive,
    Scope,
    Send,
    meta_headers,
    read_json,
    send_error,
    send_json,
)
from interlock.server.auth import caller_key_id, check_model
from interlock.server.disconnect import Disconnected, race_disconnect
from interlock.server.drain import Drain
from interlock.types import ChatRequest

log = logging.getLogger("interlock.server")
_DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class _Call:
    """One chat request as the handler carries it."""

    request: ChatRequest
    request_id: str
    key_id: str | None
    arrived: float  # perf_counter at arrival, so reported overhead includes parsing
    include_usage: bool
    answered: bool = False  # the response has begun: a shutdown cut can no longer answer


class ChatCompletions:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int,
                 drain: Drain | None = None) -> None:
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes
        self.drain = drain or Drain()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()
        body = await read_json(receive, send, self.max_body_bytes, scope)
        if body is ANSWERED:
            return
        try:
            request = self.gateway.bounded_for_client(parse_chat_request(body))
            check_model(scope, request.model)
        except InterlockError as exc:
            await refuse(self.gateway, scope, send, exc, body)
            return
        call = _Call(request, new_request_id(), caller_key_id(scope),
                     arrived, include_usage(body))
        try:
            task = self.drain.enter()
        except GatewayShuttingDown as exc:  # shutdown has already cut the requests in flight
            await refuse(self.gateway, scope, send, exc, body)
            return
        try:
            if request.stream:
                await self._stream(call, receive, send)
            else:
                await self._complete(call, receive, send)
        except Disconnected:
            log.info("client disconnected; request %s cancelled", call.request_id)
        except asyncio.CancelledError:
            if not self.drain.claim(task):
                raise
            # Cut by shutdown before its answer began (a stream's writer answers
            # for itself): the row is written; the client gets a 503, not a reset.
            if not call.answered:
                await send_error(send, GatewayShuttingDown(),
                                 [(b"x-request-id", call.request_id.encode())])
        finally:
            self.drain.leave(task)

    async def _complete(self, call: _Call, receive: Receive, send: Send) -> None:
        try:
            done = await race_disconnect(self.gateway.complete(
                call.request, request_id=call.request_id, key_id=call.key_id,
                arrived=call.arrived, settle_later=True), receive)
        except InterlockError as exc:
            await send_error(send, exc, meta_headers(exc))
            return
        # The answer goes out before its ledger row is made: the client does not
        # wait for the bookkeeping.
        call.answered = True
        try:
            await send_json(send, 200, completion_dict(
                done.response, request_id=call.request_id,
                legacy_functions=call.request.legacy_functions),
                            done.meta.headers())
        finally:
            done.settle()

    async def _stream(self, call: _Call, receive: Receive, send: Send) -> None:
        # One race for opening and writing: one timer per stream, and at most one
        # watcher task, instead of one of each per phase.
        await race_disconnect(self._open_and_write(call, send), receive)

    async def _open_and_write(self, call: _Call, send: Send) -> None:
        try:
            stream = await self.gateway.stream(
                call.request, request_id=call.request_id, key_id=call.key_id,
                arrived=call.arrived, settle_later=True)
        except InterlockError as exc:
            # Nothing has been sent yet, so this is still a plain HTTP error.
            await send_error(send, exc, meta_headers(exc))
            return
        call.answered = True
        writer = _SseWriter(send, stream, call.request_id, call.include_usage,
                            call.request.legacy_functions, self.drain)
        try:
            await writer.run()
        finally:
            # A cut that landed while the writer waited on the client (a send),
            # not on the upstream, never reached the stream: say it here, or its
            # row would blame the client.
            await stream.aclose(GatewayShuttingDown() if writer.cut else None)


async def refuse(gateway: Gateway, scope: Scope, send: Send, error: InterlockError,
                 body: Any, prefix: str = "chatcmpl-") -> None:
    """Answer a request refused before routing, and leave its ledger row."""
    request_id = new_request_id(prefix)
    fields = body if isinstance(body, dict) else {}
    gateway.record_refused(error, model=fields.get("model"), key_id=caller_key_id(scope),
                           stream=fields.get("stream") is True, request_id=request_id)
    await send_error(send, error, [(b"x-request-id", request_id.encode())])


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
                 include_usage: bool, legacy_functions: bool = False,
                 drain: Drain | None = None) -> None:
        self.send = send
        self.drain = drain
        self.stream = stream
        self.request_id = request_id
        self.include_usage = include_usage
        self.cut = False  # shutdown's drain time ran out mid-stream
        # Positionally: a class call's keywords go through a dict, once a stream.
        self._render = ChunkRenderer(request_id, legacy_functions, include_usage)

    async def run(self) -> None:
        meta = self.stream.meta
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no")]
        headers += meta.headers()
        send = self.send
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        held = b""
        try:
            async for batch in self.stream.batches():
                body = held + self._render.sse(batch.deltas, batch.texts)
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
        except asyncio.CancelledError:
            if self.drain is None or not self.drain.claim(asyncio.current_task()):
                raise  # the client left: there is no one to write to
            # Shutdown's drain time ran out: end the stream as any broken one ends.
            self.cut = True
            end = _event(error_dict(GatewayShuttingDown()))
        except Exception:
            # A bug must still end the stream with an error event, not a clean [DONE].
            log.exception("stream %s failed inside Interlock", self.request_id)
            end = _event(error_dict(InterlockError(
                "Interlock hit an unexpected internal error mid-stream; it has been logged.")))
        else:
            end = _event(self._render.usage_chunk(
                self.stream.shown_usage(), self.stream.meta.stream_summary())
            ) if self.include_usage else b""
        await send({"type": "http.response.body", "body": held + end + _DONE,
                    "more_body": False})
