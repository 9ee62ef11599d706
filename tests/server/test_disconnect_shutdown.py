"""Requests that end badly: the client leaves, the upstream stream breaks, the
server is told to exit. Each has a promise: the upstream call is cancelled, the
stream ends with an OpenAI error event and [DONE] (never silently), in-flight
requests are drained before exit."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.gateways import (
    GROUPS,
    MASTER_KEY,
    RunningGateway,
    ledger_rows,
    three_provider_config,
)

from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]
LONG_TEXT = "One two three four five six seven eight nine ten eleven twelve thirteen."


def _in_flight(gw: RunningGateway, provider: str) -> int:
    rows = httpx.get(gw.url + "/health/deployments", headers=AUTH, timeout=5).json()
    return sum(r["in_flight"] for r in rows["deployments"] if r["provider"] == provider)


async def _wait_in_flight(gw: RunningGateway, provider: str, want: int,
                          within: float) -> float:
    """Seconds until the gateway has `want` calls in flight to `provider`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await asyncio.to_thread(_in_flight, gw, provider) == want:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{provider} in-flight did not reach {want} within {within}s")


def _events(raw: str) -> list[str]:
    return [e for e in raw.split("\n\n") if e.strip()]


# -- the client goes away --------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_cancels_the_upstream_call(
        stream: bool, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    fault = Fault(first_token_delay=5) if stream else Fault(latency=5)
    fake_upstream.script(fault, provider="anthropic")
    body = {"model": "high-quality", "messages": HELLO, "stream": stream}
    async with httpx.AsyncClient(timeout=0.4) as http:
        request = asyncio.ensure_future(
            http.post(gateway.base_url + "/chat/completions", headers=AUTH, json=body))
        # The call is under way upstream...
        await _wait_in_flight(gateway, "anthropic", 1, within=2)
        with pytest.raises(httpx.TimeoutException):
            await request
    # ...and once the client is gone the gateway drops it long before the
    # upstream's 5 s would have ended it.
    assert await _wait_in_flight(gateway, "anthropic", 0, within=1.5) < 1.5
    assert fake_upstream.calls("anthropic") == 1
    # The deployment was not blamed for the client leaving.
    row = next(r for r in httpx.get(gateway.url + "/health/deployments", headers=AUTH)
               .json()["deployments"] if r["provider"] == "anthropic")
    assert row["state"] == "healthy"
    # And the gateway still serves.
    async with httpx.AsyncClient(timeout=5) as http:
        ok = await http.post(gateway.base_url + "/chat/completions", headers=AUTH,
                             json={"model": "high-quality", "messages": HELLO})
    assert ok.status_code == 200


