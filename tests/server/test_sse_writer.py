"""The SSE writer: one send per batch of deltas, the first token at once, and the
end (usage chunk, error event, [DONE]) with a batch the stream ends right after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from interlock.adapters.base import DeltaBatch
from interlock.errors import ClientDisconnected, ConnectionFailed, GatewayShuttingDown
from interlock.request_record import SHUTTING_DOWN, interruption
from interlock.response_meta import ResponseMeta
from interlock.routing.decision import RoutingDecision
from interlock.server.chat import ChatCompletions, _Call, _SseWriter
from interlock.server.drain import Drain
from interlock.types import ChatRequest, ChatResponse, Message, StreamDelta, TextPart, Usage


class ScriptedStream:
    """Stands in for a GatewayStream: batches, then an end or an error."""

    def __init__(self, *batches: DeltaBatch, error: Exception | None = None,
                 log: list[str] | None = None) -> None:
        self.meta = ResponseMeta(request_id="r1", decision=RoutingDecision("m", "m"))
        self._batches = batches
        self._error = error
        self._log = log if log is not None else []

    async def batches(self) -> AsyncIterator[DeltaBatch]:
        for i, batch in enumerate(self._batches):
            self._log.append(f"batch {i}")
            yield batch
        self._log.append("end")
        if self._error is not None:
            raise self._error

    def response(self) -> ChatResponse:
        return ChatResponse(id="x", model="m", content="", usage=Usage(3, 4))

    def shown_usage(self) -> Usage | None:
        return self.response().usage


def text(*texts: str, **kw: Any) -> list[StreamDelta]:
    return [StreamDelta(text=t, **kw) for t in texts]


async def run(stream: ScriptedStream, include_usage: bool = False,
              log: list[str] | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if log is not None and message["type"] == "http.response.body":
            log.append("send")
        sent.append(message)

    await _SseWriter(send, stream, "r1", include_usage).run()  # type: ignore[arg-type]
    assert sent[0]["type"] == "http.response.start"
    return sent[1:]


def events(body: bytes) -> list[Any]:
    out = []
    for event in body.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: ")
        data = event[len(b"data: "):]
        out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


async def test_one_send_per_batch_and_the_end_with_the_final_one() -> None:
    stream = ScriptedStream(DeltaBatch(text("a", model="m")), DeltaBatch(text("b", "c")),
                            DeltaBatch([*text("d"), StreamDelta(finish_reason="stop")],
                                       final=True))
    sends = await run(stream, include_usage=True)
    assert [m["more_body"] for m in sends] == [True, True, False]
    assert [len(events(m["body"])) for m in sends] == [1, 2, 4]
    last = events(sends[-1]["body"])
    assert last[-1] == "[DONE]" and last[-2]["usage"]["completion_tokens"] == 4
    assert last[-3]["choices"][0]["finish_reason"] == "stop"


async def test_the_first_token_leaves_before_more_is_asked_for() -> None:
    log: list[str] = []
    stream = ScriptedStream(DeltaBatch(text("a")), DeltaBatch(text("b")), log=log)
    await run(stream, log=log)
    assert log == ["batch 0", "send", "batch 1", "send", "end", "send"]


async def test_an_end_in_a_read_of_its_own_is_sent_alone() -> None:
    stream = ScriptedStream(DeltaBatch(text("a")), DeltaBatch([], final=True))
    sends = await run(stream)
    assert [events(m["body"]) for m in sends][1] == ["[DONE]"]
    assert len(sends) == 2


async def test_a_break_after_a_final_batch_leaves_with_it_as_an_error_event() -> None:
    stream = ScriptedStream(DeltaBatch(text("a")), DeltaBatch(text("b"), final=True),
                            error=ConnectionFailed("cut"))
    sends = await run(stream, include_usage=True)
    assert len(sends) == 2 and sends[-1]["more_body"] is False
    last = events(sends[-1]["body"])
    assert last[0]["choices"][0]["delta"] == {"content": "b"}
    assert last[1]["error"]["message"] == "cut"
    assert last[2] == "[DONE]"  # and no usage chunk after a break
    assert len(last) == 3


async def test_a_shutdown_cut_while_the_client_reads_slowly_is_recorded_as_the_shutdown(
) -> None:
    # The drain's cut lands in a send (a slow reader), not in the upstream read:
    # the stream never sees it, so the handler must say why it ends, or the
    # row would blame the client (ClientDisconnected).
    closed: list[Any] = []

    class Stream(ScriptedStream):
        async def aclose(self, reason: Any = None) -> None:
            closed.append(reason)

    stream = Stream(DeltaBatch(text("a")), DeltaBatch(text("b")), DeltaBatch(text("c")))

    class Gateway:
        async def stream(self, *_: Any, **__: Any) -> Stream:
            return stream

    drain = Drain()
    handler = ChatCompletions(Gateway(), max_body_bytes=1000, drain=drain)  # type: ignore[arg-type]
    call = _Call(ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])]),
                 "r1", None, 0.0, False)
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 3:  # the second body send waits on a client that reads slowly
            await never.wait()

    async def handle() -> None:
        task = drain.enter()
        try:
            await handler._open_and_write(call, send)  # type: ignore[arg-type]
        finally:
            drain.leave(task)

    handling = asyncio.ensure_future(handle())
    while len(sent) < 3:
        await asyncio.sleep(0)
    drain.cut()
    await handling
    assert len(closed) == 1 and isinstance(closed[0], GatewayShuttingDown)
    assert sent[-1]["more_body"] is False
    assert events(sent[-1]["body"])[-1] == "[DONE]"
    assert "shutting down" in events(sent[-1]["body"])[-2]["error"]["message"]


def test_a_cancellation_is_recorded_as_the_shutdown_or_the_client_leaving() -> None:
    # Under --workers N uvicorn cancels what outlasts its graceful shutdown itself,
    # saying so; counting those as clients that left skewed spend and report.
    uvicorn_cut = asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded")
    assert isinstance(interruption(uvicorn_cut), GatewayShuttingDown)
    assert isinstance(interruption(asyncio.CancelledError(SHUTTING_DOWN)), GatewayShuttingDown)
    assert isinstance(interruption(asyncio.CancelledError()), ClientDisconnected)


async def test_a_break_is_told_to_the_client_without_the_upstream_address(
        caplog: pytest.LogCaptureFixture) -> None:
    """The error event carries the error's client_message; the log, the whole text."""
    error = ConnectionFailed(
        "Connection to openai failed for deployment 'd': ClientOSError: [Errno 104] "
        "reset by 10.0.3.7:8443", provider="openai", deployment="d",
        client_message="Connection to openai failed for deployment 'd': connection reset")
    sends = await run(ScriptedStream(DeltaBatch(text("a")), error=error))
    body = b"".join(m["body"] for m in sends)
    assert b"10.0.3.7" not in body
    assert events(sends[-1]["body"])[0]["error"]["message"] == error.client_message
    assert any("10.0.3.7:8443" in r.getMessage() for r in caplog.records)
