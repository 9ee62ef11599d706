"""Budgets through the gateway: a spent group falls back, then answers BudgetExceeded."""

from __future__ import annotations

import asyncio
import re
import secrets
from decimal import Decimal
from typing import Any

import pytest

from interlock.config import load_config
from interlock.errors import (
    BudgetExceeded,
    GatewayShuttingDown,
    NoDeploymentAvailable,
    ProviderError,
)
from interlock.gateway import Gateway
from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply
from interlock.tokens import estimate_prompt_tokens
from interlock.types import ChatRequest, Message, TextPart, Usage


def _config(fake: FakeUpstream) -> dict[str, Any]:
    def entry(group: str, provider: str, model: str) -> dict[str, Any]:
        return {"model_name": group, "litellm_params": {
            "model": f"{provider}/{model}", "api_key": "sk-test-dummy",
            "api_base": fake.base_url(provider)}}

    return {
        "model_list": [entry("high-quality", "anthropic", "claude-sonnet-4-20250514"),
                       entry("budget", "openai", "gpt-4o-mini")],
        "router_settings": {"num_retries": 0, "timeout": 10,
                            "fallbacks": [{"high-quality": ["budget"]}]},
        "ledger": {"database": None},
        # Sonnet 4: 1,000 in + 100 out = $0.0045 a call; $0.01 covers two calls and a bit.
        "budgets": [{"model_group": "high-quality", "max_usd": "0.01", "period": "day"},
                    {"provider": "openai", "max_usd": "0.0005", "period": 1}],
    }


def _ask(group: str) -> ChatRequest:
    return ChatRequest(model=group, messages=[Message("user", [TextPart("hello")])],
                       max_tokens=100)


async def test_spent_group_falls_back_then_429(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))
    gateway = Gateway(load_config(_config(fake_upstream)), environ={})
    await gateway.start()
    try:
        served = []
        for _ in range(3):
            done = await gateway.complete(_ask("high-quality"))
            served.append((done.meta.deployment or "").split("/")[0])
            assert done.meta.cost_usd is not None and done.meta.cost_usd > 0
        # Two calls fit in $0.01, the third crosses it; after that, the fallback serves.
        assert served[:3] == ["high-quality"] * 3
        fallback = await gateway.complete(_ask("high-quality"))
        assert fallback.meta.provider == "openai"
        assert gateway.budgets is not None
        status = {s["name"]: s for s in gateway.budgets.status()}
        assert status["high-quality"]["exhausted"]
        assert status["high-quality"]["spent_usd"] == "0.0135"  # 3 x $0.0045, as people write it
        assert status["high-quality"]["reserved_usd"] == "0"
        # gpt-4o-mini: 1,000 x 0.15 + 100 x 0.6 per million = $0.00021 a call.
        for _ in range(2):
            await gateway.complete(_ask("budget"))
        with pytest.raises(BudgetExceeded):
            await gateway.complete(_ask("budget"))
        with pytest.raises(BudgetExceeded) as info:
            await gateway.complete(_ask("high-quality"))
        # Each candidate named once, by its deployment name (which starts with its group).
        assert "high-quality/anthropic/claude-sonnet-4-20250514: budget" in info.value.message
        assert "high-quality/high-quality/" not in info.value.message
    finally:
        await gateway.aclose()


def test_budgets_share_the_redis_named_by_litellm_host_settings(
        fake_upstream: FakeUpstream) -> None:
    # A LiteLLM file names Redis by host, port and password; budgets connect by URL.
    config = _config(fake_upstream)
    config["router_settings"].update(redis_host="127.0.0.1", redis_port=6380,
                                     redis_password="p@ss:word")
    gateway = Gateway(load_config(config, environ={}))
    assert gateway.budgets is not None
    assert gateway.budgets.redis_url == "redis://:p%40ss%3Aword@127.0.0.1:6380/0"
    config["router_settings"]["redis_url"] = "redis://127.0.0.1:6379/2"
    assert Gateway(load_config(config, environ={})).budgets.redis_url == (  # type: ignore[union-attr]
        "redis://127.0.0.1:6379/2")


