"""The pooled HTTP client: stream timeouts (total, first token, idle) and whole answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from interlock.adapters.http import (
    HttpClient,
    HttpResponse,
    Labels,
    StreamingResponse,
    Timeouts,
)
from interlock.errors import ConnectionFailed, Timeout
from interlock.testing import Fault, Reply

BODY = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'


@asynccontextmanager
async def _streaming(fake, timeouts: Timeouts) -> AsyncIterator[StreamingResponse]:
    http = HttpClient()
    try:
        url = fake.base_url("openai") + "/chat/completions"
        async with http.stream(url, headers={"content-type": "application/json"}, body=BODY,
                               timeouts=timeouts, labels=Labels("openai", "d")) as resp:
            yield resp
    finally:
        await http.aclose()


async def _read_all(fake, timeouts: Timeouts) -> int:
    async with _streaming(fake, timeouts) as resp:
        return sum([len(batch) async for batch in resp.line_batches()])


async def test_a_stream_that_outlives_its_total_timeout_is_cut_with_timeout(fake_upstream):
    fake_upstream.reply(Reply(text="x" * 40, chunk_chars=1), provider="openai")
    fake_upstream.script(Fault(chunk_interval=0.05), provider="openai")
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"did not finish the stream for deployment 'd' "
                                      r"within 0\.4 s; raise `stream_timeout`"):
        await _read_all(fake_upstream, Timeouts(total=0.4))
    assert time.monotonic() - started < 1.5


async def test_idle_and_first_token_timeouts_name_what_was_awaited(fake_upstream):
    fake_upstream.script(Fault(first_token_delay=1.0), provider="openai")
    with pytest.raises(Timeout, match="first token; raise the router's first_token_timeout"):
        await _read_all(fake_upstream, Timeouts(total=5, first_token=0.2))
    fake_upstream.reply(Reply(text="x" * 10, chunk_chars=1), provider="openai")
    fake_upstream.script(Fault(chunk_interval=0.5), provider="openai")
    with pytest.raises(Timeout, match="next chunk; raise the router's stream_idle_timeout"):
        await _read_all(fake_upstream, Timeouts(total=5, idle=0.2))


# What is left of a request's deadline, as the dispatcher hands it down.
LEFT = 1.9999233649999724


async def test_a_stream_with_no_first_token_before_its_deadline_says_so(fake_upstream):
    # The headers came and then nothing: "did not finish the stream" sent readers
    # looking for a broken stream, and the unrounded float said nothing more.
    fake_upstream.script(Fault(first_token_delay=5), provider="openai")
    with pytest.raises(Timeout) as info:
        await _read_all(fake_upstream, Timeouts(total=LEFT))
    assert info.value.message == (
        "openai sent no first token for deployment 'd' within 2.0 s; raise "
        "`stream_timeout` (on the deployment or the router) or the call's `timeout` "
        "to wait longer")
    assert info.value.deployment == "d"


async def test_a_whole_answer_past_its_deadline_names_the_setting_to_raise(fake_upstream):
    fake_upstream.script(Fault(latency=5), provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(Timeout) as info:
            await http.post(fake_upstream.base_url("openai") + "/chat/completions",
                            headers={"content-type": "application/json"}, body=BODY,
                            timeouts=Timeouts(total=LEFT / 4), labels=Labels("openai", "d"))
    finally:
        await http.aclose()
    assert info.value.message == (
        "openai did not answer for deployment 'd' within 0.5 s; raise `timeout` (on "
        "the deployment, the router or the call) to wait longer")


async def test_a_stream_within_its_timeouts_is_read_whole(fake_upstream):
    lines = await _read_all(fake_upstream, Timeouts(total=5, first_token=1, idle=1))
    assert lines > 3


async def test_time_the_consumer_spends_between_reads_is_not_idle_time(fake_upstream):
    # Chunks every 20 ms, an idle limit of 150 ms, and a consumer that dawdles 250 ms
    # over each read: only the waits on the network count, so nothing times out.
    fake_upstream.reply(Reply(text="x" * 6, chunk_chars=1), provider="openai")
    fake_upstream.script(Fault(chunk_interval=0.02), provider="openai")
    reads = 0
    async with _streaming(fake_upstream, Timeouts(total=10, first_token=1, idle=0.15)) as resp:
        async for batch in resp.line_batches():
            reads += 1
            assert batch
            await asyncio.sleep(0.25)
    assert reads >= 2


async def test_a_short_idle_limit_holds_after_a_long_first_token_wait(fake_upstream):
    # The first chunk comes at once, the next after 0.6 s: with 5 s allowed for the
    # first token and 0.2 s idle, the idle limit must cut it, not the first-token one.
    fake_upstream.reply(Reply(text="x" * 10, chunk_chars=1), provider="openai")
    fake_upstream.script(Fault(chunk_interval=0.6), provider="openai")
    started = time.monotonic()
    with pytest.raises(Timeout, match="next chunk"):
        await _read_all(fake_upstream, Timeouts(total=10, first_token=5, idle=0.2))
    assert time.monotonic() - started < 2.0


async def test_headers_later_than_the_first_token_limit_are_a_timeout(fake_upstream):
    fake_upstream.script(Fault(latency=1.0), provider="openai")
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"no first token.*within 0\.2 s.*first_token_timeout"):
        await _read_all(fake_upstream, Timeouts(total=5, first_token=0.2))
    assert time.monotonic() - started < 0.9
    assert asyncio.current_task().cancelling() == 0  # the timer's cancel was taken back


async def test_headers_later_than_a_total_that_capped_the_first_token_name_the_total(
        fake_upstream):
    # No first_token_timeout of its own below the total: the dispatcher caps it at
    # the total, so the setting to raise is the stream's timeout.
    fake_upstream.script(Fault(latency=1.0), provider="openai")
    with pytest.raises(Timeout, match=r"no first token.*within 0\.2 s.*stream_timeout") as info:
        await _read_all(fake_upstream, Timeouts(total=0.2, first_token=0.2))
    assert "first_token_timeout" not in str(info.value)


async def test_headers_within_the_limit_leave_no_cancellation_behind(fake_upstream):
    fake_upstream.script(Fault(latency=0.1), provider="openai")
    assert await _read_all(fake_upstream, Timeouts(total=5, first_token=1.0)) > 0
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(1.0)  # past the limit: a timer left armed would cancel us here


async def test_a_cancellation_from_outside_during_the_header_wait_stays_one(fake_upstream):
    # The gateway cancels a request whose client left; that must not turn into a
    # Timeout (which the dispatcher would retry elsewhere).
    fake_upstream.script(Fault(latency=1.0), provider="openai")
    task = asyncio.ensure_future(_read_all(fake_upstream, Timeouts(total=5, first_token=3)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class _Reads:
    """Stands in for aiohttp's response: `content.readany()` gives these reads."""

    def __init__(self, *reads: bytes) -> None:
        self.status, self.headers, self.content = 200, {}, self
        self._reads = list(reads)

    async def readany(self) -> bytes:
        return self._reads.pop(0) if self._reads else b""

    def close(self) -> None:
        pass


