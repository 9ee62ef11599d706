"""The floor for a Python LLM proxy: forward bytes, nothing else.

    python benchmarks/passthrough_proxy.py --port 8910 \
        --upstream http://127.0.0.1:8900/openai/v1

`POST /v1/chat/completions` is sent unchanged to `<upstream>/chat/completions`
with the upstream key set, and the answer (JSON or SSE) is streamed back
chunk by chunk. No JSON parsing, no auth check, no routing, no logging.

It runs on the same stack as `interlock serve` (a raw ASGI app on uvicorn with
uvloop and httptools, one pooled aiohttp session upstream), so the difference
between it and Interlock is what Interlock does per request, not the stack.
Its garbage collector is tuned as `interlock serve` tunes its own once started
(start-up objects frozen, the young generation collected every 10,000
allocations instead of 700), so that is not a difference either.
This is a benchmark tool, not part of the package.

With `--parse` it is a second, reference floor: what the least a metering
gateway must do costs on top. It parses the request's JSON, rewrites `model`
(and asks a stream for its usage), and parses every SSE event of the answer (or
the whole answer) to find the usage; the bytes forwarded are still the
upstream's. No validation beyond the JSON being an object, no routing, no
ledger write.

Imports: aiohttp, orjson, uvicorn, the standard library.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Response headers that describe the upstream hop, not the body we re-send.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                          "date", "server"})


class PassThrough:
    """Raw ASGI app holding one aiohttp session for its lifetime."""

    def __init__(self, upstream: str, api_key: str) -> None:
        self.target = upstream.rstrip("/") + "/chat/completions"
        self.headers = {"authorization": f"Bearer {api_key}",
                        "content-type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == "/v1/chat/completions":
                await self._forward(receive, send)
            else:
                await _plain(send, 200 if scope["path"].startswith("/health") else 404, b"{}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
                self.session = aiohttp.ClientSession(connector=connector)
                _tune_collector()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        assert self.session is not None
        async with self.session.post(self.target, data=body, headers=self.headers) as resp:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": _forwarded_headers(resp)})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ParsingPassThrough(PassThrough):
    """The floor plus the JSON work a metering gateway cannot avoid (see the
    module doc). `usage` keeps the last answer's usage, so the parsing is used."""

    def __init__(self, upstream: str, api_key: str, model: str) -> None:
        super().__init__(upstream, api_key)
        self.model = model
        self.usage: Any = None

    async def _forward(self, receive: Receive, send: Send) -> None:
        request = orjson.loads(await _read_body(receive))
        if not isinstance(request, dict):
            await _plain(send, 400, b'{"error":{"message":"not a JSON object"}}')
            return
        request["model"] = self.model
        stream = request.get("stream") is True
        if stream:
            request["stream_options"] = {"include_usage": True}
        assert self.session is not None
        async with self.session.post(self.target, data=orjson.dumps(request),
                                     headers=self.headers) as resp:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": _forwarded_headers(resp)})
            if stream:
                rest = b""
                async for chunk in resp.content.iter_any():
                    *events, rest = (rest + chunk).split(b"\n\n")
                    for event in events:
                        if event.startswith(b"data: {"):
                            self.usage = orjson.loads(event[6:]).get("usage") or self.usage
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            else:
                whole = await resp.read()
                self.usage = orjson.loads(whole).get("usage")
                await send({"type": "http.response.body", "body": whole, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _forwarded_headers(resp: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()
            if k.lower() not in _HOP_HEADERS]


def _tune_collector() -> None:
    # As interlock.server.app.tune_collector does (imports point down: a copy of
    # its two lines rather than an import of the package under test).
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(10_000, gen0), gen1, gen2)


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="OpenAI base URL, ending in /v1")
    parser.add_argument("--api-key", default="sk-dummy")
    parser.add_argument("--parse", metavar="MODEL",
                        help="the reference floor that parses JSON, sending MODEL upstream")
    args = parser.parse_args()
    app = (ParsingPassThrough(args.upstream, args.api_key, args.parse) if args.parse
           else PassThrough(args.upstream, args.api_key))
    uvicorn.run(app, host="127.0.0.1", port=args.port,
                loop="uvloop", http="httptools", log_level="warning", access_log=False,
                lifespan="on", backlog=4096)


if __name__ == "__main__":
    main()