async def test_an_end_user_over_their_budget_gets_429_and_others_do_not(
        fake_upstream: FakeUpstream) -> None:
    config = _config(fake_upstream)
    config["budgets"] = [{"end_user": "*", "max_usd": "0.005", "period": "day"}]
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))  # $0.0045
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        def asked_by(user: str) -> ChatRequest:
            request = _ask("high-quality")
            request.user = user
            return request

        for _ in range(2):  # the second crosses acme's $0.005
            await gateway.complete(asked_by("acme"))
        with pytest.raises(BudgetExceeded):
            await gateway.complete(asked_by("acme"))
        assert (await gateway.complete(asked_by("globex"))).meta.provider == "anthropic"
        assert (await gateway.complete(_ask("high-quality"))).meta.provider == "anthropic"
        assert fake_upstream.calls("anthropic") == 4
    finally:
        await gateway.aclose()


async def test_a_client_key_s_budget_counts_its_requests_only(
        fake_upstream: FakeUpstream) -> None:
    # api_key: a client key's name (general_settings.api_keys), as the gateway
    # passes it for each request it authenticated.
    config = _config(fake_upstream)
    config["general_settings"] = {"master_key": "sk-master-0123456789", "api_keys": [
        {"name": "team-a", "key": "sk-team-a-0123456789"}]}
    config["budgets"] = [{"api_key": "team-a", "max_usd": "0.005", "period": "day"}]
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))  # $0.0045
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        for _ in range(2):
            await gateway.complete(_ask("high-quality"), key_id="team-a")
        with pytest.raises(BudgetExceeded):
            await gateway.complete(_ask("high-quality"), key_id="team-a")
        for key in ("key-0123456789ab", None):  # the master key's id; the library's none
            assert (await gateway.complete(_ask("high-quality"), key_id=key)).meta.provider
        assert fake_upstream.calls("anthropic") == 4
    finally:
        await gateway.aclose()


def test_a_budget_s_client_key_must_exist(fake_upstream: FakeUpstream) -> None:
    from interlock.errors import ConfigError

    config = _config(fake_upstream)
    config["budgets"] = [{"api_key": "team-z", "max_usd": "1"}]
    with pytest.raises(ConfigError, match=r"budgets\[0\]\.api_key: got 'team-z'"):
        load_config(config)


async def test_a_restart_without_redis_keeps_the_period_s_spend(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    # Counted in memory, a budget began its period again at every restart: a
    # gateway restarted by a deploy could spend a day's budget twice in a day.
    config = _config(fake_upstream)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite")}
    config["budgets"] = [{"model_group": "high-quality", "max_usd": "0.01", "period": "day"},
                         {"end_user": "*", "max_usd": "0.005", "period": 24},
                         {"provider": "openai", "max_usd": "1", "period": "month"}]
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))  # $0.0045
    request = _ask("high-quality")
    request.user = "acme"
    first = Gateway(load_config(config), environ={})
    await first.start()
    try:
        for _ in range(2):
            await first.complete(request)  # $0.009: acme is over its $0.005
        await first.complete(_ask("budget"))  # gpt-4o-mini: $0.00021, no user
    finally:
        await first.aclose()  # the ledger's rows are written as it closes

    second = Gateway(load_config(config), environ={})
    await second.start()
    try:
        assert second.budgets is not None
        status = {s["name"]: s for s in second.budgets.status()}
        assert status["high-quality"]["spent_usd"] == "0.009"
        assert status["openai"]["spent_usd"] == "0.00021"
        with pytest.raises(BudgetExceeded) as refused:  # acme's spend was remembered too
            await second.complete(request)
        assert "end_user 'acme' has spent its $0.005 every 24 hours" in refused.value.message
        await second.complete(_ask("high-quality"))  # $0.0135 in all: the group is spent
        assert (await second.complete(_ask("high-quality"))).meta.provider == "openai"
        assert fake_upstream.calls("anthropic") == 3
    finally:
        await second.aclose()


async def _spent_before(fake: FakeUpstream, tmp_path: Any, max_usd: str,
                       calls: int) -> dict[str, Any]:
    """A config with a ledger and a day's budget of `max_usd` on high-quality, after
    a first gateway on it made `calls` calls of $0.0045 and closed."""
    config = _config(fake)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite")}
    config["budgets"] = [{"model_group": "high-quality", "max_usd": max_usd, "period": "day"}]
    fake.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))  # $0.0045
    first = Gateway(load_config(config), environ={})
    await first.start()
    try:
        for _ in range(calls):
            await first.complete(_ask("high-quality"))
    finally:
        await first.aclose()  # the ledger's rows are written as it closes
    return config


