"""The library API: the seed's code runs with only its import changed.

Base URLs and keys come from the environment, as a user's would, pointed at
the fake upstream (the `provider_env` fixture in tests/conftest.py); the working
directory is a temporary one so the default ledger file lands there.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply, ScriptedToolCall
from interlock.web_search import url_citation

CLAUDE = "claude-sonnet-4-20250514"


def seed_model_list() -> list[dict[str, Any]]:
    """The seed's three groups, written as a LiteLLM user writes them."""
    return [
        {"model_name": "high-quality",
         "litellm_params": {"model": f"anthropic/{CLAUDE}",
                            "api_key": os.environ["ANTHROPIC_API_KEY"]}},
        {"model_name": "cost-optimized",
         "litellm_params": {"model": "gemini/gemini-2.5-pro",
                            "api_key": "os.environ/GEMINI_API_KEY"}},
        {"model_name": "budget",
         "litellm_params": {"model": "gemini/gemini-2.0-flash-lite",
                            "api_key": "os.environ/GEMINI_API_KEY"}},
    ]


def fallback_list() -> list[dict[str, Any]]:
    return [
        {"model_name": "primary",
         "litellm_params": {"model": f"anthropic/{CLAUDE}",
                            "api_key": "os.environ/ANTHROPIC_API_KEY", "order": 1}},
        {"model_name": "primary",
         "litellm_params": {"model": "gemini/gemini-2.5-pro",
                            "api_key": "os.environ/GEMINI_API_KEY", "order": 2}},
    ]


async def test_seed_snippet_runs_unchanged(provider_env: FakeUpstream,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    model_list = seed_model_list()
    prompt = "Explain recursion in one sentence."
    # --- the seed's code, with only the import changed ---
    from interlock import Router
    router = Router(model_list=model_list, num_retries=3, timeout=30)
    resp = await router.acompletion(model="high-quality",
                                    messages=[{"role": "user", "content": prompt}])
    print(resp.choices[0].message.content)
    # -----------------------------------------------------
    assert capsys.readouterr().out.strip() == (
        f"[simulated {CLAUDE}] Hello! This is a simulated answer from the fake upstream.")
    sent = provider_env.received[0]
    assert (sent.provider, sent.model) == ("anthropic", CLAUDE)
    assert sent.headers["x-api-key"] == "sk-ant-test-library-key"
    assert [m["role"] for m in sent.body["messages"]] == ["user"]
    assert prompt in json.dumps(sent.body["messages"])
    await router.aclose()


async def test_response_access_and_metadata(provider_env: FakeUpstream) -> None:
    from interlock import Router

    provider_env.reply(Reply(text="Paris.", input_tokens=1000, output_tokens=200))
    async with Router(model_list=seed_model_list()) as router:
        resp = await router.acompletion(
            model="cost-optimized", messages=[{"role": "user", "content": "Capital of France?"}])
    # Attribute access and dict access agree.
    assert resp.choices[0].message.content == "Paris."
    assert resp["choices"][0]["message"]["content"] == "Paris."
    assert resp.usage.prompt_tokens == resp["usage"]["prompt_tokens"] == 1000
    assert resp.choices[0].finish_reason == "stop"
    with pytest.raises(AttributeError):
        _ = resp.no_such_field
    # Optional OpenAI fields the answer left out read as None, as in the SDK.
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.refusal is None
    dumped = resp.model_dump()
    assert type(dumped) is dict and type(dumped["choices"][0]) is dict
    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped["choices"][0]["message"]["content"] == "Paris."
    # The other spellings ported code uses: OpenAI SDK's, and LiteLLM's json() -> dict.
    assert resp.to_dict() == resp.json() == resp.dict() == dumped
    assert json.loads(resp.to_json()) == dumped and "\n  " in resp.to_json()
    assert resp.choices[0].message.to_dict() == dumped["choices"][0]["message"]
    # Which deployment and provider answered, the attempts, the cost.
    meta = resp.interlock
    assert meta["deployment"] == "cost-optimized/gemini/gemini-2.5-pro"
    assert meta.provider == "gemini"
    assert meta["model_group"] == "cost-optimized"
    assert [(a["outcome"], a["provider"]) for a in meta["attempts"]] == [("ok", "gemini")]
    assert meta["cost_usd"] is not None and Decimal(meta["cost_usd"]) > 0
    assert resp._hidden_params["provider"] == "gemini"


async def test_stream_true_yields_chunks(provider_env: FakeUpstream) -> None:
    from interlock import Router

    text = "Streaming through the library, chunk by chunk."
    provider_env.reply(Reply(text=text, chunk_chars=5, input_tokens=7, output_tokens=9))
    async with Router(model_list=seed_model_list()) as router:
        stream = await router.acompletion(
            model="high-quality", messages=[{"role": "user", "content": "stream please"}],
            stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    # As OpenAI SDK code reads it: a delta without content has content None.
    content = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert any(c.choices[0].delta.content is None for c in chunks if c.choices)
    assert all(c.choices[0].delta.tool_calls is None for c in chunks if c.choices)
    assert "".join(content) == text
    assert sum(1 for piece in content if piece) >= 5
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9
    # The other chunks carry a null usage, as OpenAI's do under include_usage.
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    assert stream.response().content == text
    assert stream.interlock["provider"] == "anthropic"
    assert stream.interlock["attempts"][0]["outcome"] == "ok"
    assert provider_env.received[0].body["stream"] is True


async def test_legacy_functions_answer_in_the_legacy_shape(provider_env: FakeUpstream) -> None:
    from interlock import Router

    functions = [{"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    provider_env.reply(Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Oslo"})],
                             chunk_chars=4))
    asked = [{"role": "user", "content": "Weather in Oslo?"}]
    async with Router(model_list=seed_model_list()) as router:
        whole = await router.acompletion(model="high-quality", messages=asked,
                                         functions=functions)
        stream = await router.acompletion(model="high-quality", messages=asked,
                                          functions=functions, stream=True)
        chunks = [c async for c in stream if c.choices]
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "function_call" and not message.tool_calls
    assert (message.function_call.name, json.loads(message.function_call.arguments)) == (
        "get_weather", {"city": "Oslo"})
    pieces = [c["choices"][0]["delta"].get("function_call") for c in chunks]
    assert "".join(p["arguments"] for p in pieces if p) == message.function_call.arguments
    assert chunks[-1].choices[0].finish_reason == "function_call"


