"""The server answers first and writes the ledger row after: the row's work is
not in the client's wait, and the row is still written when sending fails, or
when a stream is left early or breaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.server.gateways import GROUPS, ledger_rows, three_provider_config

from interlock.config import load_config
from interlock.errors import ConnectionFailed
from interlock.gateway import Gateway
from interlock.openai_request import parse_chat_request
from interlock.server.asgi_io import Message
from interlock.server.chat import ChatCompletions
from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply
from interlock.tokens import estimate_prompt_tokens

SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


@pytest.fixture
async def gateway(fake_upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = three_provider_config(fake_upstream)
    # A writer that sleeps through the test: recorded rows stay `pending`.
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite"), "flush_interval": 60}
    gw = Gateway(load_config(config, environ={}), environ={})
    yield gw
    await gw.aclose()


def _receive_for(body: dict[str, Any]) -> Any:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:  # the client stays connected
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
    return receive


class _Client:
    """An ASGI `send` that notes how many ledger rows were recorded when the
    response's last bytes left, and can fail at that point like a vanished client."""

    def __init__(self, gateway: Gateway, *, fail_last: bool = False) -> None:
        self.gateway = gateway
        self.fail_last = fail_last
        self.rows_when_answered: int | None = None
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        self.body += message.get("body", b"")
        if not message.get("more_body", False):
            assert self.gateway.ledger is not None
            self.rows_when_answered = self.gateway.ledger.pending
            if self.fail_last:
                raise OSError("the client went away")


@pytest.mark.parametrize("stream", [False, True])
async def test_the_row_is_written_after_the_answer_has_gone(
        gateway: Gateway, fake_upstream: FakeUpstream, stream: bool) -> None:
    fake_upstream.reply(Reply(text="fine", input_tokens=10, output_tokens=3))
    client = _Client(gateway)
    handler = ChatCompletions(gateway, max_body_bytes=1 << 20)
    await handler(SCOPE, _receive_for({"model": GROUPS["openai"], "stream": stream,
                                       "messages": [{"role": "user", "content": "hi"}]}),
                  client)
    assert b"fine" in client.body
    assert client.rows_when_answered == 0
    assert gateway.ledger is not None and gateway.ledger.pending == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_the_row_is_written_when_sending_the_answer_fails(
        gateway: Gateway, fake_upstream: FakeUpstream, stream: bool) -> None:
    fake_upstream.reply(Reply(text="fine", input_tokens=10, output_tokens=3))
    handler = ChatCompletions(gateway, max_body_bytes=1 << 20)
    with pytest.raises(OSError):
        await handler(SCOPE, _receive_for({"model": GROUPS["openai"], "stream": stream,
                                           "messages": [{"role": "user", "content": "hi"}]}),
                      _Client(gateway, fail_last=True))
    assert gateway.ledger is not None and gateway.ledger.pending == 1


async def test_a_completion_left_unsettled_records_once_when_settled(
        gateway: Gateway, fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="fine"))
    request = parse_chat_request({"model": GROUPS["openai"],
                                  "messages": [{"role": "user", "content": "hi"}]})
    done = await gateway.complete(request, settle_later=True)
    assert gateway.ledger is not None and gateway.ledger.pending == 0
    done.settle()
    done.settle()
    assert gateway.ledger.pending == 1
    # Without the flag (the library's way) the row is recorded before returning.
    await gateway.complete(request)
    assert gateway.ledger.pending == 2