async def test_budgets_that_lose_redis_count_on_from_the_ledger_s_record(
        fake_upstream: FakeUpstream, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    # While Redis is down its shared counts are out of reach: counting from zero in
    # memory, every replica could spend each budget's period again. A replica that
    # starts during the outage reads the record at start, as one without Redis.
    config = await _spent_before(fake_upstream, tmp_path, "0.01", calls=3)  # $0.0135
    config["router_settings"]["redis_url"] = "redis://127.0.0.1:9/0"  # nothing listens
    second = Gateway(load_config(config), environ={})
    with caplog.at_level("WARNING", logger="interlock.costs.budgets"):
        await second.start()
    try:
        assert "budget counts fall back to this process" in caplog.text
        assert second.budgets is not None
        seeding = second.budgets._local_seed
        assert seeding is not None and not seeding.pending
        [status] = second.budgets.status()
        assert status["spent_usd"] == "0.0135"  # the three calls recorded
        # Spent: the request goes to the fallback (openai), not to a zero count.
        assert (await second.complete(_ask("high-quality"))).meta.provider == "openai"
    finally:
        await second.aclose()


async def test_a_ledger_it_cannot_read_leaves_the_budgets_counting_from_zero(
        fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(fake_upstream)
    # Nothing listens on port 9: the ledger buffers, and the budgets say why they start at zero.
    config["ledger"] = {"database": "postgresql+psycopg://nobody@127.0.0.1:9/none",
                        "close_timeout": 0.2}
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))
    gateway = Gateway(load_config(config), environ={})
    with caplog.at_level("WARNING", logger="interlock.costs.budgets"):
        await gateway.start()
    try:
        assert "budgets could not read this period's spend from the ledger (Operational" \
               in caplog.text
        assert (await gateway.complete(_ask("high-quality"))).meta.provider == "anthropic"
    finally:
        await gateway.aclose()


