"""The one pooled HTTP client that every adapter shares, and its timeouts.

`HttpClient` wraps a single aiohttp `ClientSession` (created lazily inside the
running loop; one per gateway, passed down, never global), whose pool bounds
the connections in all and per upstream host (`MAX_CONNECTIONS`,
`MAX_CONNECTIONS_PER_HOST`; router_settings sets them). It does no retries:
retrying belongs to the dispatcher. Transport failures are converted here into
`Timeout` and `ConnectionFailed`; status codes are left to the adapters, which
know each provider's error bodies.

Imports: aiohttp, the standard library, `errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeGuard

import aiohttp

from interlock.errors import ConnectionFailed, Timeout, redact, url_credentials


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long one upstream attempt may take, in seconds (None: no limit).

    `total` bounds the whole call; `first_token` the wait for the first
    streamed line; `idle` the gap between two streamed lines.
    """

    connect: float | None = 10.0
    total: float | None = 600.0
    first_token: float | None = None
    idle: float | None = None


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class Labels:
    """Who is being called, so transport errors can say so."""

    provider: str
    deployment: str


class StreamingResponse:
    """An open streamed response: status and headers now, then lines a read at a time."""

    def __init__(self, resp: aiohttp.ClientResponse, timeouts: Timeouts, labels: Labels,
                 started: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._resp = resp
        # Kept rather than looked up per read: each lookup of the running loop
        # checks the process id, a system call.
        self._loop = loop or asyncio.get_running_loop()
        self._timeouts = timeouts
        self._labels = labels
        self._started = started
        self._expired = False
        # The first-token and idle timeouts: one lazily re-armed timer per stream
        # rather than an asyncio.timeout per read (a Timeout object, a task lookup
        # and a timer each time, several percent of a streamed call's CPU). While
        # no read is waiting the deadline is None, so a slow consumer is not timed.
        self._read_deadline: float | None = None
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_timer_at = 0.0
        self._read_expired = False
        self._expiry: asyncio.TimerHandle | None = None
        self._first = True  # no byte of the body read yet: the first-token wait applies
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except aiohttp.ClientError as exc:
            raise _connection_error(exc, self._labels, str(self._resp.url)) from None

    def start_reading(self) -> None:
        """Arm the total deadline: one timer for the whole stream, which closes
        the response (a timer per read cost about an eighth of a streamed call).
        `stop_reading` must follow, however reading ends."""
        remaining = self._remaining()
        if remaining is not None:
            self._expiry = self._loop.call_later(remaining, self._expire)

    def stop_reading(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._cancel_read_timer()

    async def next_read(self) -> bytes:
        """The next network read of the body as it arrived, b"" at its end,
        enforcing the first-token and idle timeouts (and the total, once
        `start_reading` has armed it). A method, not a generator: the adapter's
        reading loop calls it once per read, and resuming a stacked async
        generator costs microseconds each time."""
        first = self._first
        wait = self._timeouts.first_token if first else self._timeouts.idle
        if wait is not None:
            self._arm_read_timer(wait)
        try:
            data = await self._resp.content.readany()
        except (aiohttp.ClientError, ConnectionError) as exc:
            self._check_expiry(first, wait)
            raise _connection_error(exc, self._labels, str(self._resp.url)) from None
        finally:
            self._read_deadline = None
        if not data:  # the end, or a timer closed the response under the read
            self._check_expiry(first, wait)
        elif first:
            self._first = False
        return data

    async def reads(self) -> AsyncGenerator[bytes, None]:
        """The body a network read at a time (`next_read` until the end)."""
        self.start_reading()
        try:
            while data := await self.next_read():
                yield data
        finally:
            self.stop_reading()

    async def line_batches(self) -> AsyncGenerator[list[bytes], None]:
        """The complete lines (without newlines) of each network read, as one list."""
        pending = b""
        async with contextlib.aclosing(self.reads()) as reads:
            async for data in reads:
                # Whatever arrived, split into lines at once: reading line by line
                # cost an aiohttp call per line, blank SSE separators included.
                lines, pending = split_lines(pending + data)
                if lines:
                    yield lines
        if pending:
            yield [pending.rstrip(b"\r")]

    def _check_expiry(self, first: bool, wait: float | None) -> None:
        """Raise the timeout that closed the response, if one did."""
        if self._expired:
            raise self._total_timeout()
        if self._read_expired:
            what, setting = (("the first token", "first_token_timeout") if first
                             else ("the next chunk", "stream_idle_timeout"))
            raise timeout_error(self._labels, "sent no data", wait,
                                f"raise the router's {setting} to wait longer", awaiting=what)

    def _arm_read_timer(self, wait: float) -> None:
        loop = self._loop
        self._read_deadline = deadline = loop.time() + wait
        # A pending timer set for a later time (the first token's longer wait) would
        # enforce a shorter idle limit late: move it forward.
        if self._read_timer is not None and self._read_timer_at > deadline:
            self._cancel_read_timer()
        if self._read_timer is None:
            self._read_timer = loop.call_at(deadline, self._read_timer_fired)
            self._read_timer_at = deadline

    def _read_timer_fired(self) -> None:
        self._read_timer = None
        deadline = self._read_deadline
        if deadline is None:  # no read waiting: the next one arms a new timer
            return
        loop = self._loop
        if loop.time() < deadline:  # data came and a later read re-armed: wait on
            self._read_timer = loop.call_at(deadline, self._read_timer_fired)
            self._read_timer_at = deadline
            return
        self._read_expired = True
        self._resp.close()

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expire(self) -> None:
        self._expired = True
        self._resp.close()

    def _total_timeout(self) -> Timeout:
        # Nothing of the body yet: the wait was for the first token, and saying the
        # stream did not finish would send the reader looking for a broken stream.
        what = "sent no first token" if self._first else "did not finish the stream"
        return timeout_error(self._labels, what, self._timeouts.total, STREAM_HINT)

    def _remaining(self) -> float | None:
        if self._timeouts.total is None:
            return None
        return max(0.001, self._timeouts.total - (time.monotonic() - self._started))


# What a timeout's message tells its reader to change. A limit an adapter gets is
# the deployment's or the router's setting, cut to what is left of the request's
# deadline (the call's own `timeout`, else the router's), so any of them may be
# the one that ran out.
ANSWER_HINT = "raise `timeout` (on the deployment, the router or the call) to wait longer"
STREAM_HINT = ("raise `stream_timeout` (on the deployment or the router) or the call's "
               "`timeout` to wait longer")


def timeout_error(labels: Labels, what: str, wait: float | None, hint: str, *,
                  awaiting: str | None = None) -> Timeout:
    """The Timeout for a limit that ran out, told in one sentence wherever it ran
    out: the provider, `what` it did not do ("did not answer", "sent no first
    token", ...), for which deployment, within how long (with `awaiting`: for
    how long while Interlock waited for that), and `hint`, the setting to raise."""
    limit = (f"within {seconds(wait)}" if awaiting is None
             else f"for {seconds(wait)} while Interlock waited for {awaiting}")
    return Timeout(f"{labels.provider} {what} for deployment {labels.deployment!r} {limit}; "
                   f"{hint}", provider=labels.provider, deployment=labels.deployment)


def seconds(value: float | None) -> str:
    """A limit as a person reads it: what is left of a deadline comes as
    1.9999233649999724, which says no more than "2.0 s"."""
    if value is None:
        return "the time allowed"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2g} s"


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """(the complete lines of `data` without their line ends, the unfinished rest)."""
    *complete, rest = data.split(b"\n")
    # Most servers end lines with a bare newline: strip only if needed.
    return ([line.rstrip(b"\r") for line in complete] if b"\r" in data else complete), rest


def _cap(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@functools.lru_cache(maxsize=64)
def _connect_only_timeout(connect: float | None) -> aiohttp.ClientTimeout:
    """aiohttp's part of a stream's timeouts (StreamingResponse keeps the rest).
    Cached: the connect limit is nearly always the configured one (it is cut only
    when less than that is left of the deadline), and each ClientTimeout is a
    frozen attrs instance built field by field."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect)


class _LateHeaders:
    """Cancels the waiting task if a stream's headers are late: asyncio.timeout's
    job, done with one timer. asyncio.timeout also looks the running loop up three
    times (each a getpid system call) and enters and leaves through two
    coroutines; it cost about 3 % of a streamed call in a profile. The same rule
    decides whose cancellation it was: ours only if the task has no other
    cancellation request pending."""

    __slots__ = ("_cancelling", "_fired", "_task", "_timer")

    def __init__(self, task: asyncio.Task[Any] | None, loop: asyncio.AbstractEventLoop,
                 wait: float) -> None:
        if task is None:
            raise RuntimeError("a stream can only be opened inside an asyncio task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._timer = loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def was_ours(self) -> bool:
        """After a CancelledError: True if this timer caused it (and no one else
        asked for a cancellation meanwhile), which takes the request back."""
        if not self._fired:
            return False
        self._fired = False  # its cancellation is taken back here, once
        return self._task.uncancel() <= self._cancelling

    def disarm(self) -> None:
        self._timer.cancel()
        if self._fired:  # it fired, but the headers won the race: take it back
            self._fired = False
            self._task.uncancel()


def _connection_error(exc: BaseException, labels: Labels, url: str) -> ConnectionFailed:
    """A request that could not be sent. Besides aiohttp's own errors, aiohttp
    refuses some requests with a ValueError before sending them (an api_base with
    user:password@ in it on a call that also carries an Authorization header):
    that deployment cannot be called, so it fails over like an unreachable one
    instead of failing the request with a 500. str(exc) of these names the host
    and port or the URL (with its query), never headers; the credentials of the
    URL called (`url`: its password, a ?token= or ?sig=) are redacted. The
    error's `client_message`, which a gateway's client reads, says what failed
    without them.

    A body cut short is told as that: aiohttp's own text for it ("Response payload
    is not completed: <TransferEncodingError: 400, ...>") reads like an HTTP 400."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        message = (f"{labels.provider} closed the connection before its answer was "
                   f"complete, for deployment {labels.deployment!r} "
                   f"({type(exc).__name__})")
        return ConnectionFailed(message, provider=labels.provider,
                                deployment=labels.deployment)
    failed = f"Connection to {labels.provider} failed for deployment {labels.deployment!r}"
    return ConnectionFailed(
        redact(f"{failed}: {type(exc).__name__}: {exc}", *url_credentials(url)),
        provider=labels.provider, deployment=labels.deployment,
        client_message=f"{failed}: {_what_failed(exc)} ({type(exc).__name__}). The "
                       "gateway's log has the details.")


# How a failure to reach an upstream is told without its host, address or URL,
# which aiohttp's texts give; the first class that matches, in this order.
_WHAT_FAILED: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ClientConnectorDNSError, "its host name could not be resolved"),
    (aiohttp.ClientConnectorCertificateError, "its TLS certificate was not accepted"),
    (aiohttp.ClientSSLError, "the TLS handshake failed"),
    (aiohttp.ServerDisconnectedError, "the server closed the connection"),
    (aiohttp.InvalidURL, "its api_base is not a URL that can be called"),
    (ValueError, "the request could not be sent to its api_base"),
)


