"""What the gateway tells about itself: /v1/models, the health endpoints, the
x-interlock-* response headers (every attempt listed), and the 503 with
Retry-After when every deployment is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.server.gateways import (
    MASTER_KEY,
    RunningGateway,
    deployment,
    three_provider_config,
)

from interlock.dispatch.outcome import Attempt
from interlock.gateway import ResponseMeta
from interlock.routing.decision import direct
from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def _config(fake: FakeUpstream, model_list: list[dict[str, Any]],
            **router_settings: Any) -> dict[str, Any]:
    config = three_provider_config(fake, **router_settings)
    config["model_list"] = model_list
    return config


def _claude_then_gemini(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [deployment(fake, "primary", "anthropic", order=1),
            deployment(fake, "primary", "gemini", order=2)]


async def _get(gw: RunningGateway, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(gw.url + path, **kwargs)


async def test_models_lists_every_group(gateway: RunningGateway) -> None:
    client = gateway.openai()
    models = await client.models.list()
    assert sorted(m.id for m in models.data) == ["budget", "cost-optimized", "high-quality"]
    assert all(m.object == "model" for m in models.data)
    # A real time (the gateway's start), not 0: clients sort and show it.
    assert all(0 < time.time() - m.created < 600 for m in models.data)
    assert (await client.models.retrieve("budget")).created == models.data[0].created
    await client.close()


async def test_one_model_can_be_retrieved_and_an_unknown_one_is_404(
        gateway: RunningGateway) -> None:
    client = gateway.openai()
    model = await client.models.retrieve("budget")
    assert (model.id, model.object, model.owned_by) == ("budget", "model", "interlock")
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("no-such-group")
    assert "budget" in str(info.value)  # the message lists what is served
    await client.close()
    async with httpx.AsyncClient(timeout=10) as http:
        wrong = await http.post(gateway.url + "/v1/models",
                                headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"


async def test_readiness_is_503_when_no_deployment_has_a_key(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    entry = deployment(fake_upstream, "budget", "openai")
    entry["litellm_params"]["api_key"] = "os.environ/INTERLOCK_TEST_MISSING_KEY"
    gw = start_gateway(_config(fake_upstream, [entry]))
    assert (await _get(gw, "/health/liveness")).status_code == 200
    ready = await _get(gw, "/health/readiness")
    assert ready.status_code == 503
    assert ready.json()["usable_deployments"] == 0
    client = gw.openai()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="budget", messages=HELLO)
    assert caught.value.status_code == 503
    assert "INTERLOCK_TEST_MISSING_KEY" in caught.value.message
    assert fake_upstream.calls() == 0
    await client.close()


async def test_health_deployments_shows_cooling_and_latency(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    fake_upstream.script(Fault(status=429, retry_after=30), provider="anthropic")
    client = gateway.openai()
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="high-quality", messages=HELLO)
    await client.chat.completions.create(model="cost-optimized", messages=HELLO)
    assert (await _get(gateway, "/health/deployments")).status_code == 401
    resp = await _get(gateway, "/health/deployments", headers=AUTH)
    assert resp.status_code == 200
    rows = {row["provider"]: row for row in resp.json()["deployments"]}
    assert set(rows) == {"anthropic", "gemini", "openai"}
    claude = rows["anthropic"]
    assert claude["state"] == "cooling"
    assert "RateLimited" in (claude["reason"] or "")
    assert 25 <= claude["cooldown_remaining_s"] <= 30.5
    assert claude["cooling_until"]
    gemini = rows["gemini"]
    assert gemini["state"] == "healthy"
    assert gemini["latency_ms"] is not None and gemini["latency_ms"] >= 0
    assert gemini["requests"] == 1 and gemini["failures"] == 0
    assert rows["openai"]["state"] == "healthy" and rows["openai"]["requests"] == 0
    # And a cooling deployment is not called again.
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="high-quality", messages=HELLO)
    assert caught.value.status_code == 503
    assert fake_upstream.calls("anthropic") == 1
    await client.close()


async def test_headers_name_group_deployment_provider_and_cost(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    entry = deployment(fake_upstream, "high-quality", "anthropic",
                       input_cost_per_token=0.000003, output_cost_per_token=0.000015)
    gw = start_gateway(_config(fake_upstream, [entry]))
    fake_upstream.reply(Reply(text="ok", input_tokens=1000, output_tokens=200))
    client = gw.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="high-quality", messages=HELLO)
    h = raw.headers
    assert raw.parse().choices[0].message.content == "ok"
    assert h["x-interlock-model-group"] == "high-quality"
    assert h["x-interlock-deployment"] == "high-quality/anthropic/claude-sonnet-4-20250514"
    assert h["x-interlock-provider"] == "anthropic"
    assert h["x-interlock-attempts"] == "1"
    assert h["x-interlock-attempt-log"].startswith(
        "high-quality/anthropic/claude-sonnet-4-20250514=ok/")
    assert 0 <= float(h["x-interlock-overhead-ms"]) < 1000
    assert "group=high-quality" in h["x-interlock-route"]
    # 1000 x $3/M + 200 x $15/M
    assert Decimal(h["x-interlock-cost-usd"]) == Decimal("0.006")
    await client.close()


async def test_overhead_leaves_out_the_time_spent_waiting_for_a_retry(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    # A 429 asking for 0.6 s: the request waits that out and the retry answers.
    # The wait is the provider's doing, not Interlock's: a dashboard of the
    # overhead header showed every retried request as 600 ms of gateway overhead.
    gw = start_gateway(_config(fake_upstream, [deployment(fake_upstream, "g", "openai")],
                               num_retries=1))
    fake_upstream.script(Fault(status=429, retry_after=0.6, times=1), provider="openai")
    client = gw.openai()
    started = time.monotonic()
    raw = await client.chat.completions.with_raw_response.create(model="g", messages=HELLO)
    took_ms = (time.monotonic() - started) * 1000
    assert raw.headers["x-interlock-attempts"] == "2"
    assert took_ms >= 600  # the wait happened
    assert float(raw.headers["x-interlock-overhead-ms"]) < 300
    await client.close()


def test_header_values_are_bytes_a_server_can_send_whatever_the_names() -> None:
    """Config names may hold any character; a header value must be latin-1 bytes.
    Names the client chose are cut to printable ASCII."""
    name = "local/openai/modèle-日本"
    meta = ResponseMeta(request_id="chatcmpl-1", decision=direct("gr\x00oup"),
                        deployment=name, provider="openai", cost_usd=Decimal("0.5"),
                        attempts=[Attempt(deployment=name, provider="openai", group="g",
                                          outcome="ok", status=200, duration_ms=12.4)],
                        overhead_ms=0.25)
    headers = dict(meta.headers())
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in headers.items())
    assert headers[b"x-interlock-deployment"] == "local/openai/modèle-??".encode("latin-1")
    assert headers[b"x-interlock-model-group"] == b"gr?oup"
    assert headers[b"x-interlock-attempts"] == b"1"
    assert headers[b"x-interlock-overhead-ms"] == b"0.250"
    assert headers[b"x-interlock-cost-usd"] == b"0.50000000"
    assert headers[b"x-interlock-attempt-log"].endswith(b"=ok/12ms")


async def test_no_cost_header_when_the_price_is_unknown(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    entry = deployment(fake_upstream, "local", "openai", model="my-own-finetune-xyz")
    gw = start_gateway(_config(fake_upstream, [entry]))
    client = gw.openai()
    raw = await client.chat.completions.with_raw_response.create(model="local", messages=HELLO)
    assert raw.headers["x-interlock-provider"] == "openai"
    assert "x-interlock-cost-usd" not in raw.headers
    await client.close()


async def test_an_error_with_no_billed_call_claims_no_cost(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    # Before: `x-interlock-cost-usd: 0.00000000` on the 502 below (an upstream 500:
    # called, not billed) and on the 503 after it (nothing called), as if a price
    # were known.
    entry = deployment(fake_upstream, "high-quality", "anthropic",
                       input_cost_per_token=0.000003, output_cost_per_token=0.000015)
    gw = start_gateway(_config(fake_upstream, [entry], num_retries=0, allowed_fails=0,
                               cooldown_time=20, fallbacks=[{"high-quality": ["high-quality"]}]))
    fake_upstream.script(Fault(status=500, times=1))
    client = gw.openai()
    for status in (502, 503):
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.create(model="high-quality", messages=HELLO)
        assert failed.value.status_code == status
        assert "x-interlock-attempts" in failed.value.response.headers
        assert "x-interlock-cost-usd" not in failed.value.response.headers
    await client.close()


def test_a_failed_request_s_billed_call_keeps_its_cost_header() -> None:
    # A call the provider bills before the request failed (a stream cut after
    # its prompt was sent): what it cost is said, as on an answer.
    meta = ResponseMeta(request_id="chatcmpl-1", decision=direct("g"), cost_usd=Decimal("0.25"),
                        attempts=[Attempt(deployment="d", provider="openai", group="g",
                                          outcome="Timeout", status=None, duration_ms=5.0)])
    assert dict(meta.headers())[b"x-interlock-cost-usd"] == b"0.25000000"
    meta.cost_usd, meta.nothing_billed = Decimal(0), True
    assert b"x-interlock-cost-usd" not in dict(meta.headers())


@pytest.mark.parametrize(("cost", "header"), [
    ("0.5", b"0.50000000"), ("0.0041250", b"0.00412500"), ("0", b"0.00000000"),
    ("0.000000006", b"0.00000001"),
    # Under half a hundred-millionth: 8 decimals said 0.00000000, as for a free call.
    ("0.0000000045", b"0.0000000045"), ("0.000000005", b"0.0000000050"),
    ("3.125E-12", b"0.0000000000031"),
])
def test_the_cost_header_never_shows_a_billed_call_as_free(cost: str, header: bytes) -> None:
    meta = ResponseMeta(request_id="chatcmpl-1", decision=direct("g"), cost_usd=Decimal(cost))
    assert dict(meta.headers())[b"x-interlock-cost-usd"] == header


async def test_headers_list_every_attempt_of_a_failover(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(_config(fake_upstream, _claude_then_gemini(fake_upstream),
                               num_retries=1))
    fake_upstream.script(Fault(status=500), provider="anthropic")
    client = gw.openai()
    raw = await client.chat.completions.with_raw_response.create(model="primary",
                                                                 messages=HELLO)
    h = raw.headers
    assert "gemini" in raw.parse().choices[0].message.content
    assert h["x-interlock-attempts"] == "2"
    assert h["x-interlock-provider"] == "gemini"
    log = [part.strip() for part in h["x-interlock-attempt-log"].split(",")]
    assert len(log) == 2
    assert log[0].startswith("primary/anthropic/claude-sonnet-4-20250514=UpstreamServerError/")
    assert log[1].startswith("primary/gemini/gemini-2.5-pro=ok/")
    assert all(part.endswith("ms") for part in log)
    assert (fake_upstream.calls("anthropic"), fake_upstream.calls("gemini")) == (1, 1)
    await client.close()


async def test_stream_headers_carry_the_metadata(fake_upstream: FakeUpstream,
                                                 gateway: RunningGateway) -> None:
    client = gateway.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="cost-optimized", messages=HELLO, stream=True)
    assert raw.headers["x-interlock-provider"] == "gemini"
    assert raw.headers["x-interlock-model-group"] == "cost-optimized"
    assert raw.headers["x-interlock-attempts"] == "1"
    text = "".join([c.choices[0].delta.content or "" async for c in raw.parse()
                    if c.choices])
    assert "gemini-2.5-pro" in text
    await client.close()


async def test_every_deployment_down_is_a_503_with_retry_after(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    model_list = [*_claude_then_gemini(fake_upstream),
                  deployment(fake_upstream, "spare", "openai")]
    config = _config(fake_upstream, model_list, num_retries=1, timeout=5, allowed_fails=0,
                     cooldown_time=20,
                     # "spare" falls back too, so its only deployment is cooled as well.
                     fallbacks=[{"primary": ["spare"]}, {"spare": ["primary"]}])
    gw = start_gateway(config)
    fake_upstream.script(Fault(status=503, times=None))
    client = gw.openai()
    with pytest.raises(openai.APIStatusError) as first:
        await client.chat.completions.create(model="primary", messages=HELLO)
    assert first.value.status_code >= 500
    # Both groups were tried: Claude, then Gemini, then the fallback group.
    assert [r.provider for r in fake_upstream.received] == ["anthropic", "gemini", "openai"]
    assert first.value.response.headers["x-interlock-attempts"] == "3"
    log = first.value.response.headers["x-interlock-attempt-log"]
    assert log.startswith("primary/anthropic/claude-sonnet-4-20250514=")
    # Everything is cooling now: the answer comes at once, with no upstream call.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as second:
        await client.chat.completions.create(model="primary", messages=HELLO)
    assert time.monotonic() - started < 1.0
    resp = second.value.response
    assert resp.status_code == 503
    assert 15 <= int(resp.headers["retry-after"]) <= 20
    assert resp.headers["x-interlock-attempts"] == "0"
    assert "skipped:cooldown" in resp.headers["x-interlock-attempt-log"]
    error = resp.json()["error"]
    assert error["type"] == "service_unavailable"
    assert set(error) == {"message", "type", "param", "code"}
    for name in ("primary", "spare", "claude-sonnet-4", "gemini-2.5-pro", "gpt-4o-mini"):
        assert name in error["message"]
    assert fake_upstream.calls() == 3
    await client.close()


async def test_every_deployment_hanging_ends_inside_the_deadline(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(_config(fake_upstream, _claude_then_gemini(fake_upstream),
                               num_retries=3, timeout=1.0, cooldown_time=20))
    fake_upstream.script(Fault(hang=True, times=None))
    client = gw.openai(timeout=15)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="primary", messages=HELLO)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.0 + 2.0
    assert caught.value.status_code in (503, 504)
    assert set(caught.value.response.json()["error"]) == {"message", "type", "param", "code"}
    await client.close()


async def test_every_deployment_rate_limited_is_a_503_naming_what_was_tried(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(_config(fake_upstream, _claude_then_gemini(fake_upstream),
                               num_retries=1, timeout=5, cooldown_time=20))
    fake_upstream.script(Fault(status=429, retry_after=12, times=None))
    client = gw.openai()
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="primary", messages=HELLO)
    assert fake_upstream.calls("anthropic") == 1 and fake_upstream.calls("gemini") == 1
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="primary", messages=HELLO)
    assert time.monotonic() - started < 1.0
    resp = caught.value.response
    assert resp.status_code == 503
    assert 10 <= int(resp.headers["retry-after"]) <= 12
    message = resp.json()["error"]["message"]
    assert "claude-sonnet-4" in message and "gemini-2.5-pro" in message
    assert fake_upstream.calls() == 2
    await client.close()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_a_stream_reports_its_cost_in_the_final_usage_chunk(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        provider: str) -> None:
    # Headers leave before a stream's usage is known, so its cost rides on the
    # usage chunk the client asked for with stream_options.include_usage.
    entry = deployment(fake_upstream, "priced", provider,
                       input_cost_per_token=0.000003, output_cost_per_token=0.000015)
    gw = start_gateway(_config(fake_upstream, [entry]))
    fake_upstream.reply(Reply(text="streamed ok", input_tokens=1000, output_tokens=200))
    client = gw.openai()
    stream = await client.chat.completions.create(
        model="priced", messages=HELLO, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    final = chunks[-1]
    assert final.choices == [] and final.usage.prompt_tokens == 1000
    summary = final.model_extra["interlock"]
    assert Decimal(summary["cost_usd"]) == Decimal("0.006")
    assert summary["provider"] == provider and summary["attempts"] == 1
    await client.close()


async def test_a_group_whose_budget_is_spent_answers_429_in_openai_format(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    entry = deployment(fake_upstream, "priced", "anthropic",
                       input_cost_per_token=0.000003, output_cost_per_token=0.000015)
    config = _config(fake_upstream, [entry])
    config["budgets"] = [{"model_group": "priced", "period": "day", "max_usd": "0.001"}]
    gw = start_gateway(config)
    fake_upstream.reply(Reply(text="ok", input_tokens=1000, output_tokens=200))  # $0.006
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    # The SDK's own retries left on (two by default): a spent budget must stop them.
    client = gw.openai(max_retries=2,
                       http_client=httpx.AsyncClient(event_hooks={"request": [count]}))
    first = await client.chat.completions.create(model="priced", messages=HELLO)
    assert first.choices[0].message.content == "ok"
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="priced", messages=HELLO)
    assert caught.value.status_code == 429
    assert len(sent) == 2  # asked once: no retry of a refusal that holds until the period ends
    headers = caught.value.response.headers
    assert headers["x-should-retry"] == "false"
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(int(headers["retry-after"]) - (midnight - now).total_seconds()) <= 5
    error = caught.value.body.get("error", caught.value.body)
    assert error["type"] == "budget_exceeded" and "budget" in error["message"]
    assert fake_upstream.calls("anthropic") == 1  # the refused request never went upstream
    await client.close()
    # /metrics shows the spent budget, for an alert before clients see the 429s.
    got = _samples((await _get(gw, "/metrics", headers=AUTH)).text)
    labels = '{target="model_group",name="priced",period="day"}'
    assert got["interlock_budget_spent_usd" + labels] == pytest.approx(0.006)
    assert got["interlock_budget_limit_usd" + labels] == pytest.approx(0.001)
    assert got["interlock_budget_exhausted" + labels] == 1
    assert got["interlock_budget_reserved_usd" + labels] == 0
    assert 0 < got["interlock_budget_resets_in_seconds" + labels] <= 86_400
    assert got["interlock_budget_refusals_total" + labels] == 1  # which budget refused


async def test_health_ledger_shows_what_the_ledger_holds_back_and_has_lost(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite"), "flush_interval": 0.01}
    gw = start_gateway(config)
    # Behind the master key: the counts tell how much traffic the gateway serves.
    assert (await _get(gw, "/health/ledger")).status_code == 401
    client = gw.openai()
    await client.chat.completions.create(model="budget", messages=HELLO)
    await client.close()
    deadline = time.monotonic() + 10
    while (ledger := (await _get(gw, "/health/ledger", headers=AUTH)).json()["ledger"]
           )["written"] < 1:
        assert time.monotonic() < deadline, ledger
        await asyncio.sleep(0.02)
    assert ledger == {"pending": 0, "dropped": 0, "written": 1, "write_failures": 0}


async def test_health_ledger_is_null_without_a_ledger(gateway: RunningGateway) -> None:
    got = await _get(gateway, "/health/ledger", headers=AUTH)
    assert got.status_code == 200 and got.json() == {"ledger": None}


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for the lines of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


async def test_metrics_gives_each_deployment_s_state_in_prometheus_text(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite"), "flush_interval": 0.01}
    gw = start_gateway(config)
    assert (await _get(gw, "/metrics")).status_code == 401  # behind the master key
    fake_upstream.script(Fault(status=429, retry_after=30), provider="anthropic")
    client = gw.openai()
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="high-quality", messages=HELLO)
    for _ in range(2):
        await client.chat.completions.create(model="budget", messages=HELLO)
    await client.close()
    resp = await _get(gw, "/metrics", headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = _samples(resp.text)
    claude = ('{deployment="high-quality/anthropic/claude-sonnet-4-20250514",'
              'group="high-quality",provider="anthropic"')
    budget = '{deployment="budget/openai/gpt-4o-mini",group="budget",provider="openai"'
    assert got["interlock_deployment_calls_total" + claude + "}"] == 1
    assert got["interlock_deployment_failures_total" + claude + "}"] == 1
    assert got["interlock_deployment_state" + claude + ',state="cooling"}'] == 1
    assert got["interlock_deployment_state" + claude + ',state="healthy"}'] == 0
    assert 25 < got["interlock_deployment_cooldown_remaining_seconds" + claude + "}"] <= 30
    assert got["interlock_deployment_calls_total" + budget + "}"] == 2
    assert got["interlock_deployment_in_flight" + budget + "}"] == 0
    assert got["interlock_deployment_latency_ms" + budget + "}"] >= 0
    assert got["interlock_deployment_state" + budget + ',state="healthy"}'] == 1
    # A deployment never called has no latency sample yet, but its other samples.
    assert not any(k.startswith("interlock_deployment_latency_ms") and "gemini" in k
                   for k in got)
    assert any(k.startswith("interlock_deployment_calls_total") and "gemini" in k
               for k in got)
    assert "interlock_ledger_rows_written_total" in got
    # Each family is declared once, with its type.
    assert resp.text.count("# TYPE interlock_deployment_state gauge") == 1
    assert "# TYPE interlock_ledger_rows_dropped_total counter" in resp.text
    assert "interlock_budget" not in resp.text  # no budgets configured


def test_metrics_label_values_are_escaped() -> None:
    from interlock.server.metrics import _sample

    assert _sample("m", {"deployment": 'a"b\\c\nd'}, 1) == 'm{deployment="a\\"b\\\\c\\nd"} 1'
    assert _sample("m", {}, 0.5) == "m 0.5"
    # A counter past a million keeps every digit; True is 1.
    assert _sample("m", {}, 1_234_567) == "m 1234567"
    assert _sample("m", {}, True) == "m 1" and _sample("m", {}, 0.000123) == "m 0.000123"


def test_metrics_of_a_worker_say_which_worker_answered() -> None:
    # Under --workers N the scrape reaches any worker: unlabelled, its counters
    # jumped between the workers' values, which rate() reads as resets.
    from interlock.server.metrics import _family, with_worker

    lines = _family("m_total", "counter", "Calls.",
                    [({"deployment": "a b"}, 3), ({}, 1)])
    assert with_worker(lines, 4242) == [
        "# HELP m_total Calls.", "# TYPE m_total counter",
        'm_total{worker="4242",deployment="a b"} 3', 'm_total{worker="4242"} 1']


async def test_a_deployment_that_cannot_take_a_parameter_is_passed_over_end_to_end(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    # Claude first in the group, but it has no logprobs: OpenAI's deployment answers,
    # and the headers say why Claude was not called.
    gw = start_gateway(_config(fake_upstream, [
        deployment(fake_upstream, "primary", "anthropic", order=1),
        deployment(fake_upstream, "primary", "openai", order=2),
        deployment(fake_upstream, "claude-only", "anthropic")]))
    client = gw.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="primary", messages=HELLO, logprobs=True)
    assert raw.headers["x-interlock-provider"] == "openai"
    log = raw.headers["x-interlock-attempt-log"]
    assert log.startswith("primary/anthropic/claude-sonnet-4-20250514=skipped:unsupported_")
    assert raw.parse().choices[0].message.content
    assert fake_upstream.calls("anthropic") == 0
    # No deployment of the group can take it: the 400 names the parameter.
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="claude-only", messages=HELLO,
                                             logprobs=True)
    assert refused.value.body["param"] == "logprobs"  # type: ignore[index]
    assert "'anthropic'" in refused.value.body["message"]  # type: ignore[index]
    assert fake_upstream.calls("anthropic") == 0
    await client.close()