async def test_a_slow_ledger_read_does_not_hold_start_up_and_loses_no_count(
        fake_upstream: FakeUpstream, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import threading

    import interlock.costs.budget_record as budget_record

    config = await _spent_before(fake_upstream, tmp_path, "1", calls=1)
    read = budget_record.recorded_spend
    # The read (of a ledger of millions of rows, say) ends only when the test lets
    # it, after start-up has returned: no bound on how fast this host starts.
    finish = threading.Event()

    def slowly(*args: Any) -> Any:
        finish.wait(10)
        return read(*args)

    monkeypatch.setattr(budget_record, "recorded_spend", slowly)
    monkeypatch.setattr(budget_record, "SEED_WAIT", 0.05)
    second = Gateway(load_config(config), environ={})
    with caplog.at_level("WARNING", logger="interlock.costs.budgets"):
        await second.start()
        assert second.budgets is not None
        seeding = second.budgets._local_seed
        assert seeding is not None and seeding.pending
        await second.complete(_ask("high-quality"))  # served, and counted, meanwhile
        finish.set()
        await seeding.task
    try:
        [status] = second.budgets.status()
        assert status["spent_usd"] == "0.009"  # the call before the restart and the one since
        assert re.search(r"spend took \d+\.\d s to read from the ledger", caplog.text)
    finally:
        await second.aclose()


def _stream_ask(group: str, text: str = "hello") -> ChatRequest:
    return ChatRequest(model=group, messages=[Message("user", [TextPart(text)])],
                       max_tokens=1000, stream=True)


async def _read_until_finished_then_close(gateway: Gateway, request: ChatRequest) -> Any:
    """A client that reads the answer to its finish_reason and leaves before the
    usage chunk; the stream's metadata (its ledger row's cost) after."""
    stream = await gateway.stream(request)
    async for delta in stream:
        if delta.finish_reason is not None:
            break
    await stream.aclose()
    return stream.meta


def _budget_config(fake: FakeUpstream, tmp_path: Any, **router: Any) -> dict[str, Any]:
    config = _config(fake)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite")}
    config["router_settings"].update(router)
    config["budgets"] = [{"model_group": "budget", "max_usd": "1", "period": "day"}]
    return config


async def _budget_gateway(fake: FakeUpstream, tmp_path: Any,
                          redis_url: str | None) -> tuple[dict[str, Any], Gateway]:
    """`_budget_config`'s gateway, started; its budgets shared through `redis_url`
    (under a prefix of its own) when one is given."""
    router = {} if redis_url is None else {"redis_url": redis_url,
                                           "redis_prefix": f"t{secrets.token_hex(4)}"}
    config = _budget_config(fake, tmp_path, **router)
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    return config, gateway


async def _spent(gateway: Gateway) -> Decimal:
    assert gateway.budgets is not None
    [status] = await gateway.budgets.astatus()
    return Decimal(status["spent_usd"])


@pytest.mark.parametrize("shared", [False, True])
async def test_a_stream_left_before_its_usage_costs_the_budget_what_the_ledger_charges(
        fake_upstream: FakeUpstream, tmp_path: Any, redis_url: str, shared: bool) -> None:
    # Settled as a failed attempt, such a stream cost the budget nothing, though its
    # ledger row charged Interlock's estimate: a key could stream without limit.
    fake_upstream.reply(Reply(text="slow answer " * 20, input_tokens=1000, output_tokens=500,
                              chunk_chars=4))
    fake_upstream.script(Fault(chunk_interval=0.01, times=None), provider="openai")
    config, gateway = await _budget_gateway(fake_upstream, tmp_path, redis_url if shared
                                            else None)
    try:
        charged = Decimal(0)
        for _ in range(2):
            meta = await _read_until_finished_then_close(gateway, _stream_ask("budget"))
            assert meta.usage_estimated and meta.cost_usd is not None and meta.cost_usd > 0
            charged += meta.cost_usd
        assert await _spent(gateway) == charged
    finally:
        await gateway.aclose()
    if shared:
        return
    again = Gateway(load_config(config), environ={})  # from the ledger's record: the same
    await again.start()
    try:
        assert await _spent(again) == charged
    finally:
        await again.aclose()


async def test_a_stream_broken_midway_costs_the_budget_what_the_ledger_charges(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    fake_upstream.reply(Reply(text="slow answer " * 20, input_tokens=1000, output_tokens=500,
                              chunk_chars=4))
    fake_upstream.script(Fault(disconnect_after=5), provider="openai")
    gateway = Gateway(load_config(_budget_config(fake_upstream, tmp_path)), environ={})
    await gateway.start()
    try:
        stream = await gateway.stream(_stream_ask("budget"))
        with pytest.raises(ProviderError):
            async for _ in stream:
                pass
        await stream.aclose()
        assert stream.meta.cost_usd is not None and stream.meta.cost_usd > 0
        assert await _spent(gateway) == stream.meta.cost_usd
    finally:
        await gateway.aclose()


async def test_a_call_its_client_left_midway_costs_the_budget_its_prompt_as_the_ledger(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    fake_upstream.script(Fault(hang=True), provider="openai")
    gateway = Gateway(load_config(_budget_config(fake_upstream, tmp_path)), environ={})
    await gateway.start()
    try:
        request = _ask("budget")
        call = asyncio.ensure_future(gateway.complete(request))
        while fake_upstream.calls("openai") == 0:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        [deployment] = gateway.catalog.groups["budget"].deployments
        prompt = gateway.prices.cost(deployment, Usage(input_tokens=estimate_prompt_tokens(
            request)))
        assert prompt is not None and prompt > 0
        assert await _spent(gateway) == prompt
    finally:
        await gateway.aclose()


async def test_a_call_that_failed_with_an_error_status_costs_the_budget_nothing(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    fake_upstream.script(Fault(status=500), provider="openai")
    gateway = Gateway(load_config(_budget_config(fake_upstream, tmp_path)), environ={})
    await gateway.start()
    try:
        with pytest.raises(ProviderError):
            await gateway.complete(_ask("budget"))
        assert await _spent(gateway) == 0
    finally:
        await gateway.aclose()


async def _keyed_gateway(fake: FakeUpstream, tmp_path: Any, budgets: list[Any]) -> Gateway:
    config = _config(fake)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite")}
    config["budgets"] = budgets
    gateway = Gateway(load_config(config), environ={})
    gateway.use_key_store()
    await gateway.start()
    return gateway


@pytest.mark.parametrize("config_budgets", [[], [{"provider": "anthropic", "max_usd": "5"}]])
async def test_a_budget_a_key_gains_at_run_time_starts_from_the_period_s_spend(
        fake_upstream: FakeUpstream, tmp_path: Any, config_budgets: list[Any]) -> None:
    # Counted in memory, a budget added to a key (or one whose period changed)
    # began at zero, though a restart would count the period's spend: a key that
    # had spent $0.009 today went on under a new $0.005 a day.
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))  # $0.0045
    gateway = await _keyed_gateway(fake_upstream, tmp_path, config_budgets)
    try:
        assert gateway.keys is not None and gateway.ledger is not None
        await gateway.keys.generate("intern", max_budget=Decimal(1), budget_period="month")
        await gateway.keys.generate("other")
        for key in ("intern", "other"):
            for _ in range(2):
                await gateway.complete(_ask("high-quality"), key_id=key)
        assert await gateway.ledger.flush(5)
        await gateway.keys.update("intern", max_budget=Decimal("0.005"), budget_period="day")
        await gateway.keys.update("other", max_budget=Decimal("0.005"), budget_period="day")
        for key in ("intern", "other"):
            with pytest.raises(BudgetExceeded, match=f"api_key '{key}' has spent"):
                await gateway.complete(_ask("high-quality"), key_id=key)
        assert gateway.budgets is not None
        status = {s["name"]: s["spent_usd"] for s in gateway.budgets.status()}
        assert status["intern"] == status["other"] == "0.009"
        # A changed limit keeps the period's count as it is: not read again.
        await gateway.keys.update("intern", max_budget=Decimal("0.02"))
        await gateway.complete(_ask("high-quality"), key_id="intern")
        status = {s["name"]: s["spent_usd"] for s in gateway.budgets.status()}
        assert status["intern"] == "0.0135"
    finally:
        await gateway.aclose()


async def test_an_empty_user_is_recorded_as_none(fake_upstream: FakeUpstream,
                                                 tmp_path: Any) -> None:
    import sqlite3

    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))
    config = _budget_config(fake_upstream, tmp_path)
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        request = _ask("budget")
        request.user = ""
        await gateway.complete(request)
    finally:
        await gateway.aclose()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT end_user FROM interlock_requests").fetchall() == [(None,)]