def test_sync_completion_and_sync_stream(provider_env: FakeUpstream) -> None:
    from interlock import Router

    router = Router(model_list=seed_model_list(), num_retries=1, timeout=10)
    try:
        resp = router.completion(model="budget",
                                 messages=[{"role": "user", "content": "hi"}])
        assert resp.choices[0].message.content.startswith("[simulated gemini-2.0-flash-lite]")
        assert resp.interlock["provider"] == "gemini"
        pieces = [c.choices[0].delta.get("content") or ""
                  for c in router.completion(model="high-quality", stream=True,
                                             messages=[{"role": "user", "content": "hi"}])
                  if c.choices]
        assert "".join(pieces).startswith(f"[simulated {CLAUDE}]")
    finally:
        router.close()
    assert [r.model for r in provider_env.received] == ["gemini-2.0-flash-lite", CLAUDE]


async def test_errors_are_interlock_errors(provider_env: FakeUpstream) -> None:
    from interlock import RateLimited, Router, UnknownModel

    async with Router(model_list=seed_model_list(), num_retries=0) as router:
        with pytest.raises(UnknownModel) as unknown:
            await router.acompletion(model="gpt-9", messages=[{"role": "user", "content": "x"}])
        assert "high-quality" in unknown.value.message and "budget" in unknown.value.message
        provider_env.script(Fault(status=429, retry_after=3), provider="anthropic")
        with pytest.raises(RateLimited) as limited:
            await router.acompletion(model="high-quality",
                                     messages=[{"role": "user", "content": "x"}])
        assert limited.value.provider == "anthropic"
        assert limited.value.retry_after == 3
        assert "sk-ant-test-library-key" not in repr(limited.value)
        assert "sk-ant-test-library-key" not in str(limited.value)


async def test_per_call_num_retries_and_timeout_as_in_litellm(
        provider_env: FakeUpstream) -> None:
    from interlock import Router
    from interlock.errors import Timeout, UpstreamServerError

    messages = [{"role": "user", "content": "x"}]
    provider_env.script(Fault(status=500, times=None), provider="gemini")
    # The library caller owns the router, so a call may ask for more than it has.
    async with Router(model_list=seed_model_list(), num_retries=0, allowed_fails=100,
                      backoff_base=0.001) as router:
        for asked, calls in ((2, 3), (None, 1)):
            before = provider_env.calls("gemini")
            extra = {} if asked is None else {"num_retries": asked}
            with pytest.raises(UpstreamServerError):
                await router.acompletion(model="budget", messages=messages, **extra)
            assert provider_env.calls("gemini") - before == calls
        provider_env.script(Fault(latency=5.0), provider="anthropic")
        with pytest.raises(Timeout):
            await router.acompletion(model="high-quality", messages=messages, timeout=0.3)


