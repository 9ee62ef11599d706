"""What code ported from LiteLLM's Router reads besides answers: streams'
`_hidden_params`, and the Router's inspection helpers.

The providers are the fake upstream (the `provider_env` fixture in
tests/conftest.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from interlock.testing import FakeUpstream
from interlock.testing.script import Reply


def _model_list() -> list[dict[str, Any]]:
    return [
        {"model_name": "fast",
         "litellm_params": {"model": "openai/gpt-4o-mini",
                            "api_key": "os.environ/OPENAI_API_KEY", "rpm": 60}},
        {"model_name": "fast",
         "litellm_params": {"model": "gemini/gemini-2.0-flash-lite",
                            "api_key": "os.environ/GEMINI_API_KEY"},
         "model_info": {"id": "flash"}},
        {"model_name": "smart",
         "litellm_params": {"model": "anthropic/claude-sonnet-4-20250514",
                            "api_key": "os.environ/ANTHROPIC_API_KEY"}},
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