async def test_metrics_count_refusals_by_the_budget_that_refused(
        fake_upstream: FakeUpstream) -> None:
    # Unlabelled, the refusals could not tell an alert which budget refused.
    from interlock.server.metrics import render

    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))
    config = _config(fake_upstream)
    config["budgets"] = [{"model_group": "budget", "max_usd": "0.000000001", "period": "day"},
                         {"provider": "anthropic", "max_usd": "5", "period": 12}]
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        await gateway.complete(_ask("budget"))
        for _ in range(2):
            with pytest.raises(BudgetExceeded):
                await gateway.complete(_ask("budget"))
        page = (await render(gateway)).decode()
    finally:
        await gateway.aclose()
    assert ('interlock_budget_refusals_total{target="model_group",name="budget",period="day"} 2'
            in page.splitlines())
    assert ('interlock_budget_refusals_total{target="provider",name="anthropic",period="12.0"} 0'
            in page.splitlines())


@pytest.mark.parametrize("shared", [False, True])
async def test_a_mocked_answer_costs_the_budget_what_its_ledger_row_charges_nothing(
        fake_upstream: FakeUpstream, tmp_path: Any, redis_url: str, shared: bool) -> None:
    # Its row says $0 (nothing was billed), but the budget was charged the cost
    # of the mocked text's estimate: load tests with mock_response spent budgets.
    _, gateway = await _budget_gateway(fake_upstream, tmp_path, redis_url if shared else None)
    try:
        request = _ask("budget")
        request.mock_response = "made up " * 50
        done = await gateway.complete(request)
        assert done.meta.cost_usd == 0 and done.meta.deployment is not None
        streamed = _stream_ask("budget")
        streamed.mock_response = "made up " * 50
        meta = await _read_until_finished_then_close(gateway, streamed)
        assert meta.cost_usd == 0
        assert gateway.budgets is not None
        [status] = await gateway.budgets.astatus()
        assert (status["spent_usd"], status["reserved_usd"]) == ("0", "0")
        assert fake_upstream.calls("openai") == 0
    finally:
        await gateway.aclose()