async def test_client_leaving_mid_stream_cancels_the_upstream_stream(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # About 19 chunks 0.25 s apart: the upstream stream would run for ~5 s.
    fake_upstream.reply(Reply(text=LONG_TEXT, chunk_chars=4))
    fake_upstream.script(Fault(chunk_interval=0.25), provider="gemini")
    body = {"model": "cost-optimized", "messages": HELLO, "stream": True}
    async with httpx.AsyncClient(timeout=10) as http, http.stream(
            "POST", gateway.base_url + "/chat/completions", headers=AUTH, json=body) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if '"content"' in line:
                # Checked before leaving the loop: leaving it closes the response.
                # (A blocking call is fine here: the gateway runs in its own thread.)
                assert _in_flight(gateway, "gemini") == 1
                break
    # The client closed the connection after its first content chunk.
    assert await _wait_in_flight(gateway, "gemini", 0, within=1.5) < 1.5


# -- streams that break ------------------------------------------------------------

@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
# chunk_interval: the frames before the break reach the gateway before the break does,
# as from a real server, so the break is surely after the first byte.
@pytest.mark.parametrize("fault", [Fault(disconnect_after=4, chunk_interval=0.02, times=None),
                                   Fault(malformed_at=4, chunk_interval=0.02, times=None)],
                         ids=["disconnect", "malformed"])
async def test_stream_broken_after_first_byte_ends_with_error_and_done(
        provider: str, fault: Fault, fake_upstream: FakeUpstream,
        start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(three_provider_config(fake_upstream, num_retries=2))
    fake_upstream.reply(Reply(text=LONG_TEXT, chunk_chars=4))
    fake_upstream.script(fault)
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(gw.base_url + "/chat/completions", headers=AUTH, json={
            "model": GROUPS[provider], "messages": HELLO, "stream": True})
    assert resp.status_code == 200
    events = _events(resp.text)
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: "):])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] in ("connection_error", "upstream_error")
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert LONG_TEXT.startswith(text) and text != LONG_TEXT
    # It never claims a normal end.
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    # Once bytes went out, no retry: one upstream call.
    assert fake_upstream.calls() == 1


async def test_stream_broken_before_first_byte_fails_over_transparently(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream, fallbacks=[{"high-quality": ["budget"]}])
    gw = start_gateway(config)
    fake_upstream.reply(Reply(text=LONG_TEXT, chunk_chars=6))
    fake_upstream.script(Fault(disconnect_after=0), provider="anthropic")
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(gw.base_url + "/chat/completions", headers=AUTH, json={
            "model": "high-quality", "messages": HELLO, "stream": True})
    assert resp.status_code == 200
    assert resp.headers["x-interlock-provider"] == "openai"
    assert resp.headers["x-interlock-attempts"] == "2"
    assert resp.headers["x-interlock-attempt-log"].startswith(
        "high-quality/anthropic/claude-sonnet-4-20250514=ConnectionFailed/")
    events = _events(resp.text)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert not any("error" in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == LONG_TEXT
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert (fake_upstream.calls("anthropic"), fake_upstream.calls("openai")) == (1, 1)


# -- shutdown ----------------------------------------------------------------------

async def test_shutdown_drains_in_flight_requests(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(three_provider_config(fake_upstream), drain=5)
    fake_upstream.script(Fault(latency=1.0), provider="anthropic")
    fake_upstream.script(Fault(first_token_delay=1.0), provider="gemini")
    fake_upstream.reply(Reply(text=LONG_TEXT))

    async def call(body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(gw.base_url + "/chat/completions", headers=AUTH, json=body)

    slow = asyncio.ensure_future(call({"model": "high-quality", "messages": HELLO}))
    slow_stream = asyncio.ensure_future(
        call({"model": "cost-optimized", "messages": HELLO, "stream": True}))
    await _wait_in_flight(gw, "anthropic", 1, within=2)
    await _wait_in_flight(gw, "gemini", 1, within=2)
    started = time.monotonic()
    gw.server.should_exit = True
    done, stream_done = await slow, await slow_stream
    assert done.status_code == 200
    assert done.json()["choices"][0]["message"]["content"] == LONG_TEXT
    assert stream_done.status_code == 200
    events = _events(stream_done.text)
    assert events[-1] == "data: [DONE]"
    assert not any('"error"' in e for e in events)
    await asyncio.to_thread(gw.thread.join, 5)
    assert not gw.thread.is_alive()
    # It waited for the requests (about 1 s), not for the whole drain time.
    assert time.monotonic() - started < 3
    # New connections are refused once it has exited.
    with pytest.raises(httpx.ConnectError):
        await call({"model": "budget", "messages": HELLO})


async def test_shutdown_drain_is_bounded(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(three_provider_config(fake_upstream, timeout=30), drain=0.5)
    fake_upstream.script(Fault(hang=True), provider="anthropic")
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(httpx.post(gw.base_url + "/chat/completions", headers=AUTH,
                                      json={"model": "high-quality", "messages": HELLO},
                                      timeout=10))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    client = threading.Thread(target=call, daemon=True)
    client.start()
    await _wait_in_flight(gw, "anthropic", 1, within=2)
    started = time.monotonic()
    gw.server.should_exit = True
    await asyncio.to_thread(gw.thread.join, 5)
    assert not gw.thread.is_alive()
    assert time.monotonic() - started < 0.5 + 1.5
    await asyncio.to_thread(client.join, 5)
    # The hanging request was cut, not left waiting.
    assert outcome and (isinstance(outcome[0], httpx.HTTPError)
                        or outcome[0].status_code >= 500)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs at ERROR (its loggers do not reach pytest's caplog)."""
    handler = _Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


async def test_a_stream_cut_by_the_drain_deadline_ends_with_an_error_and_done(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, uvicorn_errors: list[logging.LogRecord]) -> None:
    database = tmp_path / "ledger.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "writer": "thread"}
    gw = start_gateway(config, drain=1.0)
    # About 19 chunks 0.25 s apart: ~5 s of stream, far past the 1 s drain.
    fake_upstream.reply(Reply(text=LONG_TEXT, chunk_chars=4))
    fake_upstream.script(Fault(chunk_interval=0.25), provider="gemini")
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=10) as http, http.stream(
            "POST", gw.base_url + "/chat/completions", headers=AUTH,
            json={"model": "cost-optimized", "messages": HELLO, "stream": True}) as resp:
        async for line in resp.aiter_lines():
            lines.append(line)
            if '"content"' in line and not gw.server.should_exit:
                gw.server.should_exit = True  # shutdown begins mid-stream
        # Reaching here without httpx.RemoteProtocolError: the chunked body ended.
    events = [line for line in lines if line]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: "):])["error"]
    assert "shutting down" in error["message"] and "--drain-timeout" in error["message"]
    assert error["type"] == "service_unavailable"
    await asyncio.to_thread(gw.thread.join, 5)
    assert not gw.thread.is_alive()
    assert not [r for r in uvicorn_errors if r.levelno >= logging.ERROR]
    (row,) = ledger_rows(database).values()
    assert (row["status"], row["error_class"], row["stream"]) == (
        "error", "GatewayShuttingDown", 1)


async def test_a_call_cut_by_the_drain_deadline_gets_a_503(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        uvicorn_errors: list[logging.LogRecord]) -> None:
    gw = start_gateway(three_provider_config(fake_upstream, timeout=30), drain=0.5)
    fake_upstream.script(Fault(hang=True), provider="anthropic")
    async with httpx.AsyncClient(timeout=10) as http:
        answer = asyncio.ensure_future(http.post(
            gw.base_url + "/chat/completions", headers=AUTH,
            json={"model": "high-quality", "messages": HELLO}))
        await _wait_in_flight(gw, "anthropic", 1, within=2)
        gw.server.should_exit = True
        resp = await answer
    assert resp.status_code == 503
    assert "shutting down" in resp.json()["error"]["message"]
    # The id its ledger row is kept under, as on every other answer.
    assert resp.headers["x-request-id"].startswith("chatcmpl-")
    await asyncio.to_thread(gw.thread.join, 5)
    assert not [r for r in uvicorn_errors if r.levelno >= logging.ERROR]
