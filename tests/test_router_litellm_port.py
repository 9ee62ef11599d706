"""What code ported from LiteLLM's Router reads besides answers: streams'
`_hidden_params`, and the Router's inspection helpers.

The providers are the fake upstream (the `provider_env` fixture in
tests/conftest.py).
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

from interlock.testing import FakeUpstream
from interlock.testing.script import Reply


def _model_list() -> list[dict[str, Any]]:
    return [
        {"model_name": "fast",
         "litellm_params": {"model": "openai/gpt-4o-mini",
                            "api_key": "os.environ/OPENAI_API_KEY", "rpm": 60,
                            "max_input_tokens": 128_000}},
        {"model_name": "fast",
         "litellm_params": {"model": "gemini/gemini-2.0-flash-lite",
                            "api_key": "os.environ/GEMINI_API_KEY"},
         "model_info": {"id": "flash", "max_input_tokens": 1_000_000}},
        {"model_name": "smart",
         "litellm_params": {"model": "anthropic/claude-sonnet-4-20250514",
                            "api_key": os.environ["ANTHROPIC_API_KEY"]}},
    ]


MESSAGES = [{"role": "user", "content": "hi"}]


async def test_a_stream_and_its_chunks_have_litellm_s_hidden_params(
        provider_env: FakeUpstream) -> None:
    # Neither had the attribute: ported `stream._hidden_params["model_id"]` raised.
    from interlock import Router

    provider_env.reply(Reply(text="one two three", chunk_chars=4))
    async with Router(model_list=_model_list()) as router:
        answer = await router.acompletion(model="smart", messages=MESSAGES)
        stream = await router.acompletion(model="smart", messages=MESSAGES, stream=True,
                                          stream_options={"include_usage": True})
        # Who answers is known once the stream has opened; the cost only at its end.
        opened = dict(stream._hidden_params)
        chunks = [c async for c in stream]
    assert opened.keys() == answer._hidden_params.keys()
    assert opened["model_id"] == opened["deployment"] == answer._hidden_params["model_id"]
    assert opened["custom_llm_provider"] == "anthropic"
    assert opened["api_base"] == answer._hidden_params["api_base"]
    assert opened["response_cost"] is None
    ended = stream._hidden_params
    assert ended["response_cost"] == float(Decimal(stream.interlock["cost_usd"])) > 0
    assert all(c._hidden_params["model_id"] == opened["model_id"] for c in chunks)
    # The usage chunk comes after the end, so it has the cost too.
    assert chunks[-1].usage is not None
    assert chunks[-1]._hidden_params["response_cost"] == ended["response_cost"]


def test_a_sync_stream_has_hidden_params_and_a_closed_one_its_cost(
        provider_env: FakeUpstream) -> None:
    from interlock import Router

    provider_env.reply(Reply(text="word " * 50, chunk_chars=5))
    router = Router(model_list=_model_list())
    try:
        read = router.completion(model="smart", messages=MESSAGES, stream=True)
        assert read._hidden_params["custom_llm_provider"] == "anthropic"
        for _ in read:
            pass
        left = router.completion(model="smart", messages=MESSAGES, stream=True)
        next(left)
        left.close()
    finally:
        router.close()
    assert read._hidden_params["response_cost"] == float(Decimal(read.interlock["cost_usd"]))
    assert read._hidden_params["model_id"] == read.interlock["deployment"]
    # A stream closed early still learns the cost of what it was sent.
    assert left._hidden_params["response_cost"] is not None


def test_get_model_list_resolves_a_model_group_alias(provider_env: FakeUpstream) -> None:
    # An alias that get_model_names() lists gave [] here; LiteLLM resolves it.
    from interlock import Router

    router = Router(model_list=_model_list(), model_group_alias={
        "gpt-4": "smart", "cheap": {"model": "fast", "hidden": True}})
    try:
        assert "gpt-4" in router.get_model_names()
        [smart] = router.get_model_list("smart")
        [aliased] = router.get_model_list(model_name="gpt-4")
        # The group's entry, under the name asked for, as LiteLLM lists it.
        assert aliased == {**smart, "model_name": "gpt-4"}
        assert router.get_model_ids("cheap") == router.get_model_ids("fast")
        assert router.get_model_list("nothing") == []
    finally:
        router.close()


def test_litellm_s_inspection_helpers(provider_env: FakeUpstream) -> None:
    # get_model_ids, get_deployment and get_model_group_info were AttributeErrors.
    from interlock import Router

    router = Router(model_list=_model_list(), model_group_alias={"gpt-4": "smart"})
    try:
        ids = router.get_model_ids()
        assert ids == [e["model_info"]["id"] for e in router.get_model_list()]
        assert router.get_model_ids("fast") == ["fast/openai/gpt-4o-mini", "flash"]
        found = router.get_deployment("flash")
        assert found is not None and found.litellm_params.model == "gemini/gemini-2.0-flash-lite"
        assert found == router.get_model_info("flash")
        assert router.get_deployment("no-such-id") is None
        fast = router.get_model_group_info("fast")
        smart = router.get_model_group_info("gpt-4")
        assert router.get_model_group_info("nothing") is None
        shown = json.dumps([router.get_deployment(i) for i in ids] + [fast, smart])
    finally:
        router.close()
    assert fast is not None and smart is not None
    assert fast.model_group == "fast" and fast.providers == ["gemini", "openai"]
    assert fast.rpm == 60 and fast.tpm is None  # only the gpt-4o-mini deployment sets one
    assert fast.max_input_tokens == 1_000_000  # the larger window of the two
    # No deployment of it says: Claude Sonnet 4's window as genai-prices knows it.
    assert smart.max_input_tokens == 200_000 and smart.max_output_tokens is None
    assert smart["model_group"] == "gpt-4" and smart.providers == ["anthropic"]
    # Prices come from the price table: the dearer of the group's two models.
    assert fast.input_cost_per_token is not None and fast.input_cost_per_token > 0
    assert smart.input_cost_per_token > fast.input_cost_per_token
    assert smart.output_cost_per_token > smart.input_cost_per_token
    # No key in anything they return, literal or from the environment.
    for key in ("sk-test-openai-library-key", "test-gemini-library-key",
                "sk-ant-test-library-key"):
        assert key not in shown