def test_default_litellm_params_apply_to_every_call(provider_env: FakeUpstream) -> None:
    from interlock import Router
    from interlock.errors import ConfigError

    router = Router(model_list=seed_model_list(), default_litellm_params={
        "temperature": 0.1, "max_tokens": 50, "metadata": {"team": "search"}})
    messages = [{"role": "user", "content": "hi"}]
    try:
        router.completion(model="budget", messages=messages)
        router.completion(model="budget", messages=messages, temperature=0.7)
    finally:
        router.close()
    first, second = (r.body["generationConfig"] for r in provider_env.received)
    assert (first["temperature"], first["maxOutputTokens"]) == (0.1, 50)
    assert (second["temperature"], second["maxOutputTokens"]) == (0.7, 50)
    # metadata is merged, the call's keys winning, as LiteLLM merges it.
    from interlock.client import _with_defaults

    merged = _with_defaults({"metadata": {"team": "search", "tier": 1}},
                            {"model": "m", "metadata": {"tier": 2}})
    assert merged["metadata"] == {"team": "search", "tier": 2}
    # Mistakes fail at construction, naming the argument.
    with pytest.raises(ConfigError, match=r"api_key.*belong to a deployment"):
        Router(model_list=seed_model_list(), default_litellm_params={"api_key": "sk-x"})
    with pytest.raises(ConfigError, match="default_litellm_params: 'temperature'"):
        Router(model_list=seed_model_list(), default_litellm_params={"temperature": "hot"})


def test_call_arguments_in_litellm_params_apply_to_every_call(
        provider_env: FakeUpstream) -> None:
    # LiteLLM passes litellm_params such as temperature and max_tokens to every
    # call of the deployment; they used to be accepted and then ignored here.
    from interlock import Router
    from interlock.config import load_config
    from interlock.errors import ConfigError

    model_list = [
        {"model_name": "chat", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY",
            "temperature": 0.2, "max_tokens": 100, "frequency_penalty": 0.5, "seed": 7}},
        {"model_name": "gem", "litellm_params": {
            "model": "gemini/gemini-2.5-pro", "api_key": "os.environ/GEMINI_API_KEY",
            "temperature": 0.3}}]
    router = Router(model_list=model_list)
    messages = [{"role": "user", "content": "hi"}]
    try:
        router.completion(model="chat", messages=messages)
        router.completion(model="chat", messages=messages, temperature=0.9, seed=1)
        router.completion(model="gem", messages=messages)
    finally:
        router.close()
    first, second, gemini = (r.body for r in provider_env.received)
    assert (first["temperature"], first["max_tokens"], first["frequency_penalty"],
            first["seed"]) == (0.2, 100, 0.5, 7)
    assert (second["temperature"], second["max_tokens"], second["seed"]) == (0.9, 100, 1)
    assert gemini["generationConfig"]["temperature"] == 0.3
    assert router.config.warnings == []
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.litellm_params.*'temperature'"):
        load_config({"model_list": [{"model_name": "g", "litellm_params": {
            "model": "openai/m", "api_key": "k", "temperature": "hot"}}]})


def test_tag_based_routing_as_litellm_configures_it(provider_env: FakeUpstream) -> None:
    from interlock import Router

    def entry(model: str, tag: str) -> dict[str, Any]:
        return {"model_name": "gpt-4", "litellm_params": {
            "model": f"openai/{model}", "api_key": "os.environ/OPENAI_API_KEY", "tags": [tag]}}

    router = Router(model_list=[entry("free-model", "free"), entry("paid-model", "paid"),
                                entry("std-model", "default")], enable_tag_filtering=True)
    messages = [{"role": "user", "content": "hi"}]
    try:
        router.completion(model="gpt-4", messages=messages, tags=["paid"])
        router.completion(model="gpt-4", messages=messages, metadata={"tags": "free"})
        router.completion(model="gpt-4", messages=messages)
    finally:
        router.close()
    assert [r.model for r in provider_env.received] == ["paid-model", "free-model",
                                                        "std-model"]
    assert router.config.warnings == []


async def test_seed_fallback_snippet(provider_env: FakeUpstream) -> None:
    from interlock import Router

    provider_env.script(Fault(status=429, times=None), provider="anthropic")
    router = Router(model_list=fallback_list(), enable_pre_call_checks=True,
                    cooldown_time=30, allowed_fails=2)
    try:
        for i in range(8):
            resp = await router.acompletion(
                model="primary", messages=[{"role": "user", "content": f"question {i}"}])
            # Served by Gemini while Claude answers 429.
            assert resp.interlock["provider"] == "gemini", resp.interlock
            assert resp.choices[0].message.content.startswith("[simulated gemini-2.5-pro]")
        # Claude was tried until its breaker opened (more than allowed_fails
        # failures), then left alone.
        assert 1 <= provider_env.calls("anthropic") <= 2 + 1
        assert provider_env.calls("gemini") == 8
        calls_when_open = provider_env.calls("anthropic")
        health = {h.provider: h for h in router.health()}
        assert health["anthropic"].state == "cooling"
        assert 25 < health["anthropic"].cooldown_remaining_s <= 30
        assert health["gemini"].state == "healthy"
        for _ in range(5):
            await router.acompletion(model="primary", messages=[{"role": "user", "content": "x"}])
        assert provider_env.calls("anthropic") == calls_when_open
    finally:
        await router.aclose()