async def test_a_mocked_answer_still_counts_against_rpm_and_a_spent_budget(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    # Mocked answers cost nothing, but they go through routing as a real call
    # would (docs/reliability.md): the deployment's rpm counts them, and a spent
    # budget refuses them, so that a test sees what a real call would get.
    fake_upstream.reply(Reply(text="fine", input_tokens=1000, output_tokens=100))

    def mocked() -> ChatRequest:
        request = _ask("budget")
        request.mock_response = "made up"
        return request

    config = _budget_config(fake_upstream, tmp_path)
    config["model_list"][1]["litellm_params"]["rpm"] = 1
    config["router_settings"]["fallbacks"] = []
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        assert (await gateway.complete(mocked())).meta.cost_usd == 0
        with pytest.raises(NoDeploymentAvailable, match="rpm"):
            await gateway.complete(mocked())
    finally:
        await gateway.aclose()
    config = _budget_config(fake_upstream, tmp_path)
    config["budgets"][0]["max_usd"] = "0.000000001"
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        await gateway.complete(_ask("budget"))  # a real call spends it
        with pytest.raises(BudgetExceeded):
            await gateway.complete(mocked())
    finally:
        await gateway.aclose()


@pytest.mark.parametrize("usage_came", [True, False])
async def test_a_continued_stream_costs_the_budgets_what_its_ledger_rows_charge(
        fake_upstream: FakeUpstream, tmp_path: Any, usage_came: bool) -> None:
    # Broken on anthropic and continued on openai: each provider billed its own
    # call, the second's prompt carrying the first's text, and each provider's
    # budget charged its own. The row charged only the original prompt, once, at
    # openai's price; then both calls under openai's name, so a restart, which
    # seeds budgets from the rows, moved anthropic's spend to openai.
    fake_upstream.reply(Reply(text="slow answer " * 20, chunk_chars=4))  # usage counted
    fake_upstream.script(Fault(disconnect_after=5), provider="anthropic")
    config = _config(fake_upstream)
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite")}
    config["router_settings"]["stream_continuation"] = True
    config["budgets"] = [{"provider": "anthropic", "max_usd": "5", "period": "day"},
                         {"provider": "openai", "max_usd": "5", "period": "day"},
                         {"end_user": "acme", "max_usd": "5", "period": "day"}]
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        request = _stream_ask("high-quality", "a long question " * 100)
        request.user = "acme"
        if usage_came:
            stream = await gateway.stream(request)
            async for _ in stream:
                pass
            meta = stream.meta
        else:
            meta = await _read_until_finished_then_close(gateway, request)
        assert [a.deployment.split("/")[1] for a in meta.attempts] == ["anthropic", "openai"]
        assert meta.usage_estimated  # the first call's usage never came
        [first, successor] = [r for r in fake_upstream.received]
        assert len(str(successor.body)) > len(str(first.body))  # carries the first's text
        assert gateway.budgets is not None
        live = {f"{s['target']}:{s['name']}": Decimal(s["spent_usd"])
                for s in await gateway.budgets.astatus()}
    finally:
        await gateway.aclose()
    import sqlite3

    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT request_id, provider, status, error_class, cost_nanousd, input_tokens, "
            "usage_estimated FROM interlock_requests ORDER BY id").fetchall()
    [broken, answer] = rows
    assert broken[0] == answer[0] == meta.request_id  # one request, a row a billed call
    assert (broken[1], broken[2], broken[6]) == ("anthropic", "continued", 1)
    assert broken[3] == "ConnectionFailed"
    # Read to its end, or left by its client after the finish reason.
    assert (answer[1], answer[2]) == ("openai", "ok" if usage_came else "error")
    cost = {row[1]: Decimal(row[4]) / 10**9 for row in rows}
    assert meta.cost_usd == cost["anthropic"] + cost["openai"]  # what the client is told
    # Each call at its own deployment's price, the first's prompt alone at
    # Sonnet's $3 per 1M tokens.
    assert cost["anthropic"] > Decimal(3 * estimate_prompt_tokens(request)) / 10**6
    # Both prompts were sent: the successor's carries the first's text.
    assert answer[5] > broken[5] >= estimate_prompt_tokens(request)
    # Each provider's budget charged its own call; the end user's, both.
    assert live == {"provider:anthropic": cost["anthropic"], "provider:openai": cost["openai"],
                    "end_user:acme": meta.cost_usd}
    # And a restart, seeding from the rows, agrees.
    again = Gateway(load_config(config), environ={})
    await again.start()
    try:
        assert again.budgets is not None
        seeded = {f"{s['target']}:{s['name']}": Decimal(s["spent_usd"])
                  for s in await again.budgets.astatus()}
    finally:
        await again.aclose()
    assert seeded == live


