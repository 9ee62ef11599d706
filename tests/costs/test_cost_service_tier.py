"""A call is costed at the service tier the provider served it at: OpenAI's flex
tier at flex prices, priority at priority prices, in the answer's metadata and
in the ledger, whole and streamed.

Driven through `Router` against the fake upstream, whose OpenAI wire reports the
tier the request asked for, as OpenAI does.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from interlock.costs.prices import lookup_model_price
from interlock.testing import FakeUpstream
from interlock.testing.script import Reply
from interlock.types import Usage

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_each_call_is_costed_at_the_tier_it_was_served_at(
        provider_env: FakeUpstream, tmp_path: Path) -> None:
    from interlock import Router

    price = lookup_model_price("gpt-5", "openai")
    assert price is not None
    usage = Usage(input_tokens=1_000, output_tokens=200)
    expected = {tier: price.for_tier(tier).cost(usage) for tier in ("default", "flex",
                                                                   "priority")}
    assert expected["flex"] < expected["default"] < expected["priority"]
    provider_env.reply(Reply(text="ok", input_tokens=1_000, output_tokens=200),
                       provider="openai")
    model_list = [{"model_name": "g5", "litellm_params": {
        "model": "openai/gpt-5", "api_key": "os.environ/OPENAI_API_KEY"}}]
    ledger = tmp_path / "spend.sqlite"
    async with Router(model_list=model_list, ledger=str(ledger)) as router:
        flex = await router.acompletion(model="g5", messages=MESSAGES, service_tier="flex")
        plain = await router.acompletion(model="g5", messages=MESSAGES)
        stream = await router.acompletion(model="g5", messages=MESSAGES, stream=True,
                                          service_tier="priority")
        assert [c async for c in stream]
    # Leaving the router flushed its ledger.

    assert [r.body.get("service_tier") for r in provider_env.received] == [
        "flex", None, "priority"]
    assert flex.service_tier == "flex" and plain.service_tier == "default"
    assert Decimal(flex.interlock["cost_usd"]) == expected["flex"]
    assert Decimal(plain.interlock["cost_usd"]) == expected["default"]
    assert Decimal(stream.interlock["cost_usd"]) == expected["priority"]
    with sqlite3.connect(ledger) as db:
        rows = db.execute(
            "SELECT cost_nanousd, service_tier FROM interlock_requests ORDER BY id").fetchall()
    tiers = ("flex", "default", "priority")
    assert rows == [(int(expected[t] * 1_000_000_000), t) for t in tiers]
