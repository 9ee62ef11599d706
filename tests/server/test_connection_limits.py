"""What one connection may cost: headers capped in size (431), headers and a
stalled body cut after a time (408), connections capped in number (503).

Spoken over raw sockets, as the clients these limits are for do not follow HTTP.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from tests.server.gateways import MASTER_KEY, RunningGateway, three_provider_config

from interlock.server import connection_limits
from interlock.server.refusal_log import RefusalLog
from interlock.testing import FakeUpstream, Fault

START = b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n"


def _connect(gateway: RunningGateway, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.settimeout(timeout)
    return sock


def _send(sock: socket.socket, data: bytes) -> bool:
    """Whether all of `data` went out: the gateway may close while it is sent."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _answer(sock: socket.socket) -> bytes:
    """All the gateway sends until it closes the connection (or a reset)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def _error(answer: bytes) -> dict[str, Any]:
    error: dict[str, Any] = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    return error


def _limited(fake: FakeUpstream, start: Callable[..., RunningGateway],
             **limits: Any) -> RunningGateway:
    config = three_provider_config(fake)
    config["general_settings"].update(limits)
    return start(config)


def test_headers_over_the_cap_are_answered_431_and_the_connection_closed(
        gateway: RunningGateway) -> None:
    # 100 KB in one header (the default cap is 64 KiB), then nothing: the
    # gateway must not wait for the header's end.
    sock = _connect(gateway)
    _send(sock, START + b"X-Big: " + b"a" * 100_000)
    answer = _answer(sock)
    assert _status(answer) == 431
    error = _error(answer)
    assert error["code"] == "headers_too_large"
    assert "65536 bytes" in error["message"]
    assert "max_request_header_bytes" in error["message"]


def test_an_endless_header_is_cut_off_rather_than_held(gateway: RunningGateway) -> None:
    # The gateway used to keep every byte of an unfinished header: 8 MB was read
    # whole and answered 200, and 4 connections of 100 MB took 400 MB. Sent from
    # a thread while this one reads (the gateway answers and closes while the
    # header is still being sent); the sender counts what went out before the
    # close stopped it, which the sockets' buffers bound to a few MB.
    sock = _connect(gateway)
    sent = [0]

    def send_endless_header() -> None:
        if _send(sock, START + b"X-Big: "):
            chunk = b"a" * 65536
            while sent[0] < 64_000_000 and _send(sock, chunk):
                sent[0] += len(chunk)

    sender = threading.Thread(target=send_endless_header)
    sender.start()
    answer = _answer(sock)
    sender.join()
    assert _status(answer) == 431
    assert _error(answer)["code"] == "headers_too_large"
    assert sent[0] < 32_000_000, "the gateway read the header on past its cap"


def test_many_small_headers_count_together(gateway: RunningGateway) -> None:
    headers = b"".join(b"X-%d: a\r\n" % i for i in range(20_000))  # about 200 KB
    sock = _connect(gateway)
    _send(sock, START + headers + b"\r\n")
    assert _status(_answer(sock)) == 431


def test_headers_complete_in_one_read_are_measured_not_their_body(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """A read that ends the headers may carry the body: the headers alone count."""
    gateway = _limited(fake_upstream, start_gateway, max_request_header_bytes=4096)
    body = orjson.dumps({"model": "budget", "messages": [
        {"role": "user", "content": "x" * 20_000}]})
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
    sock = _connect(gateway)
    _send(sock, head + b"X-Pad: " + b"p" * 3000 + b"\r\n\r\n" + body)
    assert _status(_answer(sock)) == 200
    sock = _connect(gateway)
    _send(sock, head + b"X-Pad: " + b"p" * 5000 + b"\r\n\r\n" + body)
    assert _status(_answer(sock)) == 431


def _statuses(answer: bytes) -> list[int]:
    """The statuses of the answers, in order (a body ends without a line break)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_a_pipelined_request_is_held_to_the_header_cap(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """A request that begins in the read that ended the one before it: its
    headers were counted as 0 bytes and never checked. (A small cap, so that
    both requests come in one read.)"""
    gateway = _limited(fake_upstream, start_gateway, max_request_header_bytes=4096)
    sock = _connect(gateway)
    _send(sock, START + b"\r\n" + START + b"X-Big: " + b"a" * 10_000
          + b"\r\nConnection: close\r\n\r\n")
    assert _statuses(_answer(sock)) == [200, 431]


def test_a_pipelined_request_whose_headers_stop_gets_408(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """Its header timer was never started: only uvicorn's keep-alive (5 s) cut it."""
    gateway = _limited(fake_upstream, start_gateway, request_header_timeout=0.5)
    sock = _connect(gateway)
    _send(sock, START + b"\r\n" + START)  # the second never ends its headers
    answer = _answer(sock)  # uvicorn's keep-alive closed it without a word
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 408" in answer


def test_a_pipelined_request_whose_headers_span_reads_is_measured(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """Begun at the end of one read and ended in the next: the part in the first
    read counts too."""
    gateway = _limited(fake_upstream, start_gateway, max_request_header_bytes=4096)
    sock = _connect(gateway)
    _send(sock, START + b"\r\n" + START + b"X-Big: " + b"a" * 3000)
    time.sleep(0.3)  # a read of its own
    _send(sock, b"a" * 2000 + b"\r\nConnection: close\r\n\r\n")
    assert _statuses(_answer(sock)) == [200, 431]


def test_headers_under_the_cap_and_keep_alive_still_work(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        for _ in range(3):  # one connection, kept alive
            answer = http.get("/health/liveness", headers={"x-big": "a" * 60_000})
            assert answer.status_code == 200


def test_headers_that_stop_arriving_get_408(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gateway = _limited(fake_upstream, start_gateway, request_header_timeout=0.5)
    started = time.monotonic()  # before the connection, whose opening starts the time
    sock = _connect(gateway)
    _send(sock, START)  # and never the blank line that ends the headers
    answer = _answer(sock)  # within the socket's timeout
    assert _status(answer) == 408
    assert "request_header_timeout" in _error(answer)["message"]
    assert time.monotonic() - started >= 0.5  # not before its time


def test_headers_sent_a_byte_at_a_time_still_have_one_deadline(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gateway = _limited(fake_upstream, start_gateway, request_header_timeout=0.6)
    sock = _connect(gateway)
    cut_while_sending = False
    # 20 s of bytes at least, a well-formed header all along: the deadline
    # comes long before.
    for byte in START + b"X-Slow: " + b"a" * 400:
        if select.select([sock], [], [], 0.05)[0] or not _send(sock, bytes([byte])):
            cut_while_sending = True  # answered (or closed) with bytes still coming
            break
    assert cut_while_sending, "each byte put the headers' deadline off"
    assert _status(_answer(sock)) == 408


def test_a_connection_that_sends_nothing_is_closed(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gateway = _limited(fake_upstream, start_gateway, request_header_timeout=0.5)
    sock = _connect(gateway)
    assert _answer(sock) == b""  # closed without a word: there was no request


def _post_head(length: int) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length)


def test_a_body_that_stops_arriving_gets_408(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = _limited(fake_upstream, start_gateway, request_body_timeout=0.5)
    sock = _connect(gateway)
    started = time.monotonic()
    _send(sock, _post_head(100) + b"{")  # 1 byte of the 100 declared
    answer = _answer(sock)  # within the socket's timeout
    assert _status(answer) == 408
    assert "request_body_timeout" in _error(answer)["message"]
    assert time.monotonic() - started >= 0.5  # not before its time
    assert fake_upstream.calls() == 0
    # The handler waiting for the body sees the client gone: no error, no traceback.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_slow_body_that_keeps_coming_is_read(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """The body's limit is a pause between reads, not a time for the whole body."""
    # Pauses of 0.3 s, each far within the limit (a loaded machine may stretch
    # them), that add up to well past it.
    gateway = _limited(fake_upstream, start_gateway, request_body_timeout=1.5)
    body = orjson.dumps({"model": "budget", "messages": [{"role": "user", "content": "hi"}]})
    sock = _connect(gateway)
    _send(sock, _post_head(len(body)))
    pieces = [body[i:i + 8] for i in range(0, len(body), 8)]
    started = time.monotonic()
    for piece in pieces:
        time.sleep(0.3)
        _send(sock, piece)
    assert time.monotonic() - started > 1.5 * 1.5
    assert sock.recv(12) == b"HTTP/1.1 200"


def test_max_connections_answers_503_past_the_cap(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """uvicorn's own 503 was plain text ("Service Unavailable"), unlike every
    other error of the gateway."""
    gateway = _limited(fake_upstream, start_gateway, max_connections=1)
    held = _connect(gateway)
    _send(held, START)  # one connection, its request unfinished
    with httpx.Client(base_url=gateway.url) as http:
        answer = http.get("/health/liveness")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["connection"] == "close"
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("service_unavailable", "too_many_connections")
    assert "general_settings.max_connections" in error["message"]
    assert "Retry" in error["message"]
    held.close()


def test_max_connections_allows_that_many_connections(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    # uvicorn counted the request's own connection against the cap: with 1, every
    # request was refused, and N allowed N - 1 connections.
    gateway = _limited(fake_upstream, start_gateway, max_connections=2)
    held = _connect(gateway)
    _send(held, START)  # one connection, its request unfinished
    with httpx.Client(base_url=gateway.url) as http:
        assert http.get("/health/liveness").status_code == 200  # the second connection
    held.close()
    alone = _limited(fake_upstream, start_gateway, max_connections=1)
    with httpx.Client(base_url=alone.url) as http:
        assert http.get("/health/liveness").status_code == 200


def test_a_503_before_the_body_ends_is_read_and_the_connection_closed(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """Refused past max_connections while its body is still coming: the client
    reads the JSON 503, and the connection ends once the body has."""
    gateway = _limited(fake_upstream, start_gateway, max_connections=1)
    held = _connect(gateway)
    _send(held, START)
    body = b" " * 4_000_000
    sock = _connect(gateway, timeout=5)
    _send(sock, _post_head(len(body)) + b"{")
    time.sleep(0.2)  # answered by now
    # As the OpenAI SDKs do: the whole body first, then the answer. Closed at the
    # answer, the connection would be reset under the body, the answer lost.
    assert _send(sock, body[1:])
    answer = _answer(sock)  # closed within the socket's timeout, not kept
    assert _status(answer) == 503
    assert b"content-type: application/json" in answer.lower()
    assert _error(answer)["code"] == "too_many_connections"
    held.close()


def test_bytes_that_are_not_http_get_an_openai_shaped_400(gateway: RunningGateway) -> None:
    """uvicorn answered "Invalid HTTP request received." as plain text."""
    sock = _connect(gateway)
    _send(sock, b"GET /health/liveness HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
    answer = _answer(sock)
    assert _status(answer) == 400
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-type: application/json" in head
    assert b"connection: close" in head
    error = _error(answer)
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_http_request")
    assert "HTTP/1.1" in error["message"]
    assert "Invalid header" in error["message"]  # the parser's reason


def test_a_body_that_trickles_on_past_its_total_time_gets_408(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """A byte every so often, each within request_body_timeout, kept the
    connection for ever: the body now has a deadline of its own."""
    # A byte every 0.2 s: far within request_body_timeout, however loaded the
    # machine, so only the total can end it.
    gateway = _limited(fake_upstream, start_gateway, request_body_timeout=3,
                       request_body_total_timeout=1.5)
    sock = _connect(gateway)
    started = time.monotonic()  # before the body's time starts
    _send(sock, _post_head(100) + b"{")
    answer = b""
    sock.settimeout(0.2)
    for _ in range(90):  # a byte every 0.2 s would fill the 100 in about 20 s
        try:
            answer = _answer(sock)
            break
        except TimeoutError:
            _send(sock, b" ")
    assert _status(answer) == 408
    error = _error(answer)
    assert error["code"] == "request_timeout"
    assert "request_body_total_timeout" in error["message"]
    assert time.monotonic() - started >= 1.5  # not before its time
    assert fake_upstream.calls() == 0


def test_a_body_the_gateway_is_not_reading_is_not_timed(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """The whole-body deadline counts the client's time, not the time the gateway
    spends not reading: here a pipelined request's large body, sent at once but
    read only once the request before it is answered (a slow upstream, 4 s).
    The limits leave the client 2 s to send 2 MB, however loaded the machine;
    the unit tests below time the same arithmetic by hand."""
    fake_upstream.script(Fault(latency=4))
    gateway = _limited(fake_upstream, start_gateway, request_body_timeout=2,
                       request_body_total_timeout=2)
    first = orjson.dumps({"model": "budget", "messages": [{"role": "user", "content": "hi"}]})
    # Past uvicorn's 64 KiB buffer: the gateway stops reading until it is wanted.
    big = orjson.dumps({"model": "budget",
                        "messages": [{"role": "user", "content": "x" * 2_000_000}]})
    second = _post_head(len(big)).replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    sock = _connect(gateway)
    started = time.monotonic()
    _send(sock, _post_head(len(first)) + first + second + big)
    assert _statuses(_answer(sock)) == [200, 200]
    assert time.monotonic() - started > 4  # the second body waited past its limits


def test_a_websocket_upgrade_is_answered_as_plain_http_without_a_log_line(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        caplog: pytest.LogCaptureFixture) -> None:
    """The gateway serves no WebSocket: an upgrade used to be handed to uvicorn's
    WebSocket protocol (outside these limits), a 500 and an error in the log."""
    gateway = _limited(fake_upstream, start_gateway, request_body_timeout=0.3)
    sock = _connect(gateway)
    upgrade = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    _send(sock, START + upgrade)
    assert sock.recv(12) == b"HTTP/1.1 200"
    time.sleep(0.6)  # past the body's limit: the connection is not taken for a stalled body
    _send(sock, START + b"Connection: close\r\n\r\n")
    assert b"HTTP/1.1 200" in _answer(sock)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _no_key_post(length: int) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length)


def _read_head_and_body(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read without waiting for the close."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_an_answer_before_the_body_ends_closes_the_connection(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    """A 401 sent before the body was read: uvicorn kept the connection and threw
    the body away as it came, so a client with no key that declared a huge body
    and kept sending held the connection for ever."""
    gateway = _limited(fake_upstream, start_gateway, request_body_timeout=1)
    sock = _connect(gateway, timeout=5)
    chunk = b"x" * 65536
    _send(sock, _no_key_post(10**12) + chunk)
    assert _status(_read_head_and_body(sock)) == 401
    # Closed 1 s after the answer (the body's limit); 30 s of sending, were it not.
    for _ in range(3000):
        if not _send(sock, chunk):
            break
        time.sleep(0.01)
    else:
        pytest.fail("the gateway kept reading a body it had answered")


def test_a_client_that_sends_its_whole_body_first_still_reads_the_answer(
        gateway: RunningGateway) -> None:
    """The connection is closed after the rest of the body, or a short wait: not at
    once, or a client that reads only once it has sent (httpx, the OpenAI SDKs)
    would see its write fail (a reset) instead of the 401."""
    body = b"x" * 4_000_000
    sock = _connect(gateway)
    assert _send(sock, _no_key_post(len(body)) + body)
    answer = _answer(sock)
    assert _status(answer) == 401
    with httpx.Client(base_url=gateway.url) as http:
        assert http.post("/v1/chat/completions", content=body,
                         headers={"content-type": "application/json"}).status_code == 401


# What LimitedHttpToolsProtocol uses of uvicorn beyond its public API, and where
# uvicorn defines it: a uvicorn that drops or renames one fails here, by name,
# rather than in a limit that silently stops applying.
_UVICORN_MEMBERS = [
    ("HttpToolsProtocol.data_received", "self._unset_keepalive_if_required()",
     "done by `_parse`, which stands for data_received so that its warnings are bounded"),
    ("HttpToolsProtocol.data_received", "self.parser.feed_data(data)",
     "done by `_parse`, which stands for data_received so that its warnings are bounded"),
    ("HttpToolsProtocol.on_headers_complete", "app = self.app",
     "swapped for the 431 app while the headers' request is made"),
    ("HttpToolsProtocol.on_headers_complete", "on_response=self.on_response_complete",
     "overridden to close a connection answered before its body ended"),
    ("HttpToolsProtocol.on_headers_complete", "scope=self.scope",
     "a request whose headers have not ended has a scope no cycle holds"),
    ("HttpToolsProtocol.on_message_begin", "self.headers = []",
     "measured, with self.url, for the header cap"),
    ("HttpToolsProtocol.on_url", "self.url += url", "measured for the header cap"),
    ("RequestResponseCycle.__init__", "self.response_started = False",
     "whether a 408 may still be answered"),
    ("RequestResponseCycle.__init__", "self.response_complete = False",
     "whether a connection is answered"),
    ("RequestResponseCycle.__init__", "self.more_body = True",
     "whether the body has ended"),
    ("RequestResponseCycle.__init__", "self.disconnected = False",
     "set so a handler waiting for a cut body stops"),
    ("FlowControl.__init__", "self.read_paused = False",
     "a body the app is not reading is not the client's stall"),
]


@pytest.mark.parametrize(("where", "code", "why"), _UVICORN_MEMBERS)
def test_the_uvicorn_members_the_protocol_relies_on_are_there(
        where: str, code: str, why: str) -> None:
    from uvicorn.protocols.http import flow_control, httptools_impl

    owner, _, name = where.partition(".")
    module = flow_control if owner == "FlowControl" else httptools_impl
    function = getattr(getattr(module, owner), name, None)
    source = inspect.getsource(function) if function is not None else ""
    assert code in source, (
        f"uvicorn {uvicorn.__version__}: {where} no longer has `{code}`, which "
        f"interlock.server.connection_limits relies on ({why}). Adapt "
        f"{connection_limits.__name__} to this uvicorn before upgrading.")


def test_bad_bytes_pipelined_behind_an_answer_do_not_land_inside_it(
        gateway: RunningGateway) -> None:
    # uvicorn wrote its 400 at once, into the middle of the answer being written
    # to the request before: the client read a status line inside a body.
    sock = _connect(gateway)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer " + MASTER_KEY.encode())
    body = orjson.dumps({"model": "budget", "stream": True,
                         "messages": [{"role": "user", "content": "hello"}]})
    _send(sock, head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
          + b"GET / HTTP/1.1\r\nBad Header: y\r\n\r\n")
    answer = _answer(sock)
    assert _statuses(answer) == [200]
    assert b"invalid_http_request" not in answer


def test_a_bad_chunk_in_a_body_being_read_gets_the_400(gateway: RunningGateway) -> None:
    # The handler is reading the body, its answer not begun: the client is told
    # why, as for bad bytes anywhere else, and the connection closed.
    sock = _connect(gateway)
    _send(sock, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
          b"application/json\r\nAuthorization: Bearer " + MASTER_KEY.encode()
          + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n")
    time.sleep(0.3)  # the handler waits for the rest of the body
    _send(sock, b"zz-not-hex\r\n")
    answer = _answer(sock)
    assert _statuses(answer) == [400]
    assert _error(answer)["code"] == "invalid_http_request"


def test_bytes_after_bad_ones_behind_an_answer_are_dropped_unparsed(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    # Each later read was parsed again, failing again: a warning a read, for as
    # long as the answer before them ran; and the bad bytes started a header
    # timer that cut that answer after request_header_timeout.
    gateway = _limited(fake_upstream, start_gateway, request_header_timeout=0.5)
    fake_upstream.script(Fault(chunk_interval=0.1), provider="openai")
    sock = _connect(gateway)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer " + MASTER_KEY.encode())
    body = orjson.dumps({"model": "budget", "stream": True,
                         "messages": [{"role": "user", "content": "hello"}]})
    with _warnings() as warned:
        _send(sock, head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
              + b"GET / HTTP/1.1\r\nBad Header: y\r\n\r\n")
        started = time.monotonic()
        for _ in range(3):
            time.sleep(0.15)
            _send(sock, b"more bad bytes\r\n\r\n")
        answer = _answer(sock)
    assert time.monotonic() - started > 0.5  # the stream outlasted the header timeout
    assert _statuses(answer) == [200] and answer.endswith(b"0\r\n\r\n")  # ended whole
    assert len(warned) == 1 and "not HTTP/1.1" in warned[0].getMessage()


@contextlib.contextmanager
def _warnings(level: int = logging.WARNING) -> Iterator[list[logging.LogRecord]]:
    """The records of `level` and above from the gateway's edge: Interlock's
    protocol, and uvicorn's own logger (which does not reach the root's handlers)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "interlock.server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(min(level, logger.getEffectiveLevel()))
    try:
        yield records
    finally:
        for logger, was in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(was)


def _refusals_summarized_every(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Gateways started from now on count repeated refusals over `seconds`."""
    monkeypatch.setattr(connection_limits, "RefusalLog",
                        functools.partial(RefusalLog, every=seconds))


def test_bytes_that_are_not_http_are_logged_once_then_counted(
        fake_upstream: FakeUpstream,
        start_gateway: Callable[..., RunningGateway],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn warned "Invalid HTTP request received." for each: any client, with
    # no key, could write as many lines as it sent requests.
    every = 1.0
    _refusals_summarized_every(monkeypatch, every)
    gateway = _limited(fake_upstream, start_gateway)
    sent = 20
    with _warnings() as warned:
        started = time.monotonic()
        for _ in range(sent):
            sock = _connect(gateway)
            _send(sock, b"GET / HTTP/1.1\r\nBad Header: y\r\n\r\n")
            answer = _answer(sock)
            assert _status(answer) == 400  # each is still told why
            assert _error(answer)["code"] == "invalid_http_request"
        elapsed = time.monotonic() - started
        # The last interval's count comes when it ends.
        for _ in range(100):
            counted = [int(m[1]) for r in warned[1:]
                       if (m := re.match(r"(\d+) more ", r.getMessage()))]
            if sum(counted) >= sent - 1:
                break
            time.sleep(0.1)
    said = [r.getMessage() for r in warned]
    assert "refused a request from 127.0.0.1:" in said[0]
    assert "its bytes are not HTTP/1.1 (Invalid header" in said[0]
    assert all(" more requests refused 400 as not HTTP/1.1 in the last " in line
               for line in said[1:]), said
    assert sum(counted) == sent - 1  # every one counted, none twice
    # A line an interval at most (the sending's, and the one after it).
    assert len(said) <= 2 + elapsed / every, said


def test_refusals_a_client_can_repeat_are_logged_once(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 431s and 408s were an info line each, 503s past max_connections a warning
    # each: a client could fill the log at will (at the level that shows them).
    _refusals_summarized_every(monkeypatch, 3600)
    gateway = _limited(fake_upstream, start_gateway, max_request_header_bytes=4096,
                       request_header_timeout=0.3)
    # Apart: the connection held below must outlive the test, not be cut in 0.3 s.
    crowded = _limited(fake_upstream, start_gateway, max_connections=1)
    with _warnings(logging.INFO) as logged:
        for _ in range(3):
            sock = _connect(gateway)
            _send(sock, START + b"X-Big: " + b"a" * 10_000)
            assert _status(_answer(sock)) == 431
        for _ in range(3):
            sock = _connect(gateway)
            _send(sock, START)  # headers that never end
            assert _status(_answer(sock)) == 408
        held = _connect(crowded)
        _send(held, b"GET")  # holds the one connection allowed
        for _ in range(3):
            with httpx.Client(base_url=crowded.url) as http:
                assert http.get("/health/liveness").status_code == 503
        held.close()
    said = [r.getMessage() for r in logged]
    assert len(said) == 3, said
    assert "max_request_header_bytes" in said[0]
    assert "request_header_timeout" in said[1]
    assert "general_settings.max_connections" in said[2]
    assert "from 127.0.0.1:" in said[2]  # whose requests, as for the others


class _Clock:
    """A loop's clock, moved by hand."""

    now = 100.0

    def time(self) -> float:
        return self.now


class _Transport:
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _timed_flow(clock: _Clock) -> connection_limits._TimedFlowControl:
    return connection_limits._TimedFlowControl(_Transport(), clock)  # type: ignore[arg-type]


def test_the_time_reading_was_paused_is_added_up_to_the_moment() -> None:
    # The body's deadlines credited a pause only if it was still on when their
    # timer fired: one that ended just before went uncounted, up to a timer's
    # wait, and a pipelined body was refused a 408 under load.
    clock = _Clock()
    flow = _timed_flow(clock)
    flow.pause_reading()
    clock.now = 100.9
    flow.resume_reading()
    clock.now = 101.5
    assert flow.paused_for(clock.now) == pytest.approx(0.9)  # ended, still counted
    flow.pause_reading()
    clock.now = 102.0
    assert flow.paused_for(clock.now) == pytest.approx(1.4)  # and the one going on


# The body's deadlines, timed by hand: what test_a_body_the_gateway_is_not_reading_is_not_timed
# shows end to end, here at every moment that matters and with no wall clock.
_BODY_LIMITS = connection_limits.ConnectionLimits(body_timeout=0.3, body_total_timeout=0.6)


def _time_left(body: connection_limits._BodyClock, flow: connection_limits._TimedFlowControl,
               now: float) -> tuple[float, float]:
    """What the body's timer computes when it fires at `now`."""
    return body.time_left(_BODY_LIMITS, now, flow.paused_for(now), flow.read_paused)


def test_a_body_waiting_its_turn_keeps_its_time_however_late_the_timer_fires() -> None:
    clock = _Clock()
    flow, body = _timed_flow(clock), connection_limits._BodyClock()
    body.start(100.0, flow.paused_for(100.0))  # a pipelined request's body begins
    flow.pause_reading()  # and waits for the request before it: 1.2 s
    clock.now = 100.3
    left, total_left = _time_left(body, flow, clock.now)  # its timer, while it waits
    assert (left, total_left) == (pytest.approx(0.3), pytest.approx(0.6))
    clock.now = 101.2
    flow.resume_reading()
    body.read_at = 101.25  # read at last
    # The timer fires late (a loaded loop), after the pause ended: the pause
    # is still the gateway's time, not the client's.
    left, total_left = _time_left(body, flow, 101.4)
    assert total_left == pytest.approx(0.4)  # 0.2 s of the client's time spent
    assert left == pytest.approx(0.3)


def test_a_body_s_own_time_runs_out_once_the_gateway_reads_again() -> None:
    clock = _Clock()
    flow, body = _timed_flow(clock), connection_limits._BodyClock()
    body.start(100.0, 0.0)
    flow.pause_reading()
    clock.now = 101.0
    flow.resume_reading()
    # Nothing comes after the pause: it stalls body_timeout after it.
    assert _time_left(body, flow, 101.2)[0] == pytest.approx(0.1)
    assert _time_left(body, flow, 101.3)[0] == pytest.approx(0.0)
    # A body that keeps coming, a read every 0.1 s, has 0.6 s of its own time.
    for now in (101.4, 101.5, 101.6):
        body.read_at = now
    left, total_left = _time_left(body, flow, 101.6)
    assert total_left == pytest.approx(0.0) and left <= 0  # refused: the whole-body limit
