"""What one HTTP connection may cost the gateway before it is cut.

uvicorn's httptools protocol (what `interlock serve` runs) sets no limit on the
size of a request's headers and no time limit on reading them or the body: a
client with no key held 100 MB per connection by never ending a header, and a
connection that sent half its headers, or one byte of a declared body, stayed
open for ever. `LimitedHttpToolsProtocol` is uvicorn's protocol with four
limits (`ConnectionLimits`, from general_settings):

- the request line and headers may take `max_header_bytes`; past that the
  client gets a 431 and the connection is closed. The bytes are counted as
  they arrive, so the parser never buffers more than the cap and one read from
  the socket, however long a header runs;
- the headers must be complete `header_timeout` seconds after they began (or
  after the connection opened): a 408, and the connection is closed;
- a body that is being sent may pause at most `body_timeout` seconds between
  two reads: a 408 when nothing has been answered yet, and the connection is
  closed. The request was never parsed, so it has no model and no route, and,
  as for a body over max_request_body_bytes, no ledger row;
- the whole body must be in `body_total_timeout` seconds after the headers
  ended, however steadily it trickles: the same 408 and close. Time the gateway
  spends not reading (a pipelined request waiting its turn, a full buffer) is
  not counted against the client: uvicorn's flow control adds it up
  (`_TimedFlowControl`), and `_BodyClock` moves the deadlines on by it.

A request answered before its body ended (401, 413) ends the connection once
the body does, or `_LINGER_SECONDS` after the answer (`on_response_complete`),
and a request that begins in the read that ended the one before it (pipelined)
is held to the same cap and header time as one that begins a read.

The common request costs a few attribute operations per `data_received` and
no timer: one is started only when the headers, or the body, did not arrive
whole in the read that began them. The body's timer is not restarted per read:
each read notes the time, and the timer, when it fires, waits out what is left.

uvicorn's `limit_concurrency` (general_settings.max_connections) is checked by
the protocol itself (`on_headers_complete`), allowing that many connections
(uvicorn counted the request's own against it, so 1 refused everything): its
503 past it, and its 400 for bytes that are not HTTP (`send_400_response`), are
plain text, and every other answer of the gateway is the OpenAI error shape.
The protocol also tells the app's drain when shutdown begins (`shutdown`).

Every refusal here (400, 431, 408, 503) comes at the client's will, so its log
line goes through the server's `RefusalLog`: the first of a kind in full, then
one line an interval counting the rest (uvicorn's own warning for bytes that are
not HTTP, a line a request, is not written: `_parse`).

Imports: httptools, orjson, the standard library, uvicorn, `openai_response`,
`server.asgi_io`, `server.drain`, `server.refusal_log` (and `config` for types).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from interlock.openai_response import plain_error_dict
from interlock.server.asgi_io import ASGIApp, Receive, Scope, Send, send_plain_error
from interlock.server.drain import find_drain
from interlock.server.refusal_log import RefusalLog

if TYPE_CHECKING:
    from interlock.config.schema import GeneralSettings

log = logging.getLogger("interlock.server")
_TOO_LARGE = "headers_too_large"
# Added to the header count of a request that began in the middle of a read (a
# pipelined one): past any cap, so its headers are always measured when they end,
# and it marks the count, which then holds the bytes of the reads after that one.
_BEGAN_MID_READ = 1 << 62
# How long a connection answered before its body ended goes on reading (and
# discarding) the body, at most: see `on_response_complete`.
_LINGER_SECONDS = 2.0
# What a request refused past max_connections is told to wait: the gateway cannot
# know when a connection frees up, and a second is what clients that obey the
# header (the OpenAI SDKs do, for a 503) can retry after without piling on.
_RETRY_AFTER_SECONDS = b"1"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 30.0
    body_timeout: float = 30.0
    body_total_timeout: float = 120.0

    @classmethod
    def from_settings(cls, settings: GeneralSettings) -> ConnectionLimits:
        return cls(settings.max_request_header_bytes, settings.request_header_timeout,
                   settings.request_body_timeout, settings.request_body_total_timeout)


def uvicorn_options(settings: GeneralSettings) -> dict[str, Any]:
    """The options of `uvicorn.Config` that bound what a connection may cost.
    A partial rather than a subclass made at run time: `--workers N` sends the
    options to its worker processes by pickling them."""
    protocol = functools.partial(LimitedHttpToolsProtocol,
                                 limits=ConnectionLimits.from_settings(settings),
                                 refusals=RefusalLog(log))
    # The gateway serves no WebSocket: an upgrade request is answered as plain HTTP
    # rather than handed to a protocol without these limits.
    return {"http": protocol, "ws": "none", "limit_concurrency": settings.max_connections}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `ConnectionLimits` (module docstring)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 limits: ConnectionLimits, refusals: RefusalLog) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._refusals = refusals  # the server's, shared by its connections
        # Checked here, not by uvicorn, whose answer past it is plain text.
        self._max_connections, self.limit_concurrency = self.limit_concurrency, None
        # True from the end of one message (or the connection's start) to the end
        # of the next message's headers; False while its body is read.
        self._in_headers = True
        # Bytes read since the headers began, counted from the read they began in.
        self._header_bytes = 0
        self._body = _BodyClock()
        self._timer: asyncio.TimerHandle | None = None
        # Bytes that failed to parse came behind a request still being answered:
        # what follows is dropped unread (`send_400_response`).
        self._discarding = False

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _TimedFlowControl(transport, self.loop)
        # A connection that never sends a byte is cut like one whose headers stall.
        self._timer = self.loop.call_later(self._limits.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_headers:
            self._header_bytes += len(data)
        else:
            self._body.read_at = self.loop.time()
        self._parse(data)
        if self._discarding:  # this read's bytes failed to parse: nothing is timed now
            self._stop_timer()
            return
        if self._in_headers:
            if self._header_bytes > self._limits.max_header_bytes:
                self._headers_over_the_cap()
            elif self._timer is None:
                if self._header_bytes:
                    self._timer = self.loop.call_later(self._limits.header_timeout,
                                                       self._headers_late)
                elif self.scope is not self.cycle.scope:
                    # A request began after the one that ended in this read (no
                    # cycle holds its scope yet) and its headers go on: nothing
                    # counted it, and it has no timer.
                    self._header_bytes = _BEGAN_MID_READ
                    self._timer = self.loop.call_later(self._limits.header_timeout,
                                                       self._headers_late)
        elif self._timer is None:  # the body goes on in a later read
            now = self.loop.time()
            self._body.start(now, self._flow_paused(now))
            self._timer = self.loop.call_later(
                min(self._limits.body_timeout, self._limits.body_total_timeout),
                self._body_stalled)

    def shutdown(self) -> None:
        """Shutdown has begun: uvicorn asks each open connection to end. The app's
        drain is told here rather than by a Server subclass, so that every worker
        of `--workers N` (whose servers uvicorn builds itself) tells its own: the
        requests still running at the drain's end then finish with an error, not
        cut mid-body (server/drain.py). Looked up now, not per connection: the
        request path pays nothing for it."""
        drain = find_drain(self.app)
        if drain is not None:
            drain.begin(self.config.timeout_graceful_shutdown)
        super().shutdown()

    def _parse(self, data: bytes) -> None:
        """uvicorn's `data_received`, but for its log lines: it warned of each
        request whose bytes are not HTTP, and of each upgrade request it cannot
        serve, so anyone could repeat a line into the log at will. Bytes that
        are not HTTP go to the server's `RefusalLog`; an upgrade request (with
        `ws: none` the gateway serves no WebSocket) is answered as plain HTTP,
        which says enough, and logs nothing."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as failure:
            self._refusals.note(self.loop, "requests refused 400 as not HTTP/1.1",
                                logging.WARNING, "refused a request from %s with 400: its "
                                "bytes are not HTTP/1.1 (%s)", self._where(), failure)
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            pass

    # -- parser callbacks -----------------------------------------------------
    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._timer is not None:
            self._stop_timer()
        counted, self._header_bytes = self._header_bytes, 0
        # The count may hold body bytes from the read the headers ended in: only
        # then are the headers themselves measured. A count of 0 is a request that
        # began in this read after another ended (pipelined): not counted at all.
        if (counted > self._limits.max_header_bytes or not counted) and \
                self._header_size() > self._limits.max_header_bytes:
            self._start_request(self._headers_too_large_app)
            return
        limit = self._max_connections
        # `connections` holds this request's own, `tasks` not yet: `max_connections:
        # N` allows N connections (uvicorn's `>=` allowed N - 1, and 1 refused all).
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            self._refusals.note(
                self.loop, "requests refused 503 past general_settings.max_connections",
                logging.WARNING, "refused a request from %s with 503: the process is at its "
                "limit of %d connections or requests (general_settings.max_connections)",
                self._where(), limit)
            self._start_request(self._over_capacity_app)
            return
        super().on_headers_complete()

    def _start_request(self, app: ASGIApp) -> None:
        """The request is answered by `app`, as a request: the parser goes on with
        this read (a body, a next request) and expects a request here."""
        app, self.app = self.app, app
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self._in_headers = True
        if self._timer is not None:
            self._stop_timer()
            if self.cycle.response_complete:  # the body of an answered request ended
                self.transport.close()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn keeps a connection answered before its body ended (a 401, a 413)
        and discards the body as it comes, with no time limit, however large the
        body declared: a client without a key could hold the connection for ever.
        The gateway reads on only until the body ends, for `_LINGER_SECONDS` at
        most, then closes. Not at once: the client's unread bytes would make the
        close a reset, and a client that sends its whole body before it reads
        (most do) would see a failed write instead of the answer."""
        if not self._in_headers and self.cycle.response_complete and \
                not self.transport.is_closing():
            self._stop_timer()
            self._timer = self.loop.call_later(
                min(_LINGER_SECONDS, self._limits.body_timeout), self.transport.close)
            if self.transport.can_write_eof():  # no more answers on this connection
                self.transport.write_eof()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser cannot read as HTTP/1.1, in the
        OpenAI error shape; called by uvicorn's `data_received` while it handles
        the parser's error, whose text says what was wrong."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_headers:
                # Bad bytes after a whole request still being answered (pipelined
                # behind it): a status line now would land inside its answer. It
                # ends, then the connection closes, with no answer of their own.
                # What comes after is dropped, not parsed (and logged by uvicorn)
                # again read after read; still read, so that a client leaving is
                # noticed and its request cancelled.
                cycle.keep_alive = False
                self._discarding = True
                return
            # Bad bytes inside this request's own body: it cannot be read, so its
            # handler writes nowhere from now on; it gets the 400 below unless
            # its answer has begun, when the connection is just closed.
            cycle.disconnected = True
            if cycle.response_started:
                self.transport.close()
                return
        failure = sys.exc_info()[1]
        why = f" ({failure})" if isinstance(failure, httptools.HttpParserError) and \
            str(failure) else ""
        self._write_error(400, f"The gateway could not read the request as HTTP/1.1{why}. "
                          "Send a well-formed request: a request line, headers ending in an "
                          "empty line, and a body of the Content-Length it declares (or "
                          "chunked).", "invalid_http_request")
        self.transport.close()

    async def _over_capacity_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"retry-after", _RETRY_AFTER_SECONDS)]
        # With its body in, the connection closes with the answer, freeing its
        # slot. With a body still coming, `on_response_complete` closes it once the
        # body has ended: a close with the client's bytes unread would reset it
        # before it read the answer.
        if self._in_headers:
            headers.append((b"connection", b"close"))
        await send_plain_error(
            send, 503, f"The gateway is at its limit of {self._max_connections} connections "
            "or requests at once in this process and cannot take this request now. Retry "
            "it after a short wait; the gateway's operator can raise "
            "general_settings.max_connections (or run more workers).",
            type_="service_unavailable", code="too_many_connections", headers=headers)

    # -- the limits -----------------------------------------------------------
    def _header_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_large_message(self) -> str:
        return (f"The request's headers are larger than the gateway's limit of "
                f"{self._limits.max_header_bytes} bytes. Send fewer or smaller headers, or "
                "raise general_settings.max_request_header_bytes.")

    def _headers_over_the_cap(self) -> None:
        counted = self._header_bytes
        if counted >= _BEGAN_MID_READ:  # only the reads after the one it began in
            counted -= _BEGAN_MID_READ
        if counted > self._limits.max_header_bytes:
            self._headers_too_large()

    def _headers_too_large(self) -> None:
        self._refuse(431, self._too_large_message(), _TOO_LARGE, "max_request_header_bytes")

    async def _headers_too_large_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_plain_error(send, 431, self._too_large_message(),
                               type_="invalid_request_error", code=_TOO_LARGE,
                               headers=[(b"connection", b"close")])

    def _headers_late(self) -> None:
        self._timer = None
        if not self._in_headers or self.transport.is_closing():
            return
        if not self._header_bytes:  # nothing of a request has come: no one to answer
            self.transport.close()
            return
        self._refuse(408, f"The request's headers did not arrive within "
                     f"{self._limits.header_timeout:g} s (general_settings."
                     "request_header_timeout).", "request_timeout", "request_header_timeout")

    def _flow_paused(self, now: float) -> float:
        flow = self.flow
        return flow.paused_for(now) if isinstance(flow, _TimedFlowControl) else 0.0

    def _body_stalled(self) -> None:
        self._timer = None
        if self._in_headers or self.transport.is_closing():
            return
        limits = self._limits
        now = self.loop.time()
        left, total_left = self._body.time_left(limits, now, self._flow_paused(now),
                                                self.flow.read_paused)
        if left > 0:
            self._timer = self.loop.call_later(left, self._body_stalled)
            return
        if total_left <= 0:
            self._refuse(408, f"The request body did not arrive whole within "
                         f"{limits.body_total_timeout:g} s of its headers (general_settings."
                         "request_body_total_timeout). Send the body at once, or ask the "
                         "gateway's operator to raise the limit for large, slow uploads.",
                         "request_timeout", "request_body_total_timeout")
            return
        self._refuse(408, f"The request body stopped arriving: nothing came for "
                     f"{limits.body_timeout:g} s (general_settings.request_body_timeout)."
                     " Send the whole body the Content-Length declares.", "request_timeout",
                     "request_body_timeout")

    def _refuse(self, status: int, message: str, code: str, setting: str) -> None:
        """Answer `status` if no answer has begun on the connection, then close it;
        `setting` is the limit of general_settings that the connection broke."""
        if self.transport.is_closing():  # uvicorn has answered (a request it could not parse)
            return
        cycle = self.cycle
        self._refusals.note(self.loop, f"connections closed with {status} ({setting})",
                            logging.INFO, "closing a connection from %s: %s", self._where(),
                            message)
        if self._in_headers:  # `cycle` is an earlier request's, which may still be answering
            answer = cycle is None or cycle.response_complete
        elif cycle is None:  # not a request of this protocol's (never, without upgrades)
            answer = False
        else:  # the request's own, whose handler may be waiting for the body
            answer = not cycle.response_started
            cycle.disconnected = True  # what it sends from now on goes nowhere
        if answer:
            self._write_error(status, message, code)
        self.transport.close()

    def _where(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    def _write_error(self, status: int, message: str, code: str) -> None:
        """An OpenAI-shaped error written straight to the socket, outside any app;
        the caller closes the connection, as the answer says."""
        body = orjson.dumps(plain_error_dict(message, type_="invalid_request_error", code=code))
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n"
                 for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)


@dataclass(slots=True)
class _BodyClock:
    """A body's two deadlines, counting the client's time only: the loop times
    the body began and was last read, moved on by the time the gateway was not
    reading (a pipelined request waiting its turn, a full buffer), which
    `_TimedFlowControl` adds up; `paused_seen` is its total at the last look."""

    began_at: float = 0.0
    read_at: float = 0.0
    paused_seen: float = 0.0

    def start(self, now: float, paused: float) -> None:
        self.began_at = self.read_at = now
        self.paused_seen = paused

    def time_left(self, limits: ConnectionLimits, now: float, paused: float,
                  read_paused: bool) -> tuple[float, float]:
        """Seconds left at loop time `now` before the body stalls or runs out of
        its total time, whichever comes first, and before the latter; `paused`
        is the flow control's total up to `now`, `read_paused` whether reading
        is paused at `now`."""
        credit, self.paused_seen = paused - self.paused_seen, paused
        self.began_at += credit
        # While the gateway is not reading, no read is late, however long ago.
        self.read_at = now if read_paused else min(now, self.read_at + credit)
        total_left = self.began_at + limits.body_total_timeout - now
        return min(self.read_at + limits.body_timeout - now, total_left), total_left


class _TimedFlowControl(FlowControl):
    """uvicorn's flow control, adding up how long reading has been paused, so
    that the body's deadlines count the client's time only. Checking whether
    reading was paused when a timer fired missed a pause that had ended just
    before, up to a timer's wait (a pipelined body was refused its 408 under
    load)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self._loop = loop
        self._paused_before = 0.0  # seconds paused in the pauses that have ended
        self._paused_at = 0.0

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._paused_at = self._loop.time()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self._paused_before += self._loop.time() - self._paused_at
        super().resume_reading()

    def paused_for(self, now: float) -> float:
        """Seconds reading has been paused in all, up to `now`."""
        return self._paused_before + (now - self._paused_at if self.read_paused else 0.0)
