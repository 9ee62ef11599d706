"""What a misbehaving upstream can do to the gateway's clients.

An impossible token count (10**30) gets the client a 502 naming the
deployment, never a 500, and its ledger row is kept: before, the client got a
500 (orjson: "Integer exceeds 64-bit range") and the row was dropped (SQLite:
OverflowError). A huge Retry-After cools the deployment and reaches the client
only up to `max_upstream_retry_after`: before, 99999999999 cooled it for a day
and was passed on unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.adapters.raw_upstream import raw_server
from tests.server.gateways import (
    MASTER_KEY,
    RunningGateway,
    deployment,
    free_port,
    ledger_rows,
)

from interlock import Router
from interlock.errors import ConnectionFailed
from interlock.testing import FakeUpstream, Fault

ANSWER = json.dumps({
    "id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": "@", "completion_tokens": 1}}).replace(
        '"@"', "1000000000000000000000000000000").encode()


async def test_an_impossible_token_count_is_a_502_with_its_ledger_row(
        start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    async with raw_server(ANSWER, content_type="application/json") as base:
        gw = start_gateway({
            "model_list": [{"model_name": "g", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_key": "sk-test-not-real",
                "api_base": base + "/v1"}}],
            "router_settings": {"num_retries": 0},
            "general_settings": {"master_key": MASTER_KEY},
            "ledger": {"database": str(database)}})
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            answer = await client.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                json={"model": "g", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "UpstreamServerError" and "token count" in error["message"]
    gw.stop()  # shutdown flushes the ledger
    row = ledger_rows(database)[answer.headers["x-request-id"]]
    assert (row["status"], row["error_class"], row["provider"]) == (
        "error", "UpstreamServerError", "openai")


async def test_a_huge_retry_after_is_capped_for_the_cooldown_and_the_client(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway({"model_list": [deployment(fake_upstream, "g", "openai")],
                        "router_settings": {"num_retries": 0},
                        "general_settings": {"master_key": MASTER_KEY},
                        "ledger": {"database": None}})
    fake_upstream.script(Fault(status=429, retry_after=99999999999), provider="openai")
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        limited = await client.post("/v1/chat/completions", headers=headers, json=body)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "300")
        cooling = await client.post("/v1/chat/completions", headers=headers, json=body)
    assert cooling.status_code == 503
    assert 295 <= int(cooling.headers["retry-after"]) <= 300
    (row,) = gw.gateway.dispatcher.health()
    assert row.state == "cooling" and row.cooldown_remaining_s <= 300


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_upstream_is_named_to_the_client_without_its_address(
        start_gateway: Callable[..., RunningGateway], caplog: pytest.LogCaptureFixture,
        stream: bool) -> None:
    """The client learns which deployment failed and how, not the operator's
    network: the message used to carry aiohttp's "Cannot connect to host
    localhost:PORT" and the address it tried. The log keeps them."""
    port = free_port()  # nothing listens there: the connection is refused
    gw = start_gateway({
        "model_list": [{"model_name": "g", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "sk-test-not-real",
            "api_base": f"http://localhost:{port}/v1"},
            "model_info": {"id": "primary-openai"}}],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
        "ledger": {"database": None}})
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        answer = await client.post(
            "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "g", "stream": stream,
                  "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("connection_error", "ConnectionFailed")
    assert "'primary-openai'" in error["message"]
    assert "connection refused" in error["message"]
    assert str(port) not in answer.text
    assert "localhost" not in answer.text and "127.0.0.1" not in answer.text
    logged = [r.getMessage() for r in caplog.records if r.name == "interlock.server"]
    assert any(str(port) in line and "primary-openai" in line for line in logged), logged


async def test_the_library_keeps_the_upstream_address_in_its_error() -> None:
    """The operator's own in-process Router is told everything."""
    port = free_port()
    async with Router(model_list=[{"model_name": "g", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "sk-test-not-real",
            "api_base": f"http://127.0.0.1:{port}/v1"}}], num_retries=0) as router:
        with pytest.raises(ConnectionFailed) as info:
            await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
    assert f"127.0.0.1:{port}" in info.value.message
    assert info.value.client_message is not None
    assert str(port) not in info.value.client_message