def _breaks_then_continues(fake: FakeUpstream, tmp_path: Any) -> dict[str, Any]:
    """A config whose streams break on anthropic after five chunks and continue on
    openai, with a SQLite ledger and no budgets."""
    fake.reply(Reply(text="slow answer " * 20, chunk_chars=4))
    fake.script(Fault(disconnect_after=5), provider="anthropic")
    config = _config(fake)
    del config["budgets"]
    config["router_settings"]["stream_continuation"] = True
    config["ledger"] = {"database": str(tmp_path / "ledger.sqlite")}
    return config


async def test_a_continued_stream_s_final_chunk_reports_both_calls_usage(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    # The final chunk showed the successor's usage alone beside a cost of both
    # calls: a client adding up tokens could not reach the cost it was shown.
    import sqlite3

    from interlock import Router

    router = Router(config=_breaks_then_continues(fake_upstream, tmp_path))
    try:
        chunks = [chunk async for chunk in await router.acompletion(
            model="high-quality", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "a long question " * 100}])]
    finally:
        await router.aclose()
    final = chunks[-1]
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        [(input_tokens, output_tokens)] = db.execute(  # the two calls' rows together
            "SELECT SUM(input_tokens), SUM(output_tokens) FROM interlock_requests").fetchall()
    assert final["interlock"]["usage_estimated"]  # the first call's usage never came
    assert (final["usage"]["prompt_tokens"], final["usage"]["completion_tokens"]) == (
        input_tokens, output_tokens)
    # Both prompts: the original and the successor's, which carries the first's text.
    assert input_tokens > 2 * estimate_prompt_tokens(
        _stream_ask("high-quality", "a long question " * 100))


def _keyed_and_settled(fake: FakeUpstream, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
                       ) -> tuple[dict[str, Any], list[Usage | None]]:
    """`_breaks_then_continues` with a client key `team` under a tpm limit, and
    the usage each of its limits tickets is let go with, as it is."""
    from interlock.key_limits import KeyTicket

    settled: list[Usage | None] = []
    done = KeyTicket.done
    monkeypatch.setattr(KeyTicket, "done",
                        lambda self, usage: settled.append(usage) or done(self, usage))
    config = _breaks_then_continues(fake, tmp_path)
    config["general_settings"] = {"api_keys": [
        {"name": "team", "key": "sk-team-0123456789", "tpm_limit": 1_000_000}]}
    return config, settled