async def test_a_stream_left_early_or_broken_mid_way_leaves_one_row_that_says_so(
        fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    database = tmp_path / "rows.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "flush_interval": 0.05}
    gw = Gateway(load_config(config, environ={}), environ={})
    request = parse_chat_request({"model": GROUPS["openai"], "stream": True,
                                  "messages": [{"role": "user", "content": "hi"}]})
    fake_upstream.reply(Reply(text="one two three four five six seven eight"))
    fake_upstream.script(Fault(chunk_interval=0.01), provider="openai")
    left = await gw.stream(request, request_id="left")
    batches = left.batches()
    await anext(batches)
    await batches.aclose()  # the consumer stops reading
    await left.aclose()
    fake_upstream.script(Fault(disconnect_after=2, chunk_interval=0.01), provider="openai")
    broken = await gw.stream(request, request_id="broken")
    with pytest.raises(ConnectionFailed):
        async for _ in broken.batches():
            pass
    await broken.aclose()
    finished = await gw.stream(request, request_id="finished")
    async for _ in finished.batches():
        pass
    await finished.aclose()
    await gw.aclose()
    rows = ledger_rows(database)
    assert len(rows) == 3
    assert (rows["left"]["status"], rows["left"]["error_class"]) == ("error", "ClientDisconnected")
    assert (broken.error is not None and
            (rows["broken"]["status"], rows["broken"]["error_class"]) ==
            ("error", "ConnectionFailed"))
    assert (finished.error, rows["finished"]["status"]) == (None, "ok")
    # The provider bills a stream cut before its usage came: the prompt and what it
    # had sent. Those rows carry Interlock's estimate, marked as one, and its cost.
    done = rows["finished"]
    assert not done["usage_estimated"] and done["input_tokens"] > 0
    for cut in (rows["left"], rows["broken"]):
        assert cut["usage_estimated"]
        assert cut["input_tokens"] > 0 and cut["output_tokens"] < done["output_tokens"]
        assert cut["cost_nanousd"] is not None and cut["cost_nanousd"] > 0
    assert rows["broken"]["output_tokens"] > 0  # its text before the break counts


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_the_client_left_before_any_answer_names_its_deployment(
        fake_upstream: FakeUpstream, tmp_path: Path, stream: bool) -> None:
    # The provider has the prompt once the call is made and bills it whether or
    # not the client stays: the row says who was called and estimates the prompt.
    database = tmp_path / "rows.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "flush_interval": 0.05}
    gw = Gateway(load_config(config, environ={}), environ={})
    fake_upstream.script(Fault(first_token_delay=5) if stream else Fault(latency=5),
                         provider="openai")
    request = parse_chat_request({"model": GROUPS["openai"], "stream": stream,
                                  "messages": [{"role": "user", "content": "hi " * 50}]})
    call = asyncio.ensure_future(gw.stream(request, request_id="left") if stream
                                 else gw.complete(request, request_id="left"))
    while fake_upstream.calls("openai") == 0:
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await gw.aclose()
    row = ledger_rows(database)["left"]
    assert (row["status"], row["error_class"]) == ("error", "ClientDisconnected")
    assert row["provider"] == "openai" and row["deployment"]
    assert row["attempts"] == 1
    assert row["usage_estimated"] and row["output_tokens"] == 0
    assert row["input_tokens"] == estimate_prompt_tokens(request) > 0
    assert row["cost_nanousd"] is not None and row["cost_nanousd"] > 0


async def test_a_request_a_bug_cut_short_still_leaves_its_row(
        fake_upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No lost ledger row, even for Interlock's own failure: the caller gets the
    # exception, the row says InternalError and names the call it cut.
    database = tmp_path / "rows.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "flush_interval": 0.05}
    gw = Gateway(load_config(config, environ={}), environ={})

    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gw.adapters.for_provider("openai"), "complete", broken)
    request = parse_chat_request({"model": GROUPS["openai"],
                                  "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(RuntimeError):
        await gw.complete(request, request_id="bug")
    await gw.aclose()
    row = ledger_rows(database)["bug"]
    assert (row["status"], row["error_class"]) == ("error", "InternalError")
    assert row["provider"] == "openai" and row["attempts"] == 1


async def test_a_failure_no_provider_bills_costs_nothing_and_a_timeout_is_unknown(
        fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    # A request refused before any call, or answered with an error status, was
    # recorded with an unknown cost, which `interlock spend` counted as unpriced.
    from interlock.errors import InterlockError

    database = tmp_path / "rows.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "flush_interval": 0.05}
    config["model_list"][2]["litellm_params"]["timeout"] = 0.3  # the OpenAI deployment
    gw = Gateway(load_config(config, environ={}), environ={})

    def ask(group: str) -> Any:
        return parse_chat_request({"model": group, "messages": [{"role": "user",
                                                                 "content": "hi"}]})

    for request_id, group, fault in (("unknown", "no-such-group", None),
                                     ("refused", GROUPS["anthropic"], Fault(status=500)),
                                     ("timed-out", GROUPS["openai"], Fault(latency=2))):
        if fault is not None:
            fake_upstream.script(fault)
        with pytest.raises(InterlockError):
            await gw.complete(ask(group), request_id=request_id)
    await gw.aclose()
    rows = ledger_rows(database)
    assert rows["unknown"]["error_class"] == "UnknownModel"
    assert rows["unknown"]["cost_nanousd"] == 0
    assert (rows["refused"]["status"], rows["refused"]["cost_nanousd"]) == ("error", 0)
    assert rows["timed-out"]["error_class"] == "Timeout"
    assert rows["timed-out"]["cost_nanousd"] is None  # the provider may bill it
