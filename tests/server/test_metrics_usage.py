"""GET /metrics' usage families: requests by outcome, tokens, dollars and the
requests of unknown cost, per deployment, counted as each request's ledger row
is made (with or without a ledger)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import openai
import pytest
from tests.server.gateways import MASTER_KEY, RunningGateway, deployment, three_provider_config
from tests.server.test_health_headers import _get, _samples

from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply
from interlock.types import Usage
from interlock.usage_counters import UsageCounters

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]
PRICED = ('{deployment="priced/anthropic/claude-sonnet-4-20250514",group="priced",'
          'provider="anthropic"')
UNPRICED = '{deployment="unpriced/openai/my-finetune",group="unpriced",provider="openai"'


def _gateway(fake: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    config = three_provider_config(fake)  # no ledger: the counters do not need one
    config["model_list"] = [
        deployment(fake, "priced", "anthropic",
                   input_cost_per_token=0.000003, output_cost_per_token=0.000015),
        deployment(fake, "unpriced", "openai", "my-finetune")]
    return start_gateway(config)


async def test_metrics_count_each_deployment_s_requests_tokens_and_dollars(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = _gateway(fake_upstream, start_gateway)
    fake_upstream.reply(Reply(text="ok", input_tokens=1000, output_tokens=200),
                        provider="anthropic")  # $0.006 a request
    fake_upstream.reply(Reply(text="ok", input_tokens=50, output_tokens=20, cached_tokens=10,
                              reasoning_tokens=5), provider="openai")
    client = gw.openai()
    try:
        await client.chat.completions.create(model="priced", messages=HELLO)
        stream = await client.chat.completions.create(model="priced", messages=HELLO,
                                                      stream=True)
        async for _ in stream:
            pass
        await client.chat.completions.create(model="unpriced", messages=HELLO)
        fake_upstream.script(Fault(status=429), provider="anthropic")
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="priced", messages=HELLO)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="no-such-group", messages=HELLO)
        with pytest.raises(openai.BadRequestError):  # refused before routing
            await client.chat.completions.create(model="priced", messages=[])
    finally:
        await client.close()
    text = (await _get(gw, "/metrics", headers=AUTH)).text
    got = _samples(text)

    assert got['interlock_requests_total{outcome="ok"}'] == 3
    assert got['interlock_requests_total{outcome="RateLimited"}'] == 1
    assert got['interlock_requests_total{outcome="UnknownModel"}'] == 1
    assert got['interlock_requests_total{outcome="InvalidRequest"}'] == 1
    assert got["interlock_deployment_requests_total" + PRICED + ',outcome="ok"}'] == 2
    assert got["interlock_deployment_requests_total" + PRICED + ',outcome="RateLimited"}'] == 1
    assert got["interlock_deployment_requests_total" + UNPRICED + ',outcome="ok"}'] == 1

    # Streamed or not, the same tokens and dollars; the 429 was billed nothing.
    tokens = "interlock_deployment_tokens_total"
    assert got[tokens + PRICED + ',direction="input"}'] == 2000
    assert got[tokens + PRICED + ',direction="output"}'] == 400
    assert got["interlock_deployment_cost_usd_total" + PRICED + "}"] == pytest.approx(0.012)
    assert got["interlock_deployment_unpriced_requests_total" + PRICED + "}"] == 0

    # No price: the tokens are counted, the dollars are not counted as $0 but
    # as a request of unknown cost.
    assert [got[tokens + UNPRICED + f',direction="{d}"}}']
            for d in ("input", "output", "cached_input", "reasoning")] == [50, 20, 10, 5]
    assert got["interlock_deployment_cost_usd_total" + UNPRICED + "}"] == 0
    assert got["interlock_deployment_unpriced_requests_total" + UNPRICED + "}"] == 1
    for family in ("requests", "tokens", "cost_usd", "unpriced_requests"):
        assert f"# TYPE interlock_deployment_{family}_total counter" in text


async def test_metrics_give_the_latency_in_seconds_beside_the_old_milliseconds(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = _gateway(fake_upstream, start_gateway)
    client = gw.openai()
    try:
        await client.chat.completions.create(model="priced", messages=HELLO)
    finally:
        await client.close()
    got = _samples((await _get(gw, "/metrics", headers=AUTH)).text)
    seconds = got["interlock_deployment_latency_average_seconds" + PRICED + "}"]
    assert seconds > 0
    assert seconds == pytest.approx(got["interlock_deployment_latency_ms" + PRICED + "}"] / 1000)
    # A deployment never called has neither yet.
    assert not any(k.startswith("interlock_deployment_latency") and "unpriced" in k for k in got)


def test_usage_counters_keep_a_known_zero_cost_apart_from_an_unknown_one() -> None:
    counters = UsageCounters()
    counters.count("d", Usage(input_tokens=3), Decimal("0.5"), None)
    counters.count("d", Usage(input_tokens=4), Decimal(0), None)  # a mock: billed by no one
    counters.count("d", Usage(input_tokens=5), None, TimeoutError())  # may have been billed
    counters.count(None, Usage(), Decimal(0), KeyError())
    tally = counters.by_deployment["d"]
    assert (tally.answered, tally.errors, tally.input_tokens) == (2, {"TimeoutError": 1}, 12)
    assert (tally.cost_usd, tally.unpriced) == (Decimal("0.5"), 1)
    assert counters.outcomes() == {"ok": 2, "TimeoutError": 1, "KeyError": 1}


def test_a_continued_stream_s_first_call_adds_tokens_and_dollars_but_no_request() -> None:
    # It has a ledger row of its own; counted as a request, it showed one failed
    # request for a request that succeeded.
    from interlock.errors import ConnectionFailed
    from interlock.usage_counters import UsageCounters

    counters = UsageCounters()
    counters.count("a", Usage(100, 10), None, ConnectionFailed("broke"), False)
    counters.count("b", Usage(150, 20), Decimal("0.5"), None)
    first, answer = counters.by_deployment["a"], counters.by_deployment["b"]
    assert counters.outcomes() == {"ok": 1}
    # Its cost unknown, it is counted so: never shown as free.
    assert (first.input_tokens, first.output_tokens, first.unpriced) == (100, 10, 1)
    assert (answer.answered, answer.cost_usd) == (1, Decimal("0.5"))