async def test_lines_lose_their_carriage_returns_however_the_reads_fall():
    for reads in ([b"a\r\nb\n", b"c\r", b"\nd\r\n\r\ne"], [b"a\nb\nc\n", b"d\n\ne\r"]):
        fake: Any = _Reads(*reads)
        resp = StreamingResponse(fake, Timeouts(total=5), Labels("openai", "d"), time.monotonic())
        lines = [line async for batch in resp.line_batches() for line in batch]
        assert lines == [b"a", b"b", b"c", b"d", b"", b"e"], reads


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _posts(handle: Handler, count: int = 1, host: str = "127.0.0.1") -> list[HttpResponse]:
    """`count` POSTs of BODY, one after another, to a server that answers with
    `handle`, through one HttpClient."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HttpClient()
    try:
        return [await http.post(f"http://{host}:{port}/v1/chat/completions",
                                headers={"content-type": "application/json"}, body=BODY,
                                timeouts=Timeouts(total=5), labels=Labels("openai", "d"))
                for _ in range(count)]
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_whole_answer_in_several_reads_is_read_to_its_end(framing: str) -> None:
    body = b'{"answer": "' + b"x" * 50_000 + b'"}'
    half = len(body) // 2

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(len(BODY))
        if framing == "chunked":
            head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            pieces = [b"%x\r\n%s\r\n" % (half, body[:half]),
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:])]
        else:
            head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
            pieces = [body[:half], body[half:]]
        writer.write(head + pieces[0])
        await writer.drain()
        await asyncio.sleep(0.05)  # the rest comes in a later read
        writer.write(pieces[1])
        await writer.drain()
        writer.close()

    [resp] = await _posts(handle)
    assert (resp.status, resp.body) == (200, body)


async def test_cookies_a_provider_sets_are_not_sent_back() -> None:
    # Providers behind Cloudflare set cookies on API answers. The gateway's one
    # session serves every caller, so a kept cookie would tie one caller's
    # requests to another's.
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(len(BODY))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n"
                     b"set-cookie: __cf_bm=caller-one; path=/; HttpOnly\r\n\r\n{}")
        await writer.drain()
        writer.close()

    # By name: aiohttp never keeps cookies an IP address sets.
    answers = await _posts(handle, count=2, host="localhost")
    assert [resp.status for resp in answers] == [200, 200]
    assert len(heads) == 2
    assert b"cookie" not in heads[1].lower()


async def test_a_request_aiohttp_refuses_to_send_fails_over_as_a_connection_error(
        fake_upstream) -> None:
    # user:password@ in the URL and an Authorization header: aiohttp raises a
    # ValueError before sending. That deployment cannot be called; the request
    # must fail over like an unreachable one, not end in a 500.
    base = fake_upstream.base_url("openai").replace("http://", "http://bob:hunter2pw@")
    http = HttpClient()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-x"}
    try:
        with pytest.raises(ConnectionFailed) as whole:
            await http.post(base + "/chat/completions", headers=headers, body=BODY,
                            timeouts=Timeouts(total=5), labels=Labels("openai", "d"))
        with pytest.raises(ConnectionFailed) as streamed:
            async with http.stream(base + "/chat/completions", headers=headers, body=BODY,
                                   timeouts=Timeouts(total=5), labels=Labels("openai", "d")):
                pass
    finally:
        await http.aclose()
    for raised in (whole.value, streamed.value):
        assert "Authorization" in raised.message or "AUTHORIZATION" in raised.message
        assert "hunter2pw" not in raised.message
        assert raised.deployment == "d"
    assert fake_upstream.received == []


def test_every_timeout_is_told_in_one_sentence() -> None:
    # Four places wrote near-copies of it; one helper now writes it for all.
    from interlock.adapters.http import ANSWER_HINT, timeout_error

    labels = Labels("openai", "d")
    whole = timeout_error(labels, "did not answer", LEFT / 4, ANSWER_HINT)
    assert whole.message == (
        "openai did not answer for deployment 'd' within 0.5 s; raise `timeout` (on "
        "the deployment, the router or the call) to wait longer")
    assert (whole.provider, whole.deployment) == ("openai", "d")
    idle = timeout_error(labels, "sent no data", 2.0,
                         "raise the router's stream_idle_timeout to wait longer",
                         awaiting="the next chunk")
    assert idle.message == (
        "openai sent no data for deployment 'd' for 2.0 s while Interlock waited for the "
        "next chunk; raise the router's stream_idle_timeout to wait longer")
    assert timeout_error(labels, "did not answer", None, ANSWER_HINT).message.startswith(
        "openai did not answer for deployment 'd' within the time allowed; ")


async def test_a_session_whose_loop_closes_as_it_is_let_go_is_closed_here() -> None:
    # Between "is that loop running?" and handing it the close, another thread's
    # loop may close: call_soon_threadsafe then raised out of the caller's request.
    import aiohttp

    class ClosingLoop:
        def is_running(self) -> bool:
            return True

        def is_closed(self) -> bool:
            return self.closed

        def call_soon_threadsafe(self, *args: Any) -> None:
            self.closed = True
            raise RuntimeError("Event loop is closed")

        closed = False

    session = aiohttp.ClientSession()
    client = HttpClient()
    client._retire(session, ClosingLoop())  # type: ignore[arg-type]
    await asyncio.gather(*client._retiring)
    assert session.closed