def _what_failed(exc: BaseException) -> str:
    for kind, what in _WHAT_FAILED:
        if isinstance(exc, kind):
            return what
    # An OSError's own text may hold the address ("Connect call failed
    # ('10.0.3.7', 8443)"); the text of its number does not.
    number = exc.errno if isinstance(exc, OSError) else None
    if number is not None and number > 0:
        return os.strerror(number).lower()
    return "the connection failed"


def _live(loop: asyncio.AbstractEventLoop | None) -> TypeGuard[asyncio.AbstractEventLoop]:
    return loop is not None and loop.is_running() and not loop.is_closed()


async def _close_on_its_loop(session: aiohttp.ClientSession,
                             loop: asyncio.AbstractEventLoop | None) -> None:
    """Close `session` from the running loop. Its transports belong to its own
    loop: when that one runs in another thread, the close happens there; else
    here (this loop's session, or an ended loop's, where closing does no I/O)."""
    if loop is not asyncio.get_running_loop() and _live(loop):
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(session.close(), loop))
    else:
        await session.close()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None (`get_running_loop` raises)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close_at_once(session: aiohttp.ClientSession) -> None:
    """Close `session` without waiting for anything. Its close is run up to its
    first wait, as an eager task would run it: by then every connection is
    closed and the session counts as closed, so it says nothing when collected.
    What it would wait for is the sockets' shutdown, which the loop finishes
    if it runs again (an ended one has nothing left to run)."""
    closing = session.close()
    try:
        closing.send(None)
    except StopIteration:
        pass
    finally:
        closing.close()