async def test_allowed_fails_policy_keeps_a_rate_limited_deployment_in_use(
        provider_env: FakeUpstream) -> None:
    # LiteLLM's allowed_fails_policy, ported: 429s are tolerated far longer than
    # allowed_fails, so every request still tries Claude first.
    from interlock import Router

    provider_env.script(Fault(status=429, retry_after=None, times=None), provider="anthropic")
    async with Router(model_list=fallback_list(), cooldown_time=30, allowed_fails=1,
                      allowed_fails_policy={"RateLimitErrorAllowedFails": 100}) as router:
        assert router.config.warnings == []
        for _ in range(6):
            resp = await router.acompletion(model="primary",
                                            messages=[{"role": "user", "content": "x"}])
            assert resp.interlock["provider"] == "gemini"
        # Retries on the same deployment too (num_retries) count; none cooled it.
        assert provider_env.calls("anthropic") >= 6
        assert {h.provider: h.state for h in router.health()}["anthropic"] == "healthy"


async def test_max_parallel_requests_slots_come_back_from_streams_left_early(
        provider_env: FakeUpstream) -> None:
    import asyncio

    from interlock import Router
    from interlock.errors import NoDeploymentAvailable

    provider_env.reply(Reply(text="a long answer in many chunks", chunk_chars=2))
    async with Router(model_list=[{"model_name": "g", "litellm_params": {
            "model": f"anthropic/{CLAUDE}", "max_parallel_requests": 1}}],
            wait_for_recovery=False) as router:
        stream = await router.acompletion(model="g", stream=True,
                                          messages=[{"role": "user", "content": "x"}])
        # While the stream is open its slot is taken: with no waiting, refused.
        with pytest.raises(NoDeploymentAvailable, match="max_parallel_requests"):
            await router.acompletion(model="g", messages=[{"role": "user", "content": "y"}])
        await stream.__anext__()
        await stream.aclose()  # the caller leaves after one chunk
        resp = await asyncio.wait_for(router.acompletion(
            model="g", messages=[{"role": "user", "content": "z"}]), 5)
        assert resp.interlock["provider"] == "anthropic"


async def test_traffic_returns_to_claude_after_its_cooldown(provider_env: FakeUpstream) -> None:
    import asyncio

    from interlock import Router

    provider_env.script(Fault(status=429, times=3), provider="anthropic")
    async with Router(model_list=fallback_list(), enable_pre_call_checks=True,
                      cooldown_time=0.5, allowed_fails=2) as router:
        for _ in range(4):
            resp = await router.acompletion(model="primary",
                                            messages=[{"role": "user", "content": "x"}])
            assert resp.interlock["provider"] == "gemini"
        assert provider_env.calls("anthropic") == 3
        await asyncio.sleep(0.6)
        # Cooldown over, Claude has recovered: the probe goes to it, then all traffic.
        providers = []
        for _ in range(3):
            resp = await router.acompletion(model="primary",
                                            messages=[{"role": "user", "content": "x"}])
            providers.append(resp.interlock["provider"])
        assert providers == ["anthropic"] * 3


async def test_pre_call_checks_skip_a_deployment_the_prompt_does_not_fit(
        provider_env: FakeUpstream) -> None:
    from interlock import Router

    model_list = fallback_list()
    model_list[0]["litellm_params"]["max_input_tokens"] = 100
    async with Router(model_list=model_list, enable_pre_call_checks=True) as router:
        resp = await router.acompletion(
            model="primary", messages=[{"role": "user", "content": "word " * 400}])
    assert resp.interlock["provider"] == "gemini"
    assert provider_env.calls("anthropic") == 0


async def test_gateway_asks_a_judge_group_briefly_and_deterministically(
        provider_env: FakeUpstream) -> None:
    # What the `llm` router's judge call sends: the prompt alone, 8 tokens, temperature 0.
    from interlock import Router

    provider_env.reply(Reply(text="4"))
    async with Router(model_list=seed_model_list()) as router:
        answer = await router.gateway._ask_for_router("budget", "Rate this prompt 1-5: hi")
    assert answer == "4"
    sent = provider_env.received[0]
    assert (sent.provider, sent.model) == ("gemini", "gemini-2.0-flash-lite")
    config = sent.body["generationConfig"]
    assert config["maxOutputTokens"] == 8 and config["temperature"] == 0.0
    assert "Rate this prompt 1-5: hi" in json.dumps(sent.body["contents"])


