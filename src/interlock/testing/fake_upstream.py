"""A local fake of the OpenAI, Anthropic and Gemini APIs, with scriptable faults.

    with FakeUpstream() as fake:
        fake.script(Fault(status=429, retry_after=10), provider="anthropic")
        ...  # point deployments at fake.base_url("anthropic")
        assert fake.received[0].body["model"] == "claude-sonnet-4"

Each provider lives under its own prefix (`/openai/v1`, `/anthropic`,
`/gemini`, and `/openai-compatible/v1` for a server of OpenAI's wire that is
not OpenAI: vLLM, Ollama, ...), so one fake serves a whole config. The server is a plain ASGI app
run by uvicorn in a background thread, cheap enough to sit beside a gateway
under load in the overhead benchmark.

Imports: uvicorn, the standard library, `testing.*`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from interlock.testing.script import Fault, ReceivedRequest, Reply, Script
from interlock.testing.wire import ErrorAnswer, Route, WireFormat, resolved

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _wire_formats() -> list[WireFormat]:
    from interlock.testing.anthropic_wire import AnthropicWire
    from interlock.testing.gemini_wire import GeminiWire
    from interlock.testing.openai_wire import OpenAIWire

    return [OpenAIWire(), OpenAIWire(openai_itself=False), AnthropicWire(), GeminiWire()]


class FakeUpstreamApp:
    """The ASGI app. `FakeUpstream` runs it; tests may also mount it directly."""

    def __init__(self, *, record: bool = True, max_recorded: int = 100_000) -> None:
        self.script = Script()
        self.received: list[ReceivedRequest] = []
        self.record = record
        self._max_recorded = max_recorded
        self._wires = _wire_formats()
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def wire(self, provider: str) -> WireFormat:
        for w in self._wires:
            if w.provider == provider:
                return w
        raise KeyError(provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        wire = next((w for w in self._wires if path.startswith(w.prefix + "/")), None)
        body_bytes = await _read_body(receive)
        if wire is None:
            await _send_json(send, 404, {"error": f"no fake provider serves {path}"})
            return
        try:
            body = json.loads(body_bytes) if body_bytes else None
        except ValueError:
            body = None
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        sub_path = path[len(wire.prefix) :]
        route = wire.route(scope["method"], sub_path, query, body)
        self._record(wire.provider, scope, sub_path, body, route)
        if route is None:
            answer = wire.error(404, Fault(status=404, kind="path"), None)
            await _send_json(send, answer.status, answer.body, answer.headers)
            return
        # Optional WireFormat hook: refusals the real API gives before any fault
        # applies (a missing key header, a missing required field).
        check = getattr(wire, "check_request", None)
        if check is not None:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            rejection = check(route, headers, body)
            if rejection is not None:
                await _send_json(send, rejection.status, rejection.body, rejection.headers)
                return
        fault = self.script.take_fault(wire.provider, route.model)
        await self._answer(wire, route, body, fault, send)

    def _record(self, provider: str, scope: Scope, path: str, body: Any,
                route: Route | None) -> None:
        with self._lock:
            self.counts[provider] = self.counts.get(provider, 0) + 1
            if not self.record or len(self.received) >= self._max_recorded:
                return
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.received.append(ReceivedRequest(
                provider=provider, method=scope["method"], path=path,
                query=scope.get("query_string", b"").decode(), headers=headers, body=body,
                model=route.model if route else "",
            ))

    async def _answer(self, wire: WireFormat, route: Route, body: Any, fault: Fault | None,
                      send: Send) -> None:
        scripted: Reply | None = None
        if fault is not None:
            if fault.hang:
                await asyncio.sleep(3600)
                return
            if fault.latency:
                await asyncio.sleep(fault.latency)
            # Optional WireFormat hook: a fault the provider answers as a reply
            # (Anthropic's refusal on a 200), so a streamed request gets a stream.
            as_reply = getattr(wire, "fault_reply", None)
            scripted = as_reply(fault) if as_reply is not None else None
            # Another: a fault streamed as the provider streams it (Gemini's
            # blocked prompt, a 200 that is no Reply).
            as_stream = getattr(wire, "fault_stream", None)
            frames = as_stream(fault, route) if as_stream is not None and route.stream \
                else None
            if frames is not None:
                await self._send_stream(wire, route, frames, fault, send)
                return
            if scripted is None and fault.status is not None:
                answer = wire.error(fault.status, fault, route)
                headers = (_with_retry_after(answer, fault)
                           if getattr(wire, "retry_after_header", True) else answer.headers)
                await _send_json(send, answer.status, answer.body, headers)
                return
        # Optional WireFormat hook: the JSON a request for structured output
        # gets, or the call a request that forces one gets, when the script
        # gives no text or calls of its own.
        shape = getattr(wire, "shaped_reply", None)
        reply = resolved(scripted or self.script.reply_for(wire.provider, route.model) or Reply(),
                         route.model, body, shape(route, body) if shape is not None else None)
        if route.stream:
            await self._stream(wire, route, body, reply, fault, send)
        else:
            await _send_json(send, 200, wire.reply(route, body, reply))

    async def _stream(self, wire: WireFormat, route: Route, body: Any, reply: Reply,
                      fault: Fault | None, send: Send) -> None:
        await self._send_stream(wire, route, wire.stream(route, body, reply), fault, send)

    async def _send_stream(self, wire: WireFormat, route: Route, frames: list[bytes],
                           fault: Fault | None, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", wire.stream_content_type(route).encode()),
            (b"cache-control", b"no-cache"),
        ]})
        if fault is not None and fault.first_token_delay:
            await asyncio.sleep(fault.first_token_delay)
        for i, frame in enumerate(frames):
            if fault is not None and fault.chunk_interval and i:
                await asyncio.sleep(fault.chunk_interval)
            if fault is not None and fault.disconnect_after is not None \
                    and i >= fault.disconnect_after:
                # Ending the ASGI call without more_body=False makes uvicorn
                # drop the connection, which clients see as a broken stream.
                raise _Disconnect()
            if fault is not None and fault.malformed_at == i:
                frame = b"data: {this is not json\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Disconnect(Exception):
    """Raised inside the app to make the server cut the connection."""


class _QuietScriptedDisconnects(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record, with its traceback,
    for a `_Disconnect`: that cut is what the script asked for, and a traceback
    for each one buried the output of anyone scripting faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Disconnect))


def quiet_scripted_disconnects() -> None:
    """Installs `_QuietScriptedDisconnects` on uvicorn's error logger, once."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietScriptedDisconnects) for f in logger.filters):
        logger.addFilter(_QuietScriptedDisconnects())


