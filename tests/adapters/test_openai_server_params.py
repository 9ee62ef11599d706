"""Which extra fields the OpenAI adapter sends to which server, and what becomes
of the others with and without drop_params (`adapters.openai.server_params`).

The body is checked as `build_body` writes it (no network), and through the
fake upstream, whose `/openai/v1` refuses what OpenAI's own API refuses and
whose `/openai-compatible/v1` takes anything, as vLLM or Ollama do.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from interlock.adapters.http import HttpClient, Timeouts
from interlock.adapters.openai import OpenAIAdapter, build_body
from interlock.adapters.openai import adapter as openai_adapter_module
from interlock.adapters.openai import server_params as server_params_module
from interlock.adapters.openai.server_params import ServerParams
from interlock.catalog import Deployment, Secret
from interlock.errors import BadRequest, ConfigError, UnsupportedParameter
from interlock.testing import FakeUpstream, openai_wire
from interlock.types import ChatRequest, EmbeddingRequest, Message, TextPart

FAST = Timeouts(connect=2.0, total=10.0)
THINKING = {"type": "enabled", "budget_tokens": 2048}


def deployment(provider: str = "openai", api_base: str | None = None, *,
               drop_params: bool = False, **extra: Any) -> Deployment:
    return Deployment(name="d1", group="g", provider=provider, model="gpt-4o-mini",
                      api_base=api_base, api_key=Secret("sk-test-dummy"),
                      drop_params=drop_params, extra=extra)


def request(drop_params: bool | None = None, **extra: Any) -> ChatRequest:
    return ChatRequest(model="g", messages=[Message("user", [TextPart("hi")])],
                       extra=extra, drop_params=drop_params)


def sent(req: ChatRequest, dep: Deployment) -> dict[str, Any]:
    body = build_body(req, dep, stream=False)
    del body["messages"]
    return body


# -- OpenAI's own API -------------------------------------------------------------
# One field of each kind: on OpenAI's list, another provider's, unknown to Interlock
# (a typo, or a field OpenAI added after the list was written).
LISTED, FOREIGN, UNKNOWN = ("seed", 7), ("top_k", 3), ("verbosity_v2", "low")


# OpenAI's own API: its usual host, its data-residency hosts, in any case.
AT_OPENAI = [None, "https://api.openai.com/v1", "https://eu.api.openai.com/v1",
             "https://us.api.openai.com/v1", "https://EU.API.OpenAI.com/v1"]


@pytest.mark.parametrize("api_base", AT_OPENAI)
@pytest.mark.parametrize(("name", "value", "hint"), [
    ("top_k", 3, "temperature and top_p"),
    ("thinking", THINKING, "reasoning_effort asks every provider"),
    ("organization", "org-x", "OpenAI-Organization header"),
    ("stop_sequences", ["END"], "send stop"),
    ("system", "Be brief.", "role 'system'"),
    ("generation_config", {"temperature": 0}, "temperature, top_p"),
    ("safety_settings", [], "Gemini's"),
])
def test_openai_itself_refuses_another_provider_s_fields(api_base: str | None, name: str,
                                                         value: Any, hint: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        build_body(request(**{name: value}), deployment(api_base=api_base), stream=False)
    error = info.value
    assert error.param == name and error.provider == "openai" and error.status_code == 400
    assert f"'{name}'" in error.message and hint in error.message
    assert "drop_params" in error.message
    assert "names no api_base" not in error.message  # OpenAI's own host: no doubt to explain


def test_without_drop_params_each_kind_of_field_goes_as_its_kind_says() -> None:
    # Listed and unknown fields are sent (OpenAI answers the unknown one: it may
    # be a field it added after our list); another provider's is refused here.
    assert sent(request(**dict([LISTED, UNKNOWN])), deployment()) == {
        **dict([LISTED, UNKNOWN]), "model": "gpt-4o-mini"}
    with pytest.raises(UnsupportedParameter, match=f"'{FOREIGN[0]}'"):
        build_body(request(**dict([LISTED, FOREIGN, UNKNOWN])), deployment(), stream=False)


@pytest.mark.parametrize("where", ["request", "deployment"])
def test_drop_params_keeps_only_what_openai_lists(where: str) -> None:
    asked = dict(top_k=3, thinking=THINKING, organization="org-x", foo=1, seed=7,
                 logprobs=True, reasoning_effort="low", service_tier="flex")
    req = request(drop_params=True, **asked) if where == "request" else request(**asked)
    dep = deployment(drop_params=where == "deployment")
    assert sent(req, dep) == {"seed": 7, "logprobs": True, "reasoning_effort": "low",
                              "service_tier": "flex", "model": "gpt-4o-mini"}


@pytest.mark.parametrize("api_base", [
    "https://api.openai.com.proxy.example/v1",  # a host that only starts like OpenAI's
    "https://notapi.openai.com/v1",              # ends like it, but not a subdomain
    "https://eu-api.openai.example/v1",
])
def test_a_host_that_only_looks_like_openai_s_is_a_server_that_cannot_be_named(
        api_base: str) -> None:
    assert sent(request(top_k=3), deployment(api_base=api_base)) == {
        "top_k": 3, "model": "gpt-4o-mini"}


def test_thinking_disabled_asks_for_nothing_and_is_left_out() -> None:
    # Anthropic's "no reasoning", which a client of several providers may send to
    # all: at OpenAI it asks for nothing, as the Anthropic adapter reads it.
    for drop in (False, True):
        assert sent(request(drop_params=drop, thinking={"type": "disabled"}),
                    deployment()) == {"model": "gpt-4o-mini"}
    with pytest.raises(UnsupportedParameter, match="'thinking'"):
        build_body(request(thinking={"type": "enabled", "budget_tokens": 1024}),
                   deployment(), stream=False)


def test_a_null_asks_for_nothing_and_is_left_out() -> None:
    # Some clients send every parameter they know, unset ones as null: OpenAI's
    # are sent as given, the others left out rather than refused.
    assert sent(request(top_k=None, foo=None, seed=None), deployment()) == {
        "seed": None, "model": "gpt-4o-mini"}


def test_a_proxy_in_front_of_openai_gets_its_rules_with_params_like() -> None:
    proxy = deployment(api_base="https://oai.example.com/v1", params_like="openai")
    with pytest.raises(UnsupportedParameter, match="'top_k'"):
        build_body(request(top_k=3), proxy, stream=False)


@pytest.mark.parametrize("drop_params", [False, True])
def test_allowed_openai_params_lets_a_field_through_whatever_the_rules(
        drop_params: bool) -> None:
    # With drop_params, how a field OpenAI added after our list reaches it.
    dep = deployment(allowed_openai_params=["new_knob", "top_k"], drop_params=drop_params)
    assert sent(request(new_knob="x", top_k=2, foo=1), dep) == {
        "new_knob": "x", "top_k": 2, "model": "gpt-4o-mini",
        **({} if drop_params else {"foo": 1})}
    with pytest.raises(ConfigError, match="allowed_openai_params must be a list"):
        build_body(request(new_knob="x"), deployment(allowed_openai_params="new_knob"),
                   stream=False)


@pytest.mark.parametrize("named", ["anthropic", ["openai"]])
def test_params_like_must_name_an_openai_compatible_server(named: Any) -> None:
    with pytest.raises(ConfigError, match="names no OpenAI-compatible server"):
        build_body(request(top_k=3), deployment(params_like=named), stream=False)


async def test_a_bad_setting_fails_the_first_call_whatever_it_carries(
        fake_upstream: FakeUpstream) -> None:
    # A Deployment built by hand (Catalog.from_deployments) bypasses config load.
    dep = deployment(api_base=fake_upstream.base_url("openai"), params_like="vllm")
    http = HttpClient()
    try:
        with pytest.raises(ConfigError, match=r"params_like 'vllm'.*hosted_vllm"):
            await OpenAIAdapter(http).complete(request(), dep, FAST)
    finally:
        await http.aclose()
    assert fake_upstream.calls() == 0


# -- the other servers ------------------------------------------------------------
@pytest.mark.parametrize(("provider", "api_base", "extra"), [
    # `openai/` at a base URL of one's own: vLLM, or a gateway that takes `thinking`.
    ("openai", "http://10.0.0.7:8000/v1", {"top_k": 3, "thinking": THINKING, "foo": 1}),
    ("hosted_vllm", "http://localhost:8000/v1",
     {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1}),
    ("openrouter", "https://openrouter.ai/api/v1",
     {"provider": {"order": ["anthropic"]}, "transforms": ["middle-out"], "top_k": 5}),
    ("together_ai", "https://api.together.xyz/v1", {"top_k": 50, "repetition_penalty": 1.0}),
    ("ollama", "http://localhost:11434/v1", {"top_k": 40}),
])
def test_vendor_parameters_reach_servers_that_take_them(provider: str, api_base: str,
                                                        extra: dict[str, Any]) -> None:
    # Under drop_params too: they are not unsupported there.
    for drop in (False, True):
        body = sent(request(**extra), deployment(provider, api_base, drop_params=drop))
        assert {k: body[k] for k in extra} == extra


def test_groq_refuses_what_its_documentation_says_it_refuses() -> None:
    groq = deployment("groq", "https://api.groq.com/openai/v1")
    with pytest.raises(UnsupportedParameter, match="Groq answers 400") as info:
        build_body(request(logprobs=True), groq, stream=False)
    assert info.value.provider == "groq"
    # Values that ask for nothing are left out, not refused; unknown ones go on.
    assert sent(request(logprobs=False, top_logprobs=0, top_k=5), groq) == {
        "top_k": 5, "model": "gpt-4o-mini"}
    assert sent(request(drop_params=True, logprobs=True), groq) == {"model": "gpt-4o-mini"}


# -- through the fake upstream ------------------------------------------------------
def test_the_fake_refuses_an_unrecognized_argument_as_openai_does(
        fake_upstream: FakeUpstream) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "top_k": 3}
    refused = httpx.post(fake_upstream.base_url("openai") + "/chat/completions", json=body)
    assert refused.status_code == 400
    assert refused.json() == {"error": {
        "message": "Unrecognized request argument supplied: top_k",
        "type": "invalid_request_error", "param": None, "code": None}}
    taken = httpx.post(fake_upstream.base_url("openai-compatible") + "/chat/completions",
                       json=body)
    assert taken.status_code == 200
    assert fake_upstream.received[-1].provider == "openai-compatible"


def _at_fake_openai(fake: FakeUpstream, *, drop_params: bool = False) -> Deployment:
    return deployment(api_base=fake.base_url("openai"), drop_params=drop_params,
                      params_like="openai")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("name", "error", "says", "calls"), [
    # Another provider's field: Interlock's 400, before any call.
    ("top_k", UnsupportedParameter, "'top_k'", 0),
    # One Interlock does not know: sent, and OpenAI's own 400 comes back.
    ("foo", BadRequest, "Unrecognized request argument supplied: foo", 1),
])
async def test_without_drop_params(fake_upstream: FakeUpstream, stream: bool, name: str,
                                   error: type[Exception], says: str, calls: int) -> None:
    req, dep = request(**{name: 3}), _at_fake_openai(fake_upstream)
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        with pytest.raises(error, match=says):
            if stream:
                [d async for d in adapter.stream(req, dep, FAST)]
            else:
                await adapter.complete(req, dep, FAST)
    finally:
        await http.aclose()
    assert fake_upstream.calls("openai") == calls


@pytest.mark.parametrize("stream", [False, True])
async def test_with_drop_params_openai_answers(fake_upstream: FakeUpstream,
                                               stream: bool) -> None:
    dep = _at_fake_openai(fake_upstream, drop_params=True)
    req = request(top_k=3, thinking=THINKING, foo=1, seed=1)
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        if stream:
            text = "".join([d.text or "" async for d in adapter.stream(req, dep, FAST)])
        else:
            text = (await adapter.complete(req, dep, FAST)).content or ""
    finally:
        await http.aclose()
    assert text
    body = fake_upstream.received[-1].body
    assert body["seed"] == 1 and not {"top_k", "thinking", "foo"} & set(body)


async def test_the_old_way_reaches_openai_and_fails_there(fake_upstream: FakeUpstream) -> None:
    # A custom base URL with no params_like is an unknown server: the field goes
    # on, and OpenAI's own 400 (played by the fake) comes back as it is.
    dep = deployment(api_base=fake_upstream.base_url("openai"), drop_params=True)
    http = HttpClient()
    try:
        with pytest.raises(BadRequest, match="Unrecognized request argument supplied: top_k"):
            await OpenAIAdapter(http).complete(request(top_k=3), dep, FAST)
    finally:
        await http.aclose()


async def test_embeddings_follow_the_same_rules(fake_upstream: FakeUpstream) -> None:
    def embedding(drop: bool, **extra: Any) -> EmbeddingRequest:
        return EmbeddingRequest(routing=request(drop_params=drop), inputs=["alpha"],
                                extra=extra or {"input_type": "query"})
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        at_openai = _at_fake_openai(fake_upstream)
        with pytest.raises(UnsupportedParameter, match=r"'input_type'.*Cohere"):
            await adapter.embeddings(embedding(False), at_openai, FAST)
        assert fake_upstream.calls("openai") == 0
        with pytest.raises(BadRequest, match="Unrecognized request argument supplied: foo"):
            await adapter.embeddings(embedding(False, foo=1), at_openai, FAST)
        await adapter.embeddings(embedding(True, input_type="query", foo=1, user="u"),
                                 at_openai, FAST)
        assert not {"input_type", "foo"} & set(fake_upstream.received[-1].body)
        compatible = deployment(api_base=fake_upstream.base_url("openai-compatible"))
        await adapter.embeddings(embedding(False), compatible, FAST)
        assert fake_upstream.received[-1].body["input_type"] == "query"
    finally:
        await http.aclose()


# -- read once per deployment ---------------------------------------------------------
async def test_a_deployment_s_rules_are_read_on_its_first_call_only(
        fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its URL and settings do not change for the adapter's life: parsing them on
    # every call that carries an extra field was work for nothing.
    reads: list[bool] = []
    real = server_params_module.server_params

    def counted(dep: Deployment, *, embeddings: bool = False) -> ServerParams:
        reads.append(embeddings)
        return real(dep, embeddings=embeddings)

    monkeypatch.setattr(server_params_module, "server_params", counted)
    dep = _at_fake_openai(fake_upstream, drop_params=True)
    embedding = EmbeddingRequest(routing=request(), inputs=["alpha"],
                                 extra={"input_type": "query"})
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        for _ in range(3):
            await adapter.complete(request(top_k=3, seed=1), dep, FAST)
            await adapter.embeddings(embedding, dep, FAST)
    finally:
        await http.aclose()
    assert sorted(reads) == [False, True]  # chat's rules and embeddings', once
    assert "top_k" not in fake_upstream.received[-2].body
    assert "input_type" not in fake_upstream.received[-1].body


async def test_embeddings_without_extra_fields_skip_the_rules(
        fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_wanted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("sendable_extra ran for a request without extra fields")

    monkeypatch.setattr(openai_adapter_module, "sendable_extra", not_wanted)
    http = HttpClient()
    try:
        result = await OpenAIAdapter(http).embeddings(
            EmbeddingRequest(routing=request(), inputs=["alpha"]),
            _at_fake_openai(fake_upstream), FAST)
    finally:
        await http.aclose()
    assert len(result.vectors) == 1


def test_the_fake_checks_against_the_same_reading_of_openai_s_reference() -> None:
    # Two copies on purpose (interlock.testing imports nothing of the adapters,
    # so that it checks them): kept equal here, so that one cannot drift alone.
    assert openai_wire.CHAT_FIELDS == server_params_module.OPENAI_CHAT_FIELDS
    assert openai_wire.EMBEDDING_FIELDS == server_params_module.OPENAI_EMBEDDING_FIELDS
