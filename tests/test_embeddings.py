"""Embeddings through the library: parsing, rendering, and the Router's
`aembedding`/`embedding` with the dispatcher's retries, fallbacks and mocks."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from interlock import Router
from interlock.errors import (
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    RateLimited,
    UnknownModel,
    UpstreamServerError,
)
from interlock.openai_embeddings import embedding_dict, parse_embedding_request
from interlock.testing import FakeUpstream
from interlock.testing.openai_wire import embedding_for
from interlock.testing.script import Fault
from interlock.types import EmbeddingResult, Usage


def _entry(fake: FakeUpstream, group: str, provider: str = "openai",
           model: str = "text-embedding-3-small", **params: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {
        "model": f"{provider}/{model}", "api_key": "sk-test-dummy",
        "api_base": fake.base_url(provider), **params}}


# -- the OpenAI body ---------------------------------------------------------------
def test_parse_takes_a_string_or_a_list_and_keeps_the_routing_fields() -> None:
    one = parse_embedding_request({"model": "embed", "input": "hello"})
    assert one.inputs == ["hello"] and one.dimensions is None and one.extra == {}
    many = parse_embedding_request({
        "model": "embed", "input": ["a", "b"], "dimensions": 256, "user": "u-7",
        "num_retries": 2, "timeout": 5, "tags": ["batch"], "input_type": "query",
        "encoding_format": "base64"})
    assert many.inputs == ["a", "b"] and many.dimensions == 256
    routing = many.routing
    assert (routing.model, routing.user, routing.num_retries, routing.timeout) == (
        "embed", "u-7", 2, 5.0)
    assert routing.tags == {"batch"}
    # One user message per input: what the ledger logs and the tpm estimate reads.
    assert [m.text for m in routing.messages] == ["a", "b"]
    # Only parameters with no neutral field go upstream as they are.
    assert many.extra == {"input_type": "query"}


@pytest.mark.parametrize(("body", "param", "says"), [
    ({"input": "x"}, "model", "'model' is required"),
    ({"model": "embed"}, "input", "'input' is required"),
    ({"model": "embed", "input": []}, "input", "'input' is required"),
    ({"model": "embed", "input": [1, 2, 3]}, "input", "token ids is not supported"),
    ({"model": "embed", "input": [[1, 2]]}, "input", "token ids is not supported"),
    ({"model": "embed", "input": ["ok", ""]}, "input", "'input[1]' must be a non-empty"),
    # A string has no input[0]: the message names `input` as it was given.
    ({"model": "embed", "input": ""}, "input", "got an empty string"),
    # A library caller's array is no string: judged as input, not asked to be a bool.
    ({"model": "embed", "input": np.array(["a", "b"])}, "input", "got ndarray"),
    ({"model": "embed", "input": ("a", "b")}, "input", "got tuple"),
    ({"model": "embed", "input": "x", "dimensions": 0}, "dimensions", "positive integer"),
    ({"model": "embed", "input": "x", "dimensions": True}, "dimensions", "positive integer"),
    ({"model": "embed", "input": "x", "encoding_format": "int8"}, "encoding_format",
     "'float' or 'base64'"),
    ({"model": "embed", "input": "x", "num_retries": -1}, "num_retries", "num_retries"),
    ({"model": "embed", "input": "x", "api_key": "sk-1"}, "api_key", "belong to"),
    ({"model": "embed", "input": "x", "stream": True}, "stream", "not supported"),
    # Headers in a body (a gateway client's) were sent on as a body field.
    ({"model": "embed", "input": "x", "extra_headers": {"x-a": "b"}}, "extra_headers",
     "cannot be given in a request body"),
    ({"model": "embed", "input": "x", "extra_body": ["x"]}, "extra_body", "an object"),
])
def test_parse_refuses_bad_bodies_naming_the_parameter(body: dict[str, Any], param: str,
                                                        says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_embedding_request(body)
    assert caught.value.param == param
    assert says in caught.value.message


def test_too_many_inputs_are_refused_before_any_call() -> None:
    with pytest.raises(InvalidRequest, match="at most 2048"):
        parse_embedding_request({"model": "embed", "input": ["x"] * 2049})


def test_base64_is_little_endian_float32_as_the_openai_sdks_decode_it() -> None:
    vector = [0.5, -0.25, 1e-3]
    result = EmbeddingResult([vector], Usage(input_tokens=3))
    plain = embedding_dict(result, model="m")
    assert plain["data"] == [{"object": "embedding", "index": 0, "embedding": vector}]
    assert plain["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    encoded = embedding_dict(result, model="m", base64_out=True)["data"][0]["embedding"]
    decoded = struct.unpack("<3f", base64.b64decode(encoded))
    assert decoded == pytest.approx(vector, rel=1e-6)


# -- the Router ----------------------------------------------------------------------
async def test_router_aembedding_answers_in_input_order_with_metadata(
        fake_upstream: FakeUpstream) -> None:
    # LiteLLM's embedding marker: an input price alone prices the model.
    entry = _entry(fake_upstream, "embed", input_cost_per_token=1e-7)
    entry["model_info"] = {"mode": "embedding"}
    router = Router(model_list=[entry])
    try:
        resp = await router.aembedding(model="embed", input=["alpha", "beta"], dimensions=16,
                                       user="u-1")
    finally:
        await router.aclose()
    sent = fake_upstream.received[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "text-embedding-3-small", "input": ["alpha", "beta"],
                         "encoding_format": "float", "dimensions": 16, "user": "u-1"}
    assert resp.object == "list" and resp.model == "text-embedding-3-small"
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[1].embedding == pytest.approx(embedding_for("beta")[:16])
    assert resp["data"][0]["embedding"] == pytest.approx(embedding_for("alpha")[:16])
    assert resp.usage.prompt_tokens == 2 + 1
    meta = resp.interlock
    assert (meta.model_group, meta.provider, meta.deployment) == (
        "embed", "openai", "embed/openai/text-embedding-3-small")
    assert meta.cost_usd is not None and float(meta.cost_usd) == pytest.approx(3e-7)
    assert resp.model_dump()["data"][0]["object"] == "embedding"


@pytest.mark.parametrize(("model", "per_million"), [
    ("text-embedding-3-small", "0.02"), ("text-embedding-3-large", "0.13"),
    ("text-embedding-ada-002", "0.10")])
async def test_openai_s_embedding_models_are_priced_without_a_price_in_the_config(
        fake_upstream: FakeUpstream, model: str, per_million: str) -> None:
    # No input_cost_per_token, no model_info.mode: OpenAI's list price applies.
    router = Router(model_list=[_entry(fake_upstream, "embed", model=model)])
    try:
        resp = await router.aembedding(model="embed", input=["alpha", "beta"])
    finally:
        await router.aclose()
    tokens = resp.usage.prompt_tokens
    assert tokens > 0
    assert resp.interlock.cost_usd is not None
    assert Decimal(resp.interlock.cost_usd) == tokens * Decimal(per_million) / 1_000_000


def test_call_arguments_are_not_sent_as_body_fields(fake_upstream: FakeUpstream) -> None:
    # `extra_body`, `max_retries` and `extra_headers` are arguments of the call
    # (the OpenAI SDK's and LiteLLM's); they used to reach the provider as fields.
    # `input_type` is a vendor parameter, which an OpenAI-compatible server that is
    # not OpenAI's own takes.
    fake_upstream.script(Fault(status=429, retry_after=0, times=1),
                         provider="openai-compatible")
    router = Router(model_list=[_entry(fake_upstream, "embed",
                                       api_base=fake_upstream.base_url("openai-compatible")),
                                _entry(fake_upstream, "gem", provider="gemini",
                                       model="text-embedding-004")])
    try:
        router.embedding(model="embed", input="hello", extra_body={"input_type": "query"},
                         max_retries=1, extra_headers={"x-trace-id": "t-9"})
        router.embedding(model="gem", input="hello", extra_headers={"x-trace-id": "t-10"})
    finally:
        router.close()
    openai_call, gemini_call = fake_upstream.received[-2:]
    assert fake_upstream.received[-3].path == openai_call.path  # the 429, retried once
    assert openai_call.body == {"input_type": "query", "model": "text-embedding-3-small",
                                "input": ["hello"], "encoding_format": "float"}
    assert openai_call.headers["x-trace-id"] == "t-9"
    assert gemini_call.headers["x-trace-id"] == "t-10"
    assert "extra_headers" not in str(gemini_call.body)


def test_router_embedding_is_the_sync_twin(fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_entry(fake_upstream, "embed")])
    try:
        resp = router.embedding(model="embed", input="hello")
        packed = router.embedding(model="embed", input="hello", encoding_format="base64")
    finally:
        router.close()
    assert resp.data[0].embedding == pytest.approx(embedding_for("hello"))
    # Asked for base64, as from the gateway; the provider was asked for floats.
    raw = base64.b64decode(packed.data[0].embedding)
    assert struct.unpack(f"<{len(raw) // 4}f", raw) == pytest.approx(resp.data[0].embedding)
    assert fake_upstream.received[-1].body["encoding_format"] == "float"


def test_a_tiny_cost_is_a_plain_decimal_string(fake_upstream: FakeUpstream) -> None:
    # str() of a Decimal under a millionth gave '2E-8' where docs say a decimal string.
    router = Router(model_list=[_entry(fake_upstream, "embed")])
    try:
        resp = router.embedding(model="embed", input="hi")
    finally:
        router.close()
    cost = resp.interlock["cost_usd"]
    assert Decimal(cost) < Decimal("0.000001") and "E" not in cost.upper()


async def test_a_rate_limited_embedding_is_retried(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=429, retry_after=0, times=1), provider="openai")
    router = Router(model_list=[_entry(fake_upstream, "embed")], num_retries=1)
    try:
        resp = await router.aembedding(model="embed", input="hello")
    finally:
        await router.aclose()
    assert [a["outcome"] for a in resp.interlock.attempts] == ["RateLimited", "ok"]
    assert fake_upstream.calls("openai") == 2


async def test_a_failed_embedding_falls_back_to_the_next_group(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=500), provider="openai", model="text-embedding-3-small")
    router = Router(model_list=[
        _entry(fake_upstream, "embed"),
        _entry(fake_upstream, "embed-backup", model="text-embedding-3-large"),
    ], num_retries=0, fallbacks=[{"embed": ["embed-backup"]}])
    try:
        resp = await router.aembedding(model="embed", input="hello")
    finally:
        await router.aclose()
    assert resp.interlock.model_group == "embed-backup"
    assert resp.model == "text-embedding-3-large"
    assert [a["group"] for a in resp.interlock.attempts] == ["embed", "embed-backup"]


async def test_the_last_error_reaches_the_caller_typed(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=429, retry_after=30), provider="openai")
    router = Router(model_list=[_entry(fake_upstream, "embed")], num_retries=0)
    try:
        with pytest.raises((RateLimited, NoDeploymentAvailable)) as caught:
            await router.aembedding(model="embed", input="hello")
    finally:
        await router.aclose()
    assert caught.value.attempts and caught.value.attempts[0].outcome == "RateLimited"


async def test_a_provider_without_embeddings_is_a_clear_400(
        fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_entry(fake_upstream, "chat", provider="anthropic",
                                       model="claude-sonnet-4-20250514")])
    try:
        with pytest.raises(InvalidRequest, match="anthropic provider has no embeddings API"):
            await router.aembedding(model="chat", input="hello")
    finally:
        await router.aclose()
    assert fake_upstream.calls("anthropic") == 0


async def test_embeddings_name_a_group_not_a_router(fake_upstream: FakeUpstream) -> None:
    router = Router(config={
        "model_list": [_entry(fake_upstream, "weak", model="gpt-4o-mini"),
                       _entry(fake_upstream, "strong", model="gpt-4o")],
        "routing": {"routers": {"tiers": {"type": "rules", "rules": [], "default": "weak"}},
                    "groups": {"smart": {"router": "tiers"}}},
        "ledger": {"database": None}})
    try:
        with pytest.raises(InvalidRequest, match="'smart' is a router"):
            await router.aembedding(model="smart", input="hello")
        with pytest.raises(InvalidRequest, match=r"'router-mf-0\.3' is a router"):
            await router.aembedding(model="router-mf-0.3", input="hello")
        with pytest.raises(UnknownModel) as unknown:
            await router.aembedding(model="nope", input="hello")
    finally:
        await router.aclose()
    assert "weak" in unknown.value.message
    assert fake_upstream.calls() == 0


async def test_each_input_must_fit_the_context_window_not_their_sum(
        fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_entry(fake_upstream, "embed", max_input_tokens=50)],
                    enable_pre_call_checks=True)
    try:
        # 40 inputs of ~10 tokens: 400 tokens in all, but each one fits.
        resp = await router.aembedding(model="embed", input=["x" * 40] * 40)
        assert len(resp.data) == 40
        with pytest.raises((ContextWindowExceeded, NoDeploymentAvailable)):
            await router.aembedding(model="embed", input=["short", "y" * 400])
    finally:
        await router.aclose()
    assert fake_upstream.calls("openai") == 1


async def test_mock_response_makes_up_stable_vectors_and_calls_no_one(
        fake_upstream: FakeUpstream) -> None:
    router = Router(model_list=[_entry(fake_upstream, "embed")])
    try:
        first = await router.aembedding(model="embed", input=["a", "b", "a"], dimensions=5,
                                        mock_response="x")
        again = await router.aembedding(model="embed", input="a", mock_response="x")
    finally:
        await router.aclose()
    vectors = [d.embedding for d in first.data]
    assert [len(v) for v in vectors] == [5, 5, 5]
    assert vectors[0] == vectors[2] != vectors[1]
    assert sum(v * v for v in vectors[1]) == pytest.approx(1.0)
    assert len(again.data[0].embedding) == 16
    assert first.interlock.cost_usd == "0"
    assert fake_upstream.calls() == 0


async def test_default_litellm_params_that_an_embedding_takes_apply_to_it(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=500, times=1), provider="openai")
    router = Router(model_list=[_entry(fake_upstream, "embed")], num_retries=3,
                    default_litellm_params={"user": "team-a", "num_retries": 0,
                                            "temperature": 0.2, "max_tokens": 9})
    try:
        # num_retries 0 from the defaults: the one 500 is not retried.
        with pytest.raises(UpstreamServerError):
            await router.aembedding(model="embed", input="hello")
        resp = await router.aembedding(model="embed", input="hello")
        await router.aembedding(model="embed", input="hello", user="own")
    finally:
        await router.aclose()
    assert fake_upstream.calls("openai") == 3
    assert resp.data[0].embedding == pytest.approx(embedding_for("hello"))
    defaulted, own = (r.body for r in fake_upstream.received[-2:])
    # The user default reaches the provider; chat's sampling defaults do not.
    assert defaulted == {"model": "text-embedding-3-small", "input": ["hello"],
                         "encoding_format": "float", "user": "team-a"}
    assert own["user"] == "own"


async def test_an_unknown_embeddings_model_is_told_only_the_groups_that_can_embed(
        fake_upstream: FakeUpstream) -> None:
    # A chat-only group (Claude) would fail anyway: suggesting it misleads.
    router = Router(model_list=[
        _entry(fake_upstream, "claude", provider="anthropic", model="claude-sonnet-4-20250514"),
        _entry(fake_upstream, "embed", model="text-embedding-3-small")])
    try:
        with pytest.raises(UnknownModel) as unknown:
            await router.aembedding(model="nope", input="hello")
    finally:
        await router.aclose()
    assert "embed" in unknown.value.message and "claude" not in unknown.value.message