async def test_a_continued_stream_is_one_request_with_two_billed_calls(
        fake_upstream: FakeUpstream, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # With a row for each call, the first's counted as a failed request of its
    # own (spend, report, /metrics), and the key's limits were let go with the
    # second call's tokens alone (third review).
    from interlock.costs.queries import LedgerReader
    from interlock.costs.simulate import replay

    config, settled = _keyed_and_settled(fake_upstream, tmp_path, monkeypatch)
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        stream = await gateway.stream(_stream_ask("high-quality", "a long question " * 100),
                                      key_id="team")
        async for _ in stream:
            pass
        both = stream.shown_usage()
        assert stream.response().usage == both  # the library's answer says the same
        assert gateway.recorder.usage.outcomes() == {"ok": 1}
    finally:
        await gateway.aclose()
    assert settled == [both]  # once, with both calls' tokens
    with LedgerReader(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as reader:
        [line] = reader.spend("key")
        health = {h.deployment.split("/")[1]: (h.requests, h.errors, h.attempts)
                  for h in reader.deployment_health()}
    assert (line.key, line.requests, line.errors, line.calls) == ("team", 1, 0, 2)
    assert both is not None and line.input_tokens == both.input_tokens
    # Each deployment's calls: the first broke a stream, the other answered it.
    assert health == {"anthropic": (1, 1, 1), "openai": (1, 0, 1)}
    # The report's and the simulator's replay: one request, priced on its
    # answering call, whose recorded cost holds both billed calls, as spend's does.
    with LedgerReader(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as reader:
        first, answered = reader.usage()
        replayed = replay(reader.usage(), {})
    assert (first.continued, answered.continued, answered.provider) == (True, False, "openai")
    assert (replayed.requests, replayed.continued_calls) == (1, 1)
    assert replayed.recorded_usd == line.cost_usd


async def test_a_continued_stream_of_unknown_cost_is_shown_unpriced_not_free(
        fake_upstream: FakeUpstream, tmp_path: Any) -> None:
    # `interlock spend` printed "$0.00 (2 unpriced)" for its one request: it
    # compared unpriced rows with requests, which leave the first call out.
    from typer.testing import CliRunner

    from interlock.cli.main import app

    config = _breaks_then_continues(fake_upstream, tmp_path)
    for entry, model in zip(config["model_list"], ("anthropic/no-such-claude",
                                                   "openai/no-such-gpt"), strict=True):
        entry["litellm_params"]["model"] = model
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        stream = await gateway.stream(_stream_ask("high-quality", "a long question " * 100))
        async for _ in stream:
            pass
    finally:
        await gateway.aclose()
    shown = CliRunner().invoke(app, ["spend", "--database",
                                     f"sqlite:///{tmp_path / 'ledger.sqlite'}", "--by", "group"])
    [line] = [x for x in shown.output.splitlines() if x.startswith("high-quality")]
    assert line.split()[1] == "1", line  # one request
    assert "$0.00" not in line and " unpriced " in line, line


async def test_a_continued_stream_s_own_row_is_written_when_its_first_call_s_is_not(
        fake_upstream: FakeUpstream, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The two rows are written one after the other: a failure writing the first
    # call's must not lose the request's own, nor the key's hold on its limits.
    from interlock.request_record import RequestRecorder

    config, settled = _keyed_and_settled(fake_upstream, tmp_path, monkeypatch)
    record = RequestRecorder.record

    def first_fails(self: RequestRecorder, *args: Any) -> None:
        if len(args) > 7 and args[7]:  # continued_call
            raise RuntimeError("the first call's row could not be made")
        record(self, *args)

    monkeypatch.setattr(RequestRecorder, "record", first_fails)
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    try:
        stream = await gateway.stream(_stream_ask("high-quality", "a long question " * 100),
                                      key_id="team")
        with pytest.raises(RuntimeError, match="first call's row"):
            async for _ in stream:
                pass
        assert gateway.recorder.usage.outcomes() == {"ok": 1}  # the request's own row
    finally:
        await gateway.aclose()
    assert settled == [stream.shown_usage()]


async def test_a_call_in_flight_at_aclose_gets_the_shutdown_error_from_its_fallback(
        fake_upstream: FakeUpstream, tmp_path: Any, redis_url: str) -> None:
    # Review: in the library, a call in flight when its Gateway closed met the
    # closed budget gate in its fallback, and was told its budget was spent.
    fake_upstream.reply(Reply(text="hi", input_tokens=1000, output_tokens=100))
    fake_upstream.script(Fault(status=500, latency=30.0, times=None), provider="anthropic")
    config = _budget_config(fake_upstream, tmp_path, redis_url=redis_url,
                            redis_prefix=f"t{secrets.token_hex(4)}")
    gateway = Gateway(load_config(config), environ={})
    await gateway.start()
    await gateway.complete(_ask("budget"))  # the gate has its Redis connection
    in_flight = asyncio.ensure_future(gateway.complete(_ask("high-quality")))
    while fake_upstream.calls(provider="anthropic") == 0:  # its first attempt, stalled
        await asyncio.sleep(0.01)
    await gateway.aclose()
    with pytest.raises(GatewayShuttingDown) as raised:
        await in_flight  # its fallback, "budget", is covered by a Redis budget
    assert [a.deployment.split("/")[0] for a in raised.value.attempts] == ["high-quality"]
