"""Known context windows: found in genai-prices' data as prices are, and used by
`build_catalog` only where the config gives no max_input_tokens."""

from __future__ import annotations

from typing import Any

from interlock.catalog import Deployment
from interlock.config import build_catalog, load_config
from interlock.costs.context_windows import known_context_window, listed_context_window


def test_a_known_model_s_window_by_provider_prefix_or_name() -> None:
    assert known_context_window("gpt-4o", "openai") == (128_000, "genai-prices openai/gpt-4o")
    assert known_context_window("openai/gpt-4o") == (128_000, "genai-prices openai/gpt-4o")
    # Our provider name mapped to genai-prices' ("gemini" -> "google").
    found = known_context_window("gemini-2.5-flash", "gemini")
    assert found is not None and found[1] == "genai-prices google/gemini-2.5-flash"
    assert known_context_window("my-own-model", "hosted_vllm") is None


def test_only_the_three_providers_own_models_take_a_window() -> None:
    # genai-prices gives DeepSeek's models 64,000, where DeepSeek's API takes
    # 131,072: with pre-call checks on, prompts the model takes were refused.
    assert known_context_window("deepseek-chat", "deepseek") is None
    # A name looked up alone found another host's model (DeepSeek's reasoner).
    assert known_context_window("deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
                                "together_ai") is None
    # An OpenAI-compatible server behind openai/ names a model OpenAI does not have.
    assert known_context_window("deepseek-reasoner", "openai") is None


def test_a_fine_tune_takes_the_window_of_its_base_model() -> None:
    tuned = Deployment("ft", "g", "openai", "ft:gpt-4o-mini:acme::abc123",
                       model_info={"base_model": "gpt-4o"})
    assert listed_context_window(tuned) == (128_000, "genai-prices openai/gpt-4o")
    unknown = Deployment("x", "g", "hosted_vllm", "my-own-model")
    assert listed_context_window(unknown) is None


def _catalog(*entries: dict[str, Any]) -> dict[str, Deployment]:
    config = load_config({"model_list": list(entries)},
                         environ={"OPENAI_API_KEY": "sk-t", "ANTHROPIC_API_KEY": "sk-ant-t",
                                  "GEMINI_API_KEY": "g-t"})
    catalog = build_catalog(config, context_windows=listed_context_window)
    return {d.group: d for d in catalog.deployments()}


def test_the_config_s_limit_wins_and_an_unknown_model_keeps_none() -> None:
    built = _catalog(
        {"model_name": "known", "litellm_params": {"model": "openai/gpt-4o"}},
        {"model_name": "params", "litellm_params": {"model": "openai/gpt-4o",
                                                    "max_input_tokens": 200_000}},
        {"model_name": "info", "litellm_params": {"model": "openai/gpt-4o"},
         "model_info": {"max_input_tokens": 64_000}},
        {"model_name": "local", "litellm_params": {"model": "hosted_vllm/my-own-model"}})
    limits = {group: (d.max_input_tokens, d.max_input_tokens_from)
              for group, d in built.items()}
    assert limits == {"known": (128_000, "genai-prices openai/gpt-4o"),
                      "params": (200_000, "litellm_params"),
                      "info": (64_000, "model_info"),
                      "local": (None, None)}


def test_an_api_base_at_the_provider_s_own_host_takes_its_window() -> None:
    # Before: any api_base took no window, though the OpenAI adapter's field
    # rules read api.openai.com (and its data-residency hosts) as OpenAI's own.
    def entry(group: str, model: str, api_base: str) -> dict[str, Any]:
        return {"model_name": group, "litellm_params": {"model": model, "api_base": api_base}}

    built = _catalog(
        entry("openai", "openai/gpt-4o", "https://api.openai.com/v1"),
        entry("eu", "openai/gpt-4o", "https://EU.api.openai.com/v1/"),
        entry("claude", "anthropic/claude-sonnet-4-5", "https://api.anthropic.com"),
        entry("gemini", "gemini/gemini-2.5-flash", "https://generativelanguage.googleapis.com"),
        # Not OpenAI's: a host merely ending in its name, or another server.
        entry("lookalike", "openai/gpt-4o", "https://api.openai.com.example.net/v1"),
        entry("proxy", "openai/gpt-4o", "https://llm-proxy.internal/v1"),
        entry("claude-proxy", "anthropic/claude-sonnet-4-5", "https://llm-proxy.internal"))
    windows = {group: d.max_input_tokens for group, d in built.items()}
    gemini = known_context_window("gemini-2.5-flash", "gemini")
    assert gemini is not None
    assert windows == {"openai": 128_000, "eu": 128_000, "claude": 200_000,
                       "gemini": gemini[0], "lookalike": None, "proxy": None,
                       "claude-proxy": None}
    assert all(built[g].max_input_tokens_listed for g in ("openai", "eu", "claude", "gemini"))


def test_without_a_lookup_only_the_config_s_limits_are_known() -> None:
    config = load_config({"model_list": [
        {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o"}}]},
        environ={"OPENAI_API_KEY": "sk-t"})
    [d] = build_catalog(config).deployments()
    assert (d.max_input_tokens, d.max_input_tokens_from) == (None, None)


def test_anthropic_s_1m_beta_header_raises_no_window() -> None:
    # Anthropic ended the context-1m-2025-08-07 beta on 2026-04-30: Sonnet 4.5
    # refuses prompts over 200,000 tokens with the header too, and the models
    # with a 1M window have it without one (and in the data).
    beta = {"anthropic-beta": "context-1m-2025-08-07"}
    built = _catalog(
        {"model_name": "beta", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                  "extra_headers": beta}},
        {"model_name": "param", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                   "anthropic_beta": "context-1m-2025-08-07"}},
        {"model_name": "native", "litellm_params": {"model": "anthropic/claude-sonnet-4-6"}})
    windows = {group: d.max_input_tokens for group, d in built.items()}
    assert windows == {"beta": 200_000, "param": 200_000, "native": 1_000_000}


def test_an_api_base_that_does_not_parse_takes_no_window_and_raises_nothing() -> None:
    # Review: the host check ran urlsplit unguarded at start-up, so such a base
    # URL crashed the gateway, `check` and the Router with a traceback, one of
    # them quoting the URL's password (Python's NFKC message repeats the netloc).
    bad = ["http://[::1", "https://u:hunter2pw@api.openai.com\uff03x/v1"]
    built = _catalog(*({"model_name": f"g{i}", "litellm_params": {
        "model": "openai/gpt-4o", "api_base": base}} for i, base in enumerate(bad)))
    assert [d.max_input_tokens for d in built.values()] == [None, None]
