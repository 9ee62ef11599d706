"""A LiteLLM config ported unchanged names no max_input_tokens: the pre-call
checks and get_model_group_info take the model's context window from
genai-prices' data, as LiteLLM takes it from its model table; a config value
still wins, and a model the data does not know keeps no limit.

The providers are the fake upstream (the `provider_env` fixture in
tests/conftest.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock.testing import FakeUpstream

# ~187,500 prompt tokens by Interlock's estimate (characters / 4), ~150,000 by a
# real tokenizer: surely over gpt-4o's 128,000-token window, well inside
# gpt-4.1's million.
OVER_128K = [{"role": "user", "content": "word " * 150_000}]
# ~140,000 by the estimate, ~112,000 really: it fits gpt-4o, and goes there
# (the review found it refused when the estimate alone was held to the window).
UNDER_128K = [{"role": "user", "content": "word " * 112_000}]


def _entry(group: str, model: str, **params: Any) -> dict[str, Any]:
    return {"model_name": group,
            "litellm_params": {"model": model, "api_key": "os.environ/OPENAI_API_KEY",
                               **params}}


async def test_a_prompt_over_gpt_4o_s_window_skips_it_for_a_larger_one(
        provider_env: FakeUpstream) -> None:
    # Before: nothing was known of gpt-4o's window, so the call went to it.
    from interlock import Router

    model_list = [_entry("long", "openai/gpt-4o", order=1),
                  _entry("long", "openai/gpt-4.1", order=2)]
    async with Router(model_list=model_list, enable_pre_call_checks=True) as router:
        answer = await router.acompletion(model="long", messages=OVER_128K)
    assert answer.interlock["deployment"] == "long/openai/gpt-4.1"
    assert [(r.provider, r.model) for r in provider_env.received] == [("openai", "gpt-4.1")]


async def test_a_prompt_no_deployment_fits_is_refused_without_a_call(
        provider_env: FakeUpstream) -> None:
    from interlock import ContextWindowExceeded, Router

    async with Router(model_list=[_entry("chat", "openai/gpt-4o")],
                      enable_pre_call_checks=True) as router:
        with pytest.raises(ContextWindowExceeded,
                           match=r"window of 128000 tokens \(from genai-prices openai/gpt-4o; "
                                 "set max_input_tokens"):
            await router.acompletion(model="chat", messages=OVER_128K)
        # A prompt that fits still goes out, a long one too.
        await router.acompletion(model="chat", messages=[{"role": "user", "content": "hi"}])
        await router.acompletion(model="chat", messages=UNDER_128K)
    assert len(provider_env.received) == 2


async def test_an_api_base_of_its_own_takes_no_known_window(
        provider_env: FakeUpstream) -> None:
    # A server behind openai/ with its own api_base may answer to "gpt-4" with a
    # model of its own (LocalAI does): the table's 8,192 is not its window.
    from interlock import Router

    entry = _entry("local", "openai/gpt-4", api_base=provider_env.url + "/openai-compatible/v1")
    async with Router(model_list=[entry], enable_pre_call_checks=True) as router:
        assert router.get_model_group_info("local")["max_input_tokens"] is None
        await router.acompletion(model="local", messages=[{"role": "user",
                                                            "content": "word " * 20_000}])
    assert len(provider_env.received) == 1


async def test_the_config_s_max_input_tokens_wins_over_the_known_window(
        provider_env: FakeUpstream) -> None:
    # The first deployment has only the known 128,000; the second says 200,000
    # itself, so the prompt goes to it, not past it to gpt-4.1.
    from interlock import Router

    model_list = [_entry("long", "openai/gpt-4o", order=1),
                  _entry("long", "openai/gpt-4o-2024-11-20", order=2,
                         max_input_tokens=200_000),
                  _entry("long", "openai/gpt-4.1", order=3)]
    async with Router(model_list=model_list, enable_pre_call_checks=True) as router:
        answer = await router.acompletion(model="long", messages=OVER_128K)
    assert answer.interlock["deployment"] == "long/openai/gpt-4o-2024-11-20"


async def test_a_model_the_data_does_not_know_keeps_no_limit(
        provider_env: FakeUpstream) -> None:
    from interlock import Router

    local = {"model_name": "local",
             "litellm_params": {"model": "hosted_vllm/my-own-model",
                                "api_base": provider_env.base_url("openai-compatible")}}
    async with Router(model_list=[local], enable_pre_call_checks=True) as router:
        await router.acompletion(model="local", messages=OVER_128K)
        info = router.get_model_group_info("local")
    assert [r.model for r in provider_env.received] == ["my-own-model"]
    assert info is not None and info.max_input_tokens is None


def test_get_model_group_info_gives_the_known_window(provider_env: FakeUpstream) -> None:
    # Before: None for a group whose config named no limit; LiteLLM says 128000.
    from interlock import Router

    router = Router(model_list=[_entry("chat", "openai/gpt-4o"),
                                _entry("capped", "openai/gpt-4o", max_input_tokens=50_000)])
    try:
        chat = router.get_model_group_info("chat")
        capped = router.get_model_group_info("capped")
    finally:
        router.close()
    assert chat is not None and chat.max_input_tokens == 128_000
    # genai-prices has no output limits: that stays the config's to say.
    assert chat.max_output_tokens is None
    assert capped is not None and capped.max_input_tokens == 50_000


async def test_an_embedding_input_is_held_to_its_model_s_known_window(
        provider_env: FakeUpstream) -> None:
    # text-embedding-3-small takes 8,191 tokens; a chunk cut at ~6,500 real tokens
    # (~8,100 by the estimate, the review's case) goes out, one surely over does not.
    from interlock import ContextWindowExceeded, Router

    async with Router(model_list=[_entry("embed", "openai/text-embedding-3-small")],
                      enable_pre_call_checks=True) as router:
        assert router.get_model_group_info("embed")["max_input_tokens"] == 8192
        await router.aembedding(model="embed", input=["word " * 6_500])
        with pytest.raises(ContextWindowExceeded, match="window of 8192 tokens"):
            await router.aembedding(model="embed", input=["word " * 12_000])
    assert len(provider_env.received) == 1
