"""drop_params on OpenAI deployments, through the library (the gateway's are in
tests/server/test_drop_params_e2e.py).

The fake's `/openai/v1` refuses what OpenAI's own API refuses ("Unrecognized
request argument supplied"), and the deployments say they are OpenAI's with
`params_like: openai` (their base URL is the fake's, not api.openai.com). Each
kind of field is tried with and without drop_params: OpenAI's own (sent),
another provider's (refused before any call, or dropped) and one Interlock does
not know (sent for OpenAI to answer, or dropped).
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock import Router
from interlock.errors import BadRequest, InvalidRequest, UnsupportedParameter
from interlock.testing import FakeUpstream, Fault

MESSAGES = [{"role": "user", "content": "hi"}]
THINKING = {"type": "enabled", "budget_tokens": 2048}
# What QA sent: a vendor parameter, Anthropic's thinking, a per-call
# organization (a header, not a field): other providers' fields, refused before
# any call without drop_params.
ANOTHER_PROVIDERS: dict[str, Any] = {"top_k": 3, "thinking": THINKING,
                                     "organization": "org-x", "stop_sequences": ["END"]}
# A field Interlock does not know (a typo, or one OpenAI added after its list):
# without drop_params OpenAI answers it; with drop_params it is dropped.
UNKNOWN: dict[str, Any] = {"foo": 1}
DROPPED = {**ANOTHER_PROVIDERS, **UNKNOWN}


def _openai(fake: FakeUpstream, group: str = "o", **params: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-test-dummy",
        "api_base": fake.base_url("openai"), "params_like": "openai", **params}}


# -- the library --------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value"), DROPPED.items())
def test_router_drops_what_openai_refuses(fake_upstream: FakeUpstream, name: str,
                                          value: Any) -> None:
    router = Router(model_list=[_openai(fake_upstream)])
    try:
        resp = router.completion(model="o", messages=MESSAGES, drop_params=True,
                                 seed=5, **{name: value})
    finally:
        router.close()
    assert resp.choices[0].message.content
    body = fake_upstream.received[-1].body
    assert name not in body and body["seed"] == 5


@pytest.mark.parametrize(("name", "value"), ANOTHER_PROVIDERS.items())
def test_router_without_drop_params_refuses_before_calling(fake_upstream: FakeUpstream,
                                                           name: str, value: Any) -> None:
    router = Router(model_list=[_openai(fake_upstream)])
    try:
        with pytest.raises(UnsupportedParameter) as info:
            router.completion(model="o", messages=MESSAGES, **{name: value})
    finally:
        router.close()
    assert info.value.param == name and "'openai'" in info.value.message
    assert fake_upstream.calls() == 0


def test_router_without_drop_params_sends_an_unknown_field_and_relays_openai_s_400(
        fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_openai(fake_upstream)], num_retries=0)
    try:
        with pytest.raises(BadRequest, match="Unrecognized request argument supplied: foo"):
            router.completion(model="o", messages=MESSAGES, **UNKNOWN)
        # A field OpenAI lists goes on, drop_params or not.
        resp = router.completion(model="o", messages=MESSAGES, seed=5, drop_params=True)
    finally:
        router.close()
    assert fake_upstream.received[0].body["foo"] == 1
    assert resp.choices[0].message.content and fake_upstream.received[-1].body["seed"] == 5


def test_a_call_s_own_allowed_openai_params_is_refused_with_where_it_goes(
        fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_openai(fake_upstream)])
    try:
        with pytest.raises(InvalidRequest, match=r"litellm_params\.allowed_openai_params"):
            router.completion(model="o", messages=MESSAGES, allowed_openai_params=["foo"])
    finally:
        router.close()
    assert fake_upstream.calls() == 0


def test_a_claude_group_falls_back_to_gpt_with_thinking(fake_upstream: FakeUpstream) -> None:
    # Claude takes `thinking`, GPT does not: under drop_params the fallback
    # answers without it instead of failing as OpenAI's 400.
    fake_upstream.script(Fault(status=529, times=None), provider="anthropic")
    claude = {"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-20250514", "api_key": "sk-ant-test-dummy",
        "api_base": fake_upstream.base_url("anthropic")}}
    router = Router(model_list=[claude, _openai(fake_upstream, "gpt")],
                    fallbacks=[{"claude": ["gpt"]}], num_retries=0)
    try:
        resp = router.completion(model="claude", messages=MESSAGES, thinking=THINKING,
                                 drop_params=True)
    finally:
        router.close()
    assert resp.interlock["provider"] == "openai"
    assert fake_upstream.received[0].body["thinking"] == THINKING  # Claude was asked
    assert "thinking" not in fake_upstream.received[-1].body


# -- an `openai/` deployment with no api_base, tested through OPENAI_BASE_URL ------------
# As examples/demo.py tests a config: the fake's environ() points OPENAI_BASE_URL at
# its `/openai/v1`, which refuses what OpenAI refuses. The deployment is OpenAI's own
# API wherever that variable sends it, so the test meets production's rules.
def _no_api_base(group: str = "gpt", **params: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-test-dummy", **params}}


@pytest.fixture
def openai_base_url(fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in fake_upstream.environ().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("openai_base_url")
def test_without_api_base_openai_s_rules_hold_wherever_openai_base_url_points(
        fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_no_api_base()], num_retries=0)
    try:
        resp = router.completion(model="gpt", messages=MESSAGES, drop_params=True,
                                 seed=5, **DROPPED)
        with pytest.raises(UnsupportedParameter, match="'thinking'") as refused:
            router.completion(model="gpt", messages=MESSAGES, thinking=THINKING)
    finally:
        router.close()
    # Configs that sent a vLLM everything this way before are told why, and the fix.
    assert "as it names no api_base" in str(refused.value)
    assert "give it an api_base, or its server's prefix" in str(refused.value)
    assert resp.choices[0].message.content
    assert fake_upstream.calls("openai") == 1
    body = fake_upstream.received[-1].body
    assert body["seed"] == 5 and not set(DROPPED) & set(body)


@pytest.mark.usefixtures("openai_base_url")
def test_a_gpt_and_claude_group_asked_for_thinking_is_answered_by_claude(
        fake_upstream: FakeUpstream) -> None:
    # GPT refuses `thinking` before any call, and the group's next deployment
    # (Claude, which takes it) answers: as in production.
    claude = {"model_name": "mix", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-20250514", "api_key": "sk-ant-test-dummy",
        "order": 2}}
    router = Router(model_list=[_no_api_base("mix", order=1), claude], num_retries=0)
    try:
        resp = router.completion(model="mix", messages=MESSAGES, thinking=THINKING)
    finally:
        router.close()
    assert resp.interlock["provider"] == "anthropic"
    assert fake_upstream.calls("openai") == 0
    assert fake_upstream.received[-1].body["thinking"] == THINKING


@pytest.mark.parametrize("drop_params", [False, True])
def test_an_embeddings_call_s_own_allowed_openai_params_is_refused(
        fake_upstream: FakeUpstream, drop_params: bool) -> None:
    embed = {"model_name": "e", "litellm_params": {
        "model": "openai/text-embedding-3-small", "api_key": "sk-test-dummy",
        "api_base": fake_upstream.base_url("openai"), "params_like": "openai"}}
    router = Router(model_list=[embed], num_retries=0)
    try:
        with pytest.raises(InvalidRequest, match=r"litellm_params\.allowed_openai_params"):
            router.embedding(model="e", input=["hi"], allowed_openai_params=["foo"],
                             drop_params=drop_params)
    finally:
        router.close()
    assert fake_upstream.calls() == 0
