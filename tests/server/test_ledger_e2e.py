"""decide -> dispatch -> record through the gateway: every answered request, streamed
or not, failed or not, leaves one ledger row that matches what the client saw."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from tests.server.gateways import MASTER_KEY, RunningGateway, ledger_rows, three_provider_config

from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply

HELLO = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_each_request_leaves_one_ledger_row(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, writer: str) -> None:
    database = tmp_path / "ledger.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "flush_interval": 0.05, "writer": writer}
    gw = start_gateway(config, server_process=True)
    ledger = gw.gateway.ledger
    assert ledger is not None and (ledger._process is not None) is (writer == "process")
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))
    fake_upstream.script(Fault(status=429, retry_after=5), provider="openai")
    client = gw.openai()
    ok = await client.chat.completions.with_raw_response.create(
        model="high-quality", messages=HELLO)
    stream = await client.chat.completions.with_raw_response.create(
        model="cost-optimized", messages=HELLO, stream=True)
    _ = [c async for c in stream.parse()]
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="budget", messages=HELLO)
    await client.close()
    gw.stop()  # shutdown flushes the ledger
    rows = ledger_rows(database)
    assert len(rows) == 3
    row = rows[ok.headers["x-request-id"]]
    assert ok.parse().id == ok.headers["x-request-id"]
    assert (row["status"], row["provider"], row["routed_group"]) == (
        "ok", "anthropic", "high-quality")
    assert (row["input_tokens"], row["output_tokens"], row["attempts"]) == (1000, 100, 1)
    assert row["stream"] == 0
    assert row["cost_nanousd"] is not None and int(row["cost_nanousd"]) > 0
    # The key is recorded by a stable id, never by its value.
    assert row["api_key_id"] and MASTER_KEY not in str(row["api_key_id"])
    row = rows[stream.headers["x-request-id"]]
    assert (row["status"], row["provider"], row["stream"]) == ("ok", "gemini", 1)
    assert (row["input_tokens"], row["output_tokens"]) == (1000, 100)
    row = rows[limited.value.response.headers["x-request-id"]]
    assert (row["status"], row["error_class"], row["provider"]) == (
        "error", "RateLimited", "openai")
    assert row["attempts"] == 1


async def test_requests_refused_before_routing_leave_a_row(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    interns_key = {"name": "interns", "key": "sk-interns-0123456789", "models": ["budget"]}
    gw = start_gateway({
        **three_provider_config(fake_upstream),
        "general_settings": {"master_key": MASTER_KEY, "api_keys": [interns_key]},
        "ledger": {"database": str(database), "writer": "thread"}})
    interns = {"authorization": "Bearer sk-interns-0123456789"}
    refused = {
        "bad role": {"model": "budget", "messages": [{"role": "wizard", "content": "hi"}]},
        "temperature": {"model": "budget", "messages": HELLO, "temperature": 99,
                        "stream": True},
        "not allowed": {"model": "high-quality", "messages": HELLO},
        "long name": {"model": "x" * 5000, "messages": HELLO},
    }
    ids = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, body in refused.items():
            resp = await http.post(gw.base_url + "/chat/completions", headers=interns,
                                   json=body)
            assert resp.status_code in (400, 403), (name, resp.text)
            ids[name] = resp.headers["x-request-id"]
    gw.stop()
    rows = ledger_rows(database)
    assert len(rows) == len(refused)
    for name, request_id in ids.items():
        row = rows[request_id]
        assert (row["status"], row["api_key_id"], row["attempts"]) == (
            "error", "interns", 0), name
        assert row["cost_nanousd"] == 0 and row["provider"] is None, name
    assert rows[ids["bad role"]]["error_class"] == "InvalidRequest"
    assert rows[ids["temperature"]]["stream"] == 1
    assert rows[ids["not allowed"]]["error_class"] == "ModelNotAllowed"
    assert rows[ids["not allowed"]]["requested_model"] == "high-quality"
    assert rows[ids["long name"]]["requested_model"] == "x" * 128


async def test_an_unknown_model_is_recorded_without_a_group(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    gw = start_gateway({**three_provider_config(fake_upstream),
                        "ledger": {"database": str(database), "writer": "thread"}})
    client = gw.openai()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-5" + "x" * 500, messages=HELLO)
    await client.close()
    gw.stop()
    (row,) = ledger_rows(database).values()
    assert (row["error_class"], row["routed_group"]) == ("UnknownModel", None)
    assert row["requested_model"] == ("gpt-5" + "x" * 500)[:128]


async def test_a_request_marked_no_log_keeps_its_text_out_of_the_ledger(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    # LiteLLM's `no-log`: with log_payloads on, such a call's prompt and answer
    # must still be stored nowhere.
    database = tmp_path / "ledger.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "flush_interval": 0.05,
                        "writer": "thread", "log_payloads": True}
    gw = start_gateway(config)
    fake_upstream.reply(Reply(text="the answer"))
    client = gw.openai()
    kept = await client.chat.completions.with_raw_response.create(
        model="high-quality", messages=HELLO)
    private = await client.chat.completions.with_raw_response.create(
        model="high-quality", messages=HELLO, extra_body={"no-log": True})
    await client.close()
    gw.stop()
    rows = ledger_rows(database)
    assert rows[kept.headers["x-request-id"]]["prompt"] is not None
    row = rows[private.headers["x-request-id"]]
    assert (row["status"], row["prompt"], row["response"]) == ("ok", None, None)
