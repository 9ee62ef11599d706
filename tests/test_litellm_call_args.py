"""LiteLLM's call arguments as ported code passes them to `Router.acompletion`:
mock sentinels and testing switches, per-call fallbacks, LiteLLM-only controls,
`response_format=<pydantic model>`, and what `_hidden_params` holds."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel

from interlock import Router
from interlock.errors import (
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    RateLimited,
    Timeout,
    UpstreamServerError,
)
from interlock.exceptions import RateLimitError
from interlock.testing import FakeUpstream
from interlock.testing.script import Fault

MESSAGES = [{"role": "user", "content": "hi"}]


def _groups(**primary: Any) -> list[dict[str, Any]]:
    """Two groups on the fake upstream: `chat` (OpenAI) and `backup` (Claude)."""
    return [
        {"model_name": "chat", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY", **primary}},
        {"model_name": "backup", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-20250514",
            "api_key": "os.environ/ANTHROPIC_API_KEY"}},
    ]


# -- mock_response sentinels ---------------------------------------------------

@pytest.mark.parametrize(("sentinel", "error"), [
    ("litellm.RateLimitError", RateLimited),
    ("litellm.InternalServerError", UpstreamServerError),
    ("litellm.ContextWindowExceededError", ContextWindowExceeded),
    ("Exception: content_filter_policy violation", ContentFiltered),
])
async def test_a_litellm_error_sentinel_raises_its_error(
        provider_env: FakeUpstream, sentinel: str, error: type[Exception]) -> None:
    async with Router(model_list=_groups(), num_retries=1, backoff_base=0) as router:
        with pytest.raises(error) as raised:
            await router.acompletion(model="chat", messages=MESSAGES, mock_response=sentinel)
    assert provider_env.received == []
    # Failed as a provider's error would: retried when that error is (not a 400).
    retried = error in (RateLimited, UpstreamServerError)
    assert [a.outcome for a in raised.value.attempts] == [error.__name__] * (1 + retried)
    if error is RateLimited:
        assert isinstance(raised.value, RateLimitError)  # LiteLLM's name catches it


async def test_a_rate_limit_sentinel_is_retried_then_falls_back_as_a_real_one(
        provider_env: FakeUpstream) -> None:
    # LiteLLM's Router tests put the sentinel on one deployment to watch the
    # failover: the same retries and fallbacks apply as to a real 429.
    async with Router(model_list=_groups(mock_response="litellm.RateLimitError"),
                      num_retries=1, backoff_base=0,
                      fallbacks=[{"chat": ["backup"]}]) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES)
    assert answer.interlock["model_group"] == "backup"
    outcomes = [a["outcome"] for a in answer.interlock["attempts"]]
    assert outcomes == ["RateLimited", "RateLimited", "ok"]
    assert provider_env.calls("openai") == 0 and provider_env.calls("anthropic") == 1


async def test_a_mid_stream_sentinel_fails_after_the_first_chunk(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups(), num_retries=0) as router:
        stream = await router.acompletion(model="chat", messages=MESSAGES, stream=True,
                                          mock_response="Exception: mock_streaming_error")
        chunks = []
        with pytest.raises(Exception, match="mock"):
            async for chunk in stream:
                chunks.append(chunk)
    assert len(chunks) == 1
    assert "mock_streaming_error" not in str(chunks[0].choices[0].delta.content)


# -- LiteLLM's testing switches -------------------------------------------------

async def test_mock_testing_fallbacks_fails_the_first_group_without_a_call(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups(), fallbacks=[{"chat": ["backup"]}]) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          mock_testing_fallbacks=True)
        with pytest.raises(UpstreamServerError, match="mock_testing_fallbacks"):
            await router.acompletion(model="backup", messages=MESSAGES,
                                     mock_testing_fallbacks=True)
    assert answer.interlock["model_group"] == "backup"
    assert provider_env.calls("openai") == 0 and provider_env.calls("anthropic") == 1
    assert all("mock_testing" not in str(r.body) for r in provider_env.received)


async def test_mock_testing_context_fallbacks_goes_to_the_context_window_chain(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups(),
                      context_window_fallbacks=[{"chat": ["backup"]}]) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          mock_testing_context_fallbacks=True)
    assert answer.interlock["model_group"] == "backup"


async def test_mock_testing_rate_limit_error_fails_the_first_try_only(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups(), num_retries=1, backoff_base=0) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          mock_testing_rate_limit_error=True)
    assert [a["outcome"] for a in answer.interlock["attempts"]] == ["RateLimited", "ok"]
    assert provider_env.calls("openai") == 1  # the retry went to the provider
    assert "mock_testing_rate_limit_error" not in provider_env.received[0].body


async def test_mock_timeout_times_every_attempt_out(provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups(), num_retries=0) as router:
        with pytest.raises(Timeout):
            await router.acompletion(model="chat", messages=MESSAGES, mock_timeout=True,
                                     timeout=0.05)
    assert provider_env.received == []


# -- LiteLLM-only call arguments -------------------------------------------------

LITELLM_ONLY = {"caching": False, "priority": 1, "model_list": [],
                "custom_llm_provider": "openai", "input_cost_per_token": 0.1,
                "litellm_logging_obj": None, "metadata": {"trace": "x"}}


@pytest.mark.parametrize("group", ["chat", "backup"])
async def test_litellm_only_arguments_are_never_sent_upstream(
        provider_env: FakeUpstream, group: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="interlock.client")
    async with Router(model_list=_groups()) as router:
        for _ in range(2):
            answer = await router.acompletion(model=group, messages=MESSAGES, **LITELLM_ONLY)
            assert answer.choices[0].message.content
    for received in provider_env.received:
        assert set(LITELLM_ONLY).isdisjoint(received.body), received.body
    warned = [r.getMessage() for r in caplog.records if "no effect" in r.getMessage()]
    # Once per argument, naming it; metadata is Interlock's too and needs none.
    assert len(warned) == len(LITELLM_ONLY) - 1
    assert any("caching=" in w for w in warned)


# -- specific_deployment ------------------------------------------------------------

def _two_deployments() -> list[dict[str, Any]]:
    """`chat` with two OpenAI deployments, `east` and `west` (each answers with
    its own model name), and `backup` (Claude)."""
    east, backup = _groups()
    west = {**east, "litellm_params": {**east["litellm_params"], "model": "openai/gpt-4o"}}
    return [{**east, "model_info": {"id": "east"}}, {**west, "model_info": {"id": "west"}},
            backup]


@pytest.mark.parametrize("name", ["west", "openai/gpt-4o"])
async def test_specific_deployment_sends_every_call_to_that_deployment(
        provider_env: FakeUpstream, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="interlock.client")
    async with Router(model_list=_two_deployments()) as router:
        for _ in range(8):  # the group alone would share them out
            answer = await router.acompletion(model=name, messages=MESSAGES,
                                              specific_deployment=True)
            assert (answer.interlock["deployment"], answer.model) == ("west", "gpt-4o")
            assert answer.interlock["model_group"] == "chat"
        # specific_deployment=False is LiteLLM's default: the group, no warning.
        grouped = await router.acompletion(model="chat", messages=MESSAGES,
                                           specific_deployment=False)
        assert grouped.interlock["model_group"] == "chat"
    assert provider_env.calls("openai", model="gpt-4o-mini") <= 1
    assert all("specific_deployment" not in r.body for r in provider_env.received)
    assert not any("no effect" in r.getMessage() for r in caplog.records)


async def test_specific_deployment_falls_back_to_no_other_deployment_or_group(
        provider_env: FakeUpstream) -> None:
    provider_env.script(Fault(status=500, times=None), provider="openai", model="gpt-4o")
    async with Router(model_list=_two_deployments(), num_retries=1, backoff_base=0,
                      fallbacks=[{"chat": ["backup"]}]) as router:
        with pytest.raises(UpstreamServerError) as failed:
            await router.acompletion(model="west", messages=MESSAGES, specific_deployment=True)
        assert [a.deployment for a in failed.value.attempts] == ["west", "west"]  # a retry
        assert provider_env.calls("openai", model="gpt-4o-mini") == 0
        assert provider_env.calls("anthropic") == 0
        # The same call without it goes on to the other deployment.
        answer = await router.acompletion(model="chat", messages=MESSAGES)
    assert answer.interlock["deployment"] == "east"


async def test_specific_deployment_streams_and_embeds_from_that_deployment(
        provider_env: FakeUpstream) -> None:
    embedders = [{"model_name": "embed", "model_info": {"id": f"embed-{n}"}, "litellm_params": {
        "model": f"openai/text-embedding-3-{size}", "api_key": "os.environ/OPENAI_API_KEY"}}
        for n, size in enumerate(["small", "large"])]
    async with Router(model_list=_two_deployments() + embedders) as router:
        for _ in range(4):
            stream = await router.acompletion(model="west", messages=MESSAGES, stream=True,
                                              specific_deployment=True)
            chunks = [chunk async for chunk in stream]
            assert stream.interlock["deployment"] == "west"
            assert {c.model for c in chunks} == {"gpt-4o"}
            embedded = await router.aembedding(model="embed-1", input="x",
                                               specific_deployment=True)
            assert embedded.interlock.deployment == "embed-1"
    assert provider_env.calls("openai", model="gpt-4o-mini") == 0
    assert provider_env.calls("openai", model="text-embedding-3-small") == 0


async def test_specific_deployment_naming_no_one_deployment_says_how_to_name_one(
        provider_env: FakeUpstream) -> None:
    doubled = [*_two_deployments()[:1], {**_groups()[0], "model_info": {"id": "east-2"}}]
    async with Router(model_list=doubled) as router:
        with pytest.raises(InvalidRequest) as unknown:
            await router.acompletion(model="chat", messages=MESSAGES, specific_deployment=True)
        with pytest.raises(InvalidRequest) as shared:
            await router.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES,
                                     specific_deployment=True)
        with pytest.raises(InvalidRequest, match="drop fallbacks"):
            await router.acompletion(model="east", messages=MESSAGES, specific_deployment=True,
                                     fallbacks=["chat"])
        with pytest.raises(InvalidRequest, match="'specific_deployment' must be true or false"):
            await router.acompletion(model="east", messages=MESSAGES, specific_deployment="yes")
    said = str(unknown.value)
    assert "'chat' names no deployment" in said and "model_info.id (east, east-2)" in said
    assert "litellm_params.model (openai/gpt-4o-mini)" in said
    assert "of 2 deployments (east, east-2)" in str(shared.value)
    assert provider_env.received == []


async def test_request_timeout_is_litellm_s_name_for_timeout(provider_env: FakeUpstream) -> None:
    provider_env.script(Fault(latency=2.0), provider="openai")
    async with Router(model_list=_groups(), num_retries=0) as router:
        with pytest.raises(Timeout):
            await router.acompletion(model="chat", messages=MESSAGES, request_timeout=0.2)
    assert "request_timeout" not in provider_env.received[0].body


# -- per-call fallbacks ------------------------------------------------------------

@pytest.mark.parametrize("fallbacks", [["backup"], [{"chat": ["backup"]}], [{"*": ["backup"]}],
                                       {"chat": ["backup"]}])
async def test_a_call_s_fallbacks_apply_as_given_in_the_library(
        provider_env: FakeUpstream, fallbacks: Any) -> None:
    # The Router has no fallbacks of its own: the caller owns its config.
    provider_env.script(Fault(status=500, times=None), provider="openai")
    async with Router(model_list=_groups(), num_retries=0) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          fallbacks=fallbacks)
    assert answer.interlock["model_group"] == "backup"


async def test_a_call_s_fallbacks_replace_the_router_s(provider_env: FakeUpstream) -> None:
    provider_env.script(Fault(status=500, times=None), provider="openai")
    async with Router(model_list=_groups(), num_retries=0,
                      fallbacks=[{"chat": ["backup"]}]) as router:
        with pytest.raises(UpstreamServerError):
            await router.acompletion(model="chat", messages=MESSAGES, fallbacks=[])


async def test_an_unknown_fallback_group_is_an_error(provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups()) as router:
        with pytest.raises(InvalidRequest, match=r"'nope'.*backup, chat"):
            await router.acompletion(model="chat", messages=MESSAGES, fallbacks=["nope"])
        with pytest.raises(InvalidRequest, match="fallbacks"):
            # LiteLLM's request-changing form is not a group name.
            await router.acompletion(model="chat", messages=MESSAGES,
                                     fallbacks=[{"model": "backup", "temperature": 0}])
    assert provider_env.received == []


@pytest.mark.parametrize(("kind", "fault"), [
    ("context_window_fallbacks", Fault(status=400, kind="context_window")),
    ("content_policy_fallbacks", Fault(status=400, kind="safety")),
])
async def test_a_call_s_own_context_and_content_chains_apply(
        provider_env: FakeUpstream, kind: str, fault: Fault,
        caplog: pytest.LogCaptureFixture) -> None:
    # LiteLLM's Router reads both per call, over its own: ported code passes them.
    caplog.set_level(logging.WARNING, logger="interlock.client")
    provider_env.script(fault, provider="openai")
    async with Router(model_list=_groups(), num_retries=0) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          **{kind: [{"chat": ["backup"]}]})
    assert answer.interlock["model_group"] == "backup"
    assert not [r for r in caplog.records if "no effect" in r.getMessage()]
    assert all(kind not in r.body for r in provider_env.received)


async def test_a_call_s_own_context_chain_replaces_the_router_s(
        provider_env: FakeUpstream) -> None:
    provider_env.script(Fault(status=400, kind="context_window"), provider="openai")
    async with Router(model_list=_groups(), num_retries=0,
                      context_window_fallbacks=[{"chat": ["backup"]}]) as router:
        with pytest.raises(ContextWindowExceeded):
            await router.acompletion(model="chat", messages=MESSAGES,
                                     context_window_fallbacks=[])
    assert provider_env.calls("anthropic") == 0


async def test_a_call_s_own_context_chain_names_model_groups(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups()) as router:
        with pytest.raises(InvalidRequest, match=r"'context_window_fallbacks' names 'nope'"):
            await router.acompletion(model="chat", messages=MESSAGES,
                                     context_window_fallbacks=["nope"])
        with pytest.raises(InvalidRequest, match="'content_policy_fallbacks' must be"):
            await router.acompletion(model="chat", messages=MESSAGES,
                                     content_policy_fallbacks="backup")
    assert provider_env.received == []


# -- response_format=<pydantic model> ------------------------------------------------

class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: list[str]
    note: str | None = None


async def test_a_pydantic_model_class_is_a_strict_json_schema(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_groups()) as router:
        await router.acompletion(model="chat", messages=MESSAGES, response_format=CalendarEvent)
    sent = provider_env.received[0].body["response_format"]
    assert sent["type"] == "json_schema"
    spec = sent["json_schema"]
    assert spec["name"] == "CalendarEvent" and spec["strict"] is True
    assert spec["schema"]["required"] == ["name", "date", "participants", "note"]
    assert spec["schema"]["additionalProperties"] is False
    assert "default" not in spec["schema"]["properties"]["note"]


# -- _hidden_params -----------------------------------------------------------------

async def test_hidden_params_have_litellm_s_provider_and_api_base(
        provider_env: FakeUpstream) -> None:
    base = provider_env.base_url("openai").replace("://", "://user:secret@")
    model_list = [{"model_name": "chat", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": base + "?key=abc", "mock_response": "x"}}]
    async with Router(model_list=model_list) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES)
    hidden = answer._hidden_params
    assert hidden["custom_llm_provider"] == "openai"
    assert hidden["api_base"] == provider_env.base_url("openai")



def _state(router: Router, name: str) -> tuple[str, int, int]:
    row = next(h for h in router.health() if h.deployment == name)
    return row.state, row.requests, row.failures


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [429, 500])
async def test_a_pinned_call_s_failure_cools_its_deployment_for_routed_traffic(
        provider_env: FakeUpstream, status: int, stream: bool) -> None:
    provider_env.script(Fault(status=status, times=1), provider="openai", model="gpt-4o")
    async with Router(model_list=_two_deployments(), num_retries=0, allowed_fails=0,
                      cooldown_time=60) as router:
        with pytest.raises((RateLimited, UpstreamServerError)):
            await router.acompletion(model="west", messages=MESSAGES, stream=stream,
                                     specific_deployment=True)
        assert _state(router, "west")[0] == "cooling"
        for _ in range(8):  # the group alone would share them out
            answer = await router.acompletion(model="chat", messages=MESSAGES)
            assert answer.interlock["deployment"] == "east"
        # Pinned, it is not called while it cools either: the caller is told when
        # to come back (LiteLLM differs by path; specific_deployment.py says why).
        with pytest.raises(NoDeploymentAvailable) as cooling:
            await router.acompletion(model="west", messages=MESSAGES, specific_deployment=True)
    assert "chat/west: cooldown (" in str(cooling.value)
    assert cooling.value.retry_after is not None
    assert provider_env.calls("openai", model="gpt-4o") == 1


async def test_a_pinned_call_s_success_is_recorded_for_its_deployment(
        provider_env: FakeUpstream) -> None:
    async with Router(model_list=_two_deployments()) as router:
        await router.acompletion(model="west", messages=MESSAGES, specific_deployment=True)
        assert _state(router, "west") == ("healthy", 1, 0)
        assert _state(router, "east")[1:] == (0, 0)