def _with_retry_after(answer: ErrorAnswer, fault: Fault) -> dict[str, str]:
    headers = dict(answer.headers)
    if fault.retry_after is not None and "retry-after" not in headers:
        headers["retry-after"] = str(int(fault.retry_after) if fault.retry_after >= 1
                                     else fault.retry_after)
    return headers


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send_json(send: Send, status: int, body: Any,
                     headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class FakeUpstream:
    """Runs `FakeUpstreamApp` on 127.0.0.1 in a background thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, record: bool = True) -> None:
        self.app = FakeUpstreamApp(record=record)
        self.host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._sock: socket.socket | None = None

    # -- scripting -----------------------------------------------------------
    def script(self, *faults: Fault, provider: str | None = None,
               model: str | None = None) -> None:
        """Queue faults for requests matching provider and model (None: any)."""
        for fault in faults:
            self.app.script.add_fault(fault, provider=provider, model=model)

    def reply(self, reply: Reply, *, provider: str | None = None,
              model: str | None = None) -> None:
        """Answer matching requests with this reply (the newest rule wins)."""
        self.app.script.set_reply(reply, provider=provider, model=model)

    def reset(self) -> None:
        self.app.script.clear()
        self.app.received.clear()
        self.app.counts.clear()

    @property
    def received(self) -> list[ReceivedRequest]:
        return self.app.received

    def calls(self, provider: str | None = None, model: str | None = None) -> int:
        if model is None:
            if provider is None:
                return sum(self.app.counts.values())
            return self.app.counts.get(provider, 0)
        return sum(1 for r in self.app.received
                   if r.model == model and provider in (None, r.provider))

    # -- addresses -----------------------------------------------------------
    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the fake upstream is not running")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The api_base to configure for a provider ("openai", "anthropic", "gemini"),
        or "openai-compatible": a server of OpenAI's wire that is not OpenAI's own
        API (vLLM, Ollama, ...), which takes fields OpenAI would refuse."""
        wire = self.app.wire(provider)
        return self.url + wire.prefix + ("/v1" if wire.prefix.startswith("/openai") else "")

    def environ(self) -> dict[str, str]:
        """Environment variables that point each adapter at this fake. An
        `openai/` deployment with no api_base meets the strict `/openai/v1` (it is
        OpenAI's own API wherever OPENAI_BASE_URL sends it); point a vLLM, an
        Ollama or another gateway at `base_url("openai-compatible")` instead."""
        return {
            "OPENAI_BASE_URL": self.base_url("openai"),
            "ANTHROPIC_BASE_URL": self.base_url("anthropic"),
            "GEMINI_BASE_URL": self.base_url("gemini"),
        }

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> FakeUpstream:
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when
        # the listener's proto says TCP; with proto 0, Nagle plus delayed ACKs add ~40 ms
        # to every answer, which would swamp the overhead benchmark.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self._port))
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1, backlog=2048)
        self._server = uvicorn.Server(config)
        quiet_scripted_disconnects()  # after Config, which sets uvicorn's logging up
        sock = self._sock
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),
            name="interlock-fake-upstream", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