_QUIET_EXIT = """
import asyncio, sys
from interlock import Router
router = Router(model_list=[{"model_name": "g", "litellm_params": {
    "model": "openai/gpt-4o-mini", "api_key": "sk-test"}}], ledger=sys.argv[1])
messages = [{"role": "user", "content": "hi"}]
async def main():
    answer = await router.acompletion(model="g", messages=messages)
    print(answer.choices[0].message.content)
for call in sys.argv[2:]:  # in the order given
    if call == "sync":
        print(router.completion(model="g", messages=messages).choices[0].message.content)
    else:
        asyncio.run(main())
"""


@pytest.mark.parametrize("calls", [["sync"], ["async"], ["sync", "async"], ["async", "sync"],
                                   ["async", "async"]])
def test_a_program_that_never_closes_the_router_ends_quietly(
        fake_upstream: FakeUpstream, calls: list[str], tmp_path: Path) -> None:
    # LiteLLM's Router needs no close(): ported code ends without one. It must not
    # print "Unclosed client session" on its way out, nor lose ledger rows (an
    # asyncio.run cancels the writer task; Python shuts its thread pools first).
    import sqlite3
    import subprocess
    import sys

    ledger = tmp_path / "spend.sqlite"
    env = {**os.environ, **fake_upstream.environ()}
    done = subprocess.run([sys.executable, "-c", _QUIET_EXIT, str(ledger), *calls], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("[simulated") == len(calls)
    assert done.stderr == ""
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT count(*) FROM interlock_requests").fetchone()[0]
    assert rows == len(calls)


def test_the_ledger_keeps_writing_across_asyncio_runs(provider_env: FakeUpstream,
                                                      tmp_path: Path) -> None:
    # Each asyncio.run ends its loop and cancels the ledger writer started on it;
    # the next run starts a new writer, so rows reach the database while the
    # program runs, not only when it exits.
    import asyncio
    import sqlite3

    from interlock import Router

    ledger = tmp_path / "spend.sqlite"
    router = Router(model_list=seed_model_list(), ledger=str(ledger))
    messages = [{"role": "user", "content": "hi"}]

    async def one_call(**kwargs: str) -> bool:
        await router.acompletion(model="budget", messages=messages, **kwargs)
        return await router.gateway.ledger.flush(5)

    assert asyncio.run(one_call()) and asyncio.run(one_call(user="customer-42"))
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT count(*) FROM interlock_requests").fetchone()[0] == 2
        # The request's `user` is kept, for spend by end user.
        assert db.execute("SELECT end_user FROM interlock_requests ORDER BY id").fetchall() == [
            (None,), ("customer-42",)]
    router.close()


def test_litellm_inspection_methods(provider_env: FakeUpstream) -> None:
    from interlock import Router

    router = Router(model_list=seed_model_list())
    assert router.get_model_names() == ["budget", "cost-optimized", "high-quality"]
    [entry] = router.get_model_list("budget")
    assert entry["model_name"] == "budget"
    assert entry["litellm_params"]["model"] == "gemini/gemini-2.0-flash-lite"
    assert len(router.get_model_list()) == 3
    # Keys never come back in the clear, literal or from the environment.
    listed = json.dumps(router.get_model_list())
    assert "sk-ant-test-library-key" not in listed and "test-gemini-library-key" not in listed
    # LiteLLM keeps the list as an attribute too.
    assert router.model_list == router.get_model_list()
    # Every entry has an id (its deployment's name), which get_model_info takes.
    assert entry["model_info"]["id"] == "budget/gemini/gemini-2.0-flash-lite"
    assert router.get_model_info(entry["model_info"]["id"]) == entry
    assert router.get_model_info("no-such-deployment") is None
    router.close()


def test_model_info_ids_are_deployment_names(provider_env: FakeUpstream) -> None:
    from interlock import Router

    router = Router(model_list=[
        {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o-mini"},
         "model_info": {"id": "mine", "base_model": "gpt-4o-mini"}},
        {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o-mini"}},
        {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o-mini"}}])
    ids = [e["model_info"]["id"] for e in router.get_model_list()]
    router.close()
    assert ids == ["mine", "g/openai/gpt-4o-mini", "g/openai/gpt-4o-mini#2"]
    assert ids == [d.name for d in router.gateway.catalog.deployments()]
    assert router.get_model_info("mine")["model_info"] == {"id": "mine",
                                                           "base_model": "gpt-4o-mini"}


def test_extra_headers_reach_every_provider_and_never_a_listing(
        provider_env: FakeUpstream) -> None:
    # The Anthropic adapter used to drop extra_headers; LiteLLM's `headers` is the
    # same thing; and get_model_list printed header values, keys included.
    from interlock import Router

    def entry(group: str, model: str, **headers: Any) -> dict[str, Any]:
        return {"model_name": group, "litellm_params": {"model": model, **headers}}

    router = Router(model_list=[
        entry("a", f"anthropic/{CLAUDE}", extra_headers={"x-tenant": "t1"}),
        entry("g", "gemini/gemini-2.5-pro", headers={"x-tenant": "t2"}),
        entry("o", "openai/gpt-4o-mini", headers={"x-tenant": "t3", "x-other": "o"},
              extra_headers={"x-tenant": "t4", "authorization": "Bearer sk-proxysecret99"})])
    messages = [{"role": "user", "content": "hi"}]
    try:
        for group in ("a", "g", "o"):
            router.completion(model=group, messages=messages)
        listed = json.dumps(router.get_model_list())
    finally:
        router.close()
    sent = [r.headers for r in provider_env.received]
    assert [h["x-tenant"] for h in sent] == ["t1", "t2", "t4"]
    assert sent[2]["x-other"] == "o"
    assert "sk-proxysecret99" not in listed and "t4" not in listed
    # A proxy URL with credentials in it is shown without its password, in
    # listings and in every repr a log or a traceback might print.
    proxied = Router(model_list=[{"model_name": "p", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": "https://user:hunter2pass@proxy.example/v1",
        "extra_headers": {"authorization": "Bearer sk-proxysecret99"}}}])
    shown = [json.dumps(proxied.get_model_list()), repr(proxied.config),
             repr(list(proxied.gateway.catalog.deployments()))]
    proxied.close()
    for text in shown:
        assert "hunter2pass" not in text and "sk-proxysecret99" not in text
    assert "user:[redacted]@proxy.example" in shown[0]


def test_a_call_s_extra_headers_reach_every_provider_over_the_deployment_s(
        provider_env: FakeUpstream) -> None:
    # LiteLLM takes extra_headers per call (an `anthropic-beta` for one request, a
    # trace id); a ported call that passes them used to be refused.
    from interlock import Router

    router = Router(model_list=[
        {"model_name": g, "litellm_params": {"model": m, "extra_headers": {"X-Tenant": "dep"}}}
        for g, m in (("a", f"anthropic/{CLAUDE}"), ("g", "gemini/gemini-2.5-pro"),
                     ("o", "openai/gpt-4o-mini"))])
    messages = [{"role": "user", "content": "hi"}]
    call = {"x-tenant": "call", "x-trace-id": "t-1"}
    try:
        for group in ("a", "g", "o"):
            router.completion(model=group, messages=messages, extra_headers=call)
            chunks = list(router.completion(model=group, messages=messages, stream=True,
                                            extra_headers=call))
            assert chunks
        router.completion(model="o", messages=messages)  # none: the deployment's alone
    finally:
        router.close()
    sent = [{k.lower(): v for k, v in r.headers.items()} for r in provider_env.received]
    assert len(sent) == 7
    # The call's header replaces the deployment's of the same name in another case,
    # and the provider's own headers (the key, the version) are still there.
    assert [h["x-tenant"] for h in sent] == ["call"] * 6 + ["dep"]
    assert [h.get("x-trace-id") for h in sent] == ["t-1"] * 6 + [None]
    assert sent[0]["x-api-key"] and sent[0]["anthropic-version"]
    assert sent[2]["x-goog-api-key"] and sent[4]["authorization"].startswith("Bearer ")


@pytest.mark.parametrize(("headers", "says"), [
    ({"Authorization": "Bearer sk-other-key-123"}, "credentials belong to the deployment"),
    ({"x-goog-api-key": "AIza-other-key-123"}, "credentials belong to the deployment"),
    ({"Content-Length": "5"}, "the HTTP client sets it"),
    ({"bad name": "v"}, "not an HTTP header name"),
    ({"x-ok": "v\r\nx-injected: 1"}, "without line breaks"),
    ({"x-num": 5}, "without line breaks"),
    (["x-a", "b"], "must be a dict"),
])
def test_a_call_s_extra_headers_are_checked(provider_env: FakeUpstream,
                                             headers: Any, says: str) -> None:
    from interlock import Router
    from interlock.errors import InvalidRequest

    router = Router(model_list=seed_model_list())
    try:
        with pytest.raises(InvalidRequest) as info:
            router.completion(model="budget", messages=[{"role": "user", "content": "hi"}],
                              extra_headers=headers)
    finally:
        router.close()
    assert info.value.param == "extra_headers" and says in info.value.message
    # A refused value is never echoed back: it may be a secret.
    assert "other-key-123" not in info.value.message
    assert provider_env.received == []


def test_model_group_alias_routes_to_its_group(provider_env: FakeUpstream) -> None:
    from interlock import Router
    from interlock.errors import ConfigError, UnknownModel

    router = Router(model_list=seed_model_list(), model_group_alias={
        "gpt-4": "high-quality", "cheap": {"model": "budget", "hidden": True}})
    messages = [{"role": "user", "content": "hi"}]
    answer = router.completion(model="gpt-4", messages=messages)
    assert answer.interlock["model_group"] == "high-quality"
    assert answer.interlock["route"]["requested"] == "gpt-4"
    assert "alias of 'high-quality'" in answer.interlock["route"]["reason"]
    assert router.completion(model="cheap", messages=messages).interlock["model_group"] == "budget"
    assert "gpt-4" in router.get_model_names() and "cheap" not in router.get_model_names()
    # An unknown name is told every name it could have used, visible aliases too.
    with pytest.raises(UnknownModel) as unknown:
        router.completion(model="gpt-5", messages=messages)
    assert "budget, cost-optimized, gpt-4, high-quality." in unknown.value.message
    router.close()
    with pytest.raises(ConfigError, match=r"model_group_alias\.gpt-5"):
        Router(model_list=seed_model_list(), model_group_alias={"gpt-5": "nope"})
    with pytest.raises(ConfigError, match="not also a model group"):
        Router(model_list=seed_model_list(), model_group_alias={"budget": "high-quality"})


async def test_logprobs_come_back_as_litellm_returns_them(provider_env: FakeUpstream) -> None:
    from interlock import Router

    text = "Four tokens, more or less."
    provider_env.reply(Reply(text=text, chunk_chars=7))
    model_list = [{"model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini"}}]
    async with Router(model_list=model_list) as router:
        messages = [{"role": "user", "content": "how sure are you?"}]
        resp = await router.acompletion(model="mini", messages=messages, logprobs=True,
                                        top_logprobs=2)
        stream = await router.acompletion(model="mini", messages=messages, logprobs=True,
                                          stream=True)
        chunks = [chunk async for chunk in stream]
    tokens = [t.token for t in resp.choices[0].logprobs.content]
    assert "".join(tokens) == text
    assert resp["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["token"] \
        == tokens[0] + "~1"
    streamed = [t["token"] for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    assert streamed == tokens
    final = stream.response().logprobs
    assert final is not None and [t["token"] for t in final["content"]] == tokens


async def test_reasoning_effort_reaches_each_provider_in_its_own_terms(
        provider_env: FakeUpstream) -> None:
    # A router may send a request meant for an OpenAI reasoning model to Claude or
    # Gemini: the effort becomes their thinking settings instead of a 400.
    from interlock import Router

    async with Router(model_list=seed_model_list()) as router:
        for group in ("high-quality", "cost-optimized"):
            await router.acompletion(model=group, reasoning_effort="medium",
                                     messages=[{"role": "user", "content": "Prove it."}])
    claude, gemini = provider_env.received
    assert claude.body["thinking"] == {"type": "enabled", "budget_tokens": 8_192}
    assert gemini.body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8_192}


async def test_web_search_through_claude_cites_and_costs_its_searches(
        provider_env: FakeUpstream) -> None:
    from interlock import Router
    from interlock.costs.prices import lookup_model_price
    from interlock.types import Usage

    text = "Paris is the capital of France."
    cited = [url_citation(0, len(text), "https://example.org/paris", "Paris")]
    provider_env.reply(Reply(text=text, annotations=cited, input_tokens=30, output_tokens=8),
                       provider="anthropic")
    async with Router(model_list=seed_model_list()) as router:
        resp = await router.acompletion(
            model="high-quality", web_search_options={"search_context_size": "high"},
            messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert resp.choices[0].message.annotations == cited
    price = lookup_model_price(CLAUDE, "anthropic")
    assert price is not None and price.per_web_search
    searched = price.cost(Usage(input_tokens=30, output_tokens=8, web_searches=1))
    assert Decimal(resp.interlock["cost_usd"]) == searched
    assert searched - price.cost(Usage(input_tokens=30, output_tokens=8)) == price.per_web_search
    assert provider_env.received[0].body["tools"][0]["max_uses"] == 5


def _ledger_rows(path: Path) -> list[tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT status, stream FROM interlock_requests ORDER BY id"
                          ).fetchall()


def test_sync_stream_raises_at_the_call_as_litellm_does(provider_env: FakeUpstream) -> None:
    # The sync stream used to be a generator that sent nothing until the first
    # next(): a try/except around `completion(...)` never saw its errors.
    from interlock import RateLimitError, Router, UnknownModel

    messages = [{"role": "user", "content": "hi"}]
    router = Router(model_list=seed_model_list(), num_retries=0)
    try:
        with pytest.raises(UnknownModel):
            router.completion(model="nope", messages=messages, stream=True)
        provider_env.script(Fault(status=429, retry_after=3), provider="anthropic")
        with pytest.raises(RateLimitError) as limited:
            router.completion(model="high-quality", messages=messages, stream=True)
        assert limited.value.retry_after == 3
        stream = router.completion(model="budget", messages=messages, stream=True)
        assert provider_env.calls("gemini") == 1  # sent before any chunk is asked for
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        router.close()
    assert text.startswith("[simulated gemini-2.0-flash-lite]")
    assert stream.interlock["attempts"][0]["outcome"] == "ok"


def test_a_sync_stream_left_unfinished_is_closed_and_recorded(provider_env: FakeUpstream,
                                                              tmp_path: Path) -> None:
    import gc

    from interlock import Router

    provider_env.reply(Reply(text="word " * 200, chunk_chars=5))
    ledger = tmp_path / "spend.sqlite"
    messages = [{"role": "user", "content": "hi"}]
    router = Router(model_list=seed_model_list(), ledger=str(ledger))
    try:
        closed = router.completion(model="budget", messages=messages, stream=True)
        next(closed)
        closed.close()
        closed.close()  # a second close does nothing
        dropped = router.completion(model="budget", messages=messages, stream=True)
        next(dropped)
        del dropped
        untouched = router.completion(model="budget", messages=messages, stream=True)
        del untouched  # dropped before its first chunk
        gc.collect()
        whole = list(router.completion(model="budget", messages=messages, stream=True))
        assert whole
    finally:
        router.close()
    # One row each, the unfinished ones as abandoned by their client.
    rows = _ledger_rows(ledger)
    assert [status for status, _ in rows] == ["error", "error", "error", "ok"]
    assert all(stream for _, stream in rows)


async def test_deepcopy_of_a_response_keeps_its_metadata(provider_env: FakeUpstream) -> None:
    # deepcopy used to copy the items alone: `.interlock` came back empty and
    # `_hidden_params["response_cost"]` None, unlike copy.copy and pickle.
    import copy
    import pickle

    from interlock import Router

    provider_env.reply(Reply(text="Paris.", input_tokens=1000, output_tokens=200))
    async with Router(model_list=seed_model_list()) as router:
        resp = await router.acompletion(
            model="cost-optimized", messages=[{"role": "user", "content": "Capital of France?"}])
    cost = resp._hidden_params["response_cost"]
    assert cost is not None and cost > 0
    for clone in (copy.deepcopy(resp), copy.copy(resp), pickle.loads(pickle.dumps(resp))):
        assert type(clone) is type(resp) and clone == resp
        assert clone.interlock == resp.interlock and clone.interlock.provider == "gemini"
        assert clone._hidden_params == resp._hidden_params
    clone = copy.deepcopy(resp)
    clone["choices"][0]["message"]["content"] = "Lyon."
    clone.interlock["attempts"][0]["outcome"] = "changed"
    clone.interlock["deployment"] = "elsewhere"
    assert resp.choices[0].message.content == "Paris."
    assert resp.interlock["attempts"][0]["outcome"] == "ok"
    assert resp.interlock["deployment"] == "cost-optimized/gemini/gemini-2.5-pro"
    assert clone.choices[0].message.content == "Lyon."  # still attribute access


async def test_a_stream_is_an_async_iterator_as_openai_and_litellm_streams_are(
        provider_env: FakeUpstream, tmp_path: Path) -> None:
    # CompletionStream had __aiter__ but no __anext__: anext(stream) was a TypeError.
    from interlock import Router

    def pieces(chunks: list[Any]) -> list[tuple[Any, ...]]:
        return [(c.choices[0].delta.content, c.choices[0].finish_reason) if c.choices
                else ("usage", c.usage.completion_tokens) for c in chunks]

    text = "Streaming through the library, chunk by chunk."
    provider_env.reply(Reply(text=text, chunk_chars=5, input_tokens=7, output_tokens=9))
    ledger = tmp_path / "spend.sqlite"
    messages = [{"role": "user", "content": "stream please"}]
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    async with Router(model_list=seed_model_list(), ledger=str(ledger)) as router:
        whole = [c async for c in await router.acompletion(model="budget", messages=messages,
                                                           **asked)]
        stream = await router.acompletion(model="budget", messages=messages, **asked)
        first = await anext(stream)
        rest = [c async for c in stream]
        assert await anext(stream, None) is None  # ended, and stays ended
        assert [c async for c in stream] == []
        await stream.aclose()  # after the end: no second row
        stopped = await router.acompletion(model="budget", messages=messages, **asked)
        await anext(stopped)
        await stopped.aclose()
        written = router.gateway.ledger
        assert written is not None and await written.flush(5)
    assert first.choices[0].delta.role == "assistant"
    assert pieces([first, *rest]) == pieces(whole)
    assert "".join(c.choices[0].delta.content or "" for c in whole if c.choices) == text
    assert rest[-1].usage.completion_tokens == 9
    assert stream.response().content == text
    assert stream.interlock["attempts"][0]["outcome"] == "ok"
    assert [status for status, _ in _ledger_rows(ledger)] == ["ok", "ok", "error"]
