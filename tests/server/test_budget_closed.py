"""What a client gets from a gateway whose budget gate closed (its shutdown
under way) for a call a shared budget covers: the shutdown's 503, which SDKs
retry (on another replica), not a spent budget's 429 they would not."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from tests.costs.test_cost_gateway_budget import _budget_config

from interlock.config import load_config
from interlock.gateway import Gateway
from interlock.server.app import InterlockApp
from interlock.testing import FakeUpstream
from interlock.testing.script import Reply

pytestmark = pytest.mark.redis

BODY = {"model": "budget", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


@pytest.mark.parametrize("fallback", [False, True])
async def test_a_closed_budget_gate_answers_503_and_tries_no_fallback(
        fake_upstream: FakeUpstream, tmp_path: Any, redis_url: str, fallback: bool) -> None:
    # Review: the closed gate's refusal was a budget's (429, x-should-retry:
    # false), so SDKs gave up on a call another replica would take; and the
    # dispatcher, taking it for one budget's no, tried the next candidate.
    fake_upstream.reply(Reply(text="hi", input_tokens=1000, output_tokens=100))
    config = _budget_config(fake_upstream, tmp_path, redis_url=redis_url,
                            redis_prefix=f"t{secrets.token_hex(4)}")
    # A fallback no budget covers: tried after a refusal, not after the close.
    config["router_settings"]["fallbacks"] = [{"budget": ["high-quality"]}] if fallback else []
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=InterlockApp(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.post("/v1/chat/completions", json=BODY)).status_code == 200
            assert gateway.budgets is not None
            await gateway.budgets.aclose()  # the shutdown under way, the requests not cut yet
            answer = await client.post("/v1/chat/completions", json=BODY)
        assert answer.status_code == 503, answer.text
        assert answer.headers.get("x-should-retry") != "false"
        assert "shutting down" in answer.json()["error"]["message"]
        assert fake_upstream.calls(provider="anthropic") == 0
    finally:
        await gateway.aclose()