# The pool's bounds (router_settings.max_upstream_connections and
# max_upstream_connections_per_host). The total keeps file descriptors bounded.
# A share per upstream host (host, port and scheme) below it keeps one host that
# hangs (or one client's flood of calls to it) from taking every connection,
# but calls past a share wait for a connection within their own timeout, and a
# timeout while waiting counts against the deployment as any other: a share set
# by default would quietly cap what a gateway sends to its one big provider
# (every deployment at api.openai.com is one host) and cool its deployments
# under a legitimate load. So by default a host may take the whole pool, as
# before shares existed; operators with several providers set one.
MAX_CONNECTIONS = 1000
MAX_CONNECTIONS_PER_HOST = MAX_CONNECTIONS


class HttpClient:
    """A pooled async HTTP client without hidden retries."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS,
                 max_per_host: int = MAX_CONNECTIONS_PER_HOST) -> None:
        if not 1 <= max_per_host <= max_connections:
            # aiohttp reads 0 as "no limit": one host could take the whole pool again.
            raise ValueError(f"max_per_host must be between 1 and max_connections "
                             f"({max_connections}), got {max_per_host}")
        self._max_connections = max_connections
        self._max_per_host = max_per_host
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retiring: set[asyncio.Future[None]] = set()

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:
            self._retire(self._session, self._loop)
            self._session = None
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_per_host,
                ttl_dns_cache=300, enable_cleanup_closed=True,
            )
            # auto_decompress stays on; raise_for_status off: adapters read error bodies.
            # No cookie jar: providers behind Cloudflare set cookies on API answers,
            # and this one session serves every caller, whose requests a kept cookie
            # would tie together. (It also spares a jar lookup per request.)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return self._session

    def _retire(self, session: aiohttp.ClientSession,
                loop: asyncio.AbstractEventLoop | None) -> None:
        """Let go of a session made on another event loop: a library user who calls
        both `completion` and `acompletion`, or runs `asyncio.run` more than once.
        Dropped unclosed, it logged "Unclosed client session" and kept its sockets.

        A live loop (the sync facade's thread) closes its own session. A session
        whose loop has ended has no sockets left to close, so closing it here
        only marks it closed. A loop that is idle but not closed may run again,
        so its session is left to it."""
        idle = loop is not None and not loop.is_running() and not loop.is_closed()
        if session.closed or idle:
            return
        if _live(loop):
            # A callback, not a task: that loop's thread may be the one blocked
            # in this sync call (ported code calls `completion` inside a
            # coroutine), and an `asyncio.run` ending right after it cancelled
            # the task before it began, leaving "Unclosed client session".
            try:
                loop.call_soon_threadsafe(_close_at_once, session)
                return
            except RuntimeError:  # it closed since: its session is an ended loop's
                pass
        task = asyncio.ensure_future(_close_on_its_loop(session, loop))
        self._retiring.add(task)  # a strong reference until it is done
        task.add_done_callback(self._retiring.discard)

    def _client_timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        # Not cached: `total` is what is left of each request's own deadline.
        return aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)

    def post(self, url: str, *, headers: Mapping[str, str], body: bytes,
             timeouts: Timeouts, labels: Labels) -> Awaitable[HttpResponse]:
        # The request's own coroutine, not one awaiting it: a frame less per call.
        return self._request("POST", url, headers, body, timeouts, labels)

    def stream(self, url: str, *, headers: Mapping[str, str], body: bytes,
               timeouts: Timeouts, labels: Labels) -> _StreamContext:
        return _StreamContext(self, url, headers, body, timeouts, labels)

    async def get(self, url: str, *, headers: Mapping[str, str], timeouts: Timeouts,
                  labels: Labels) -> HttpResponse:
        return await self._request("GET", url, headers, None, timeouts, labels)

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes | None, timeouts: Timeouts, labels: Labels) -> HttpResponse:
        session = self._get_session()
        try:
            async with session.request(method, url, data=body, headers=headers,
                                       timeout=self._client_timeout(timeouts)) as resp:
                # An answer's body mostly comes whole in one read: take it, and read
                # on only if more is due. resp.read() looped for a second, empty
                # read and kept a copy on the response (about 90 opcodes).
                content = resp.content
                data = await content.readany()
                if not content.at_eof():
                    data += await content.read()
                return HttpResponse(resp.status, resp.headers, data)
        except TimeoutError:
            raise timeout_error(labels, "did not answer", timeouts.total, ANSWER_HINT) from None
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: see _connection_error
            raise _connection_error(exc, labels, url) from None

    async def aclose(self) -> None:
        session, loop, self._session = self._session, self._loop, None
        if session is not None and not session.closed:
            await _close_on_its_loop(session, loop)

    def close_from_outside(self, timeout: float = 5.0) -> None:
        """Close the pool without `aclose` (a program ending without it, a Router
        dropped), on whichever loop its session belongs to. It never waits on the
        loop running in this thread: a finalizer runs there when the last
        reference goes inside a coroutine, and waiting froze that loop until
        the timeout, then left the pool open."""
        session, loop, self._session = self._session, self._loop, None
        if session is None or session.closed:
            return
        here = running_loop()
        if loop is not here and _live(loop):
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout)
        elif here is None and loop is not None and not loop.is_closed():
            loop.run_until_complete(session.close())
        else:  # this thread's own loop, or one that has ended
            _close_at_once(session)


class _StreamContext:
    def __init__(self, client: HttpClient, url: str, headers: Mapping[str, str], body: bytes,
                 timeouts: Timeouts, labels: Labels) -> None:
        self._client = client
        self._args = (url, headers, body)
        self._timeouts = timeouts
        self._labels = labels
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> StreamingResponse:
        url, headers, body = self._args
        client = self._client
        session = client._get_session()
        loop = client._loop  # the running loop: _get_session has just made sure
        assert loop is not None
        started = time.monotonic()
        # Headers often arrive only with the first token, so waiting for them is
        # bounded by the first-token timeout as well as the total (which
        # StreamingResponse enforces once they are in, apart from the other two).
        wait = _cap(self._timeouts.first_token, self._timeouts.total)
        late = None if wait is None else _LateHeaders(asyncio.current_task(loop), loop, wait)
        try:
            self._resp = await session.post(url, data=body, headers=headers,
                                            timeout=_connect_only_timeout(self._timeouts.connect))
        except asyncio.CancelledError:
            if late is not None and late.was_ours():
                raise self._late() from None
            raise
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: see _connection_error
            raise _connection_error(exc, self._labels, url) from None
        finally:
            if late is not None:
                late.disarm()
        return StreamingResponse(self._resp, self._timeouts, self._labels, started, loop)

    def _late(self) -> Timeout:
        first_token, total = self._timeouts.first_token, self._timeouts.total
        wait: float | None
        # The dispatcher caps the first-token wait at the total: equal, the total is
        # what ran out (raising first_token_timeout alone would change nothing).
        if first_token is not None and (total is None or first_token < total):
            wait, hint = first_token, "raise the router's first_token_timeout to wait longer"
        else:
            wait, hint = total, STREAM_HINT
        return timeout_error(self._labels, "did not start answering (no first token)", wait,
                             hint)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._resp is not None:
            # Closing (not releasing) drops a half-read connection instead of
            # returning it to the pool in an unknown state.
            if exc_type is not None:
                self._resp.close()
            else:
                self._resp.release()
