"""Config loading: LiteLLM-shaped files, key resolution, the error report, the catalog."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from interlock.catalog import Secret
from interlock.config import (
    InterlockConfig,
    build_catalog,
    config_from_router_kwargs,
    load_config,
)
from interlock.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ANTHROPIC_KEY = "sk-ant-api03-THISisAfakeKEYvalue0123456789"
GEMINI_KEY = "AIzaSyFAKEgeminiKEY0123456789abcdef"
OPENAI_KEY = "sk-proj-FAKEopenaiKEY0123456789"
MASTER_KEY = "sk-master-FAKE-0123456789"
REDIS_PASSWORD = "redis-FAKE-password-42"
ENV = {
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    "GEMINI_API_KEY": GEMINI_KEY,
    "OPENAI_API_KEY": OPENAI_KEY,
    "INTERLOCK_MASTER_KEY": MASTER_KEY,
}
ALL_SECRETS = (ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, MASTER_KEY, REDIS_PASSWORD)

# A proxy config as a LiteLLM user writes it, with LiteLLM-only keys mixed in.
LITELLM_YAML = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 500
      tpm: 90000
      max_retries: 2            # LiteLLM's own per-deployment setting
    model_info:
      id: gpt-4o-main
      mode: chat
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-20250514
      api_key: os.environ/ANTHROPIC_API_KEY
      timeout: 120
      stream_timeout: 30
      input_cost_per_token: 0.000003
      output_cost_per_token: 0.000015
      max_tokens: 4096
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-20250514
      api_base: https://anthropic-proxy.internal.example/
      api_key: os.environ/ANTHROPIC_API_KEY
      weight: 2
      order: 2
  - model_name: flash
    litellm_params:
      model: gemini/gemini-2.0-flash-lite
      api_key: os.environ/GEMINI_API_KEY
  - model_name: local
    litellm_params:
      model: ollama/llama3.1:8b
      api_base: http://127.0.0.1:11434/v1

litellm_settings:
  drop_params: true
  num_retries: 3
  request_timeout: 90
  set_verbose: false
  success_callback: ["langfuse"]
  context_window_fallbacks: [{"gpt-4o": ["claude"]}]

router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  allowed_fails: 3
  cooldown_time: 30
  enable_pre_call_checks: true
  fallbacks: [{"gpt-4o": ["claude"]}, {"claude": ["flash"]}]
  redis_host: os.environ/REDIS_HOST
  redis_port: 6379
  redis_password: os.environ/REDIS_PASSWORD

general_settings:
  master_key: os.environ/INTERLOCK_MASTER_KEY
  database_url: os.environ/DATABASE_URL

environment_variables:
  LANGFUSE_PUBLIC_KEY: pk-lf-123
"""


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _entry(model: str = "anthropic/claude-sonnet-4-20250514", group: str = "g",
           **params: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {"model": model, **params}}


def _error(source: Any, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(source, environ=ENV if environ is None else environ)
    return str(info.value)


def _assert_no_secret(text: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text


# ---------------------------------------------------------------- LiteLLM files


def test_litellm_shaped_yaml_loads_unchanged(tmp_path: Path) -> None:
    env = {**ENV, "REDIS_HOST": "127.0.0.1", "REDIS_PASSWORD": REDIS_PASSWORD}
    config = load_config(_write(tmp_path, LITELLM_YAML), environ=env)

    assert config.group_names == ["gpt-4o", "claude", "flash", "local"]
    rs = config.router_settings
    assert (rs.num_retries, rs.allowed_fails, rs.cooldown_time) == (2, 3, 30.0)
    assert rs.enable_pre_call_checks is True
    assert rs.redis_host == "127.0.0.1" and rs.redis_port == 6379
    assert rs.redis_password == REDIS_PASSWORD
    # litellm_settings fold in where router_settings says nothing.
    assert rs.timeout == 90.0
    assert rs.context_window_fallbacks == [{"gpt-4o": ["claude"]}]
    assert config.general_settings.master_key is not None
    assert config.general_settings.master_key.get_secret_value() == MASTER_KEY
    assert config.source == tmp_path / "config.yaml"

    warnings = "\n".join(config.warnings)
    assert "litellm_settings.num_retries: overridden by router_settings.num_retries" in warnings
    assert "litellm_settings.success_callback" in warnings
    assert "general_settings.database_url" in warnings
    assert "environment_variables: ignored" in warnings
    # LiteLLM's per-deployment retries do nothing here, and the warning says so.
    assert ("litellm_params.max_retries: accepted for LiteLLM compatibility; it has no "
            "effect here: retries are router_settings.num_retries") in warnings

    catalog = build_catalog(config)
    gpt = catalog.deployment("gpt-4o-main")
    assert (gpt.provider, gpt.model, gpt.rpm, gpt.tpm) == ("openai", "gpt-4o", 500, 90000)
    assert gpt.api_key == Secret(OPENAI_KEY) and gpt.available
    # No api_base: OpenAI's own API, whose parameter rules it follows.
    assert gpt.extra == {"max_retries": 2, "params_like": "openai"}
    assert gpt.model_info == {"id": "gpt-4o-main", "mode": "chat"}
    assert gpt.drop_params is True  # from litellm_settings

    first, second = catalog.group("claude").deployments
    assert first.name == "claude/anthropic/claude-sonnet-4-20250514"
    assert second.name == "claude/anthropic/claude-sonnet-4-20250514#2"
    assert first.input_cost_per_token == Decimal("0.000003")
    assert first.output_cost_per_token == Decimal("0.000015")
    assert (first.timeout, first.stream_timeout, first.max_output_tokens) == (120.0, 30.0, 4096)
    assert first.api_base == "https://api.anthropic.com"
    assert second.api_base == "https://anthropic-proxy.internal.example"
    assert (second.weight, second.order) == (2.0, 2)

    local = catalog.group("local").deployments[0]
    assert local.provider == "ollama" and local.model == "llama3.1:8b"
    assert local.api_key is None and local.available  # a keyless provider


def test_dict_form_and_params_alias() -> None:
    config = load_config(
        {"model_list": [{"model_name": "budget",
                         "params": {"model": "gemini/gemini-2.0-flash-lite", "rpm": 60}}]},
        environ=ENV)
    deployment = build_catalog(config).group("budget").deployments[0]
    assert deployment.provider == "gemini" and deployment.rpm == 60
    assert deployment.key() == GEMINI_KEY  # the provider's default variable


def test_max_parallel_requests_per_deployment_or_the_router_s_default() -> None:
    # LiteLLM's names: a deployment's own cap wins over default_max_parallel_requests.
    config = load_config({
        "model_list": [
            {"model_name": "g", "litellm_params": {"model": "openai/a", "api_key": "k",
                                                   "max_parallel_requests": 4}},
            {"model_name": "g", "litellm_params": {"model": "openai/b", "api_key": "k"}}],
        "router_settings": {"default_max_parallel_requests": 10}}, environ=ENV)
    assert config.warnings == []
    caps = [d.max_parallel_requests for d in build_catalog(config).deployments()]
    assert caps == [4, 10]
    uncapped = load_config({"model_list": [
        {"model_name": "g", "litellm_params": {"model": "openai/a", "api_key": "k"}}]},
        environ=ENV)
    assert [d.max_parallel_requests for d in build_catalog(uncapped).deployments()] == [None]
    with pytest.raises(ConfigError, match="max_parallel_requests"):
        load_config({"model_list": [{"model_name": "g", "litellm_params": {
            "model": "openai/a", "api_key": "k", "max_parallel_requests": 0}}]}, environ=ENV)


def test_both_params_and_litellm_params_is_an_error() -> None:
    entry = {"model_name": "g", "params": {"model": "openai/gpt-4o"},
             "litellm_params": {"model": "openai/gpt-4o"}}
    message = _error({"model_list": [entry]})
    assert "model_list[0]: both litellm_params and params" in message


def test_empty_sections_read_as_absent(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        model_list:
          - model_name: g
            litellm_params: {model: openai/gpt-4o}
        litellm_settings:
          # everything here commented out
        router_settings:
        """)
    config = load_config(path, environ=ENV)
    assert config.router_settings.num_retries == 2


# ---------------------------------------------------------------- keys


def test_env_var_key_present() -> None:
    config = load_config({"model_list": [_entry(api_key="os.environ/MY_CLAUDE_KEY")]},
                         environ={"MY_CLAUDE_KEY": ANTHROPIC_KEY})
    deployment = next(build_catalog(config).deployments())
    assert deployment.key() == ANTHROPIC_KEY and deployment.available
    assert config.warnings == []


def test_missing_env_var_marks_unavailable_and_warns_without_the_value() -> None:
    # The variable that *is* set holds a key; it must not show up anywhere.
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    config = load_config({"model_list": [_entry(api_key="os.environ/TEAM_CLAUDE_KEY")]},
                         environ=env)
    assert len(config.warnings) == 1
    assert "TEAM_CLAUDE_KEY" in config.warnings[0]
    assert "unavailable" in config.warnings[0]
    deployment = next(build_catalog(config).deployments())
    assert not deployment.available and deployment.api_key is None
    assert deployment.unavailable_reason is not None
    assert "TEAM_CLAUDE_KEY" in deployment.unavailable_reason
    _assert_no_secret(repr(deployment) + repr(config) + "\n".join(config.warnings))


def test_default_provider_key_env() -> None:
    # Gemini takes GEMINI_API_KEY or GOOGLE_API_KEY when api_key is absent.
    entries = [_entry("gemini/gemini-2.5-pro")]
    found = load_config({"model_list": entries}, environ={"GOOGLE_API_KEY": GEMINI_KEY})
    assert next(build_catalog(found).deployments()).key() == GEMINI_KEY

    missing = load_config({"model_list": entries}, environ={})
    reason = next(build_catalog(missing).deployments()).unavailable_reason
    assert reason is not None and "GEMINI_API_KEY" in reason and "GOOGLE_API_KEY" in reason
    assert "GEMINI_API_KEY" in missing.warnings[0]


def test_keyless_provider_needs_no_key() -> None:
    config = load_config({"model_list": [_entry("hosted_vllm/qwen2.5-7b")]}, environ={})
    deployment = next(build_catalog(config).deployments())
    assert deployment.available and deployment.api_key is None
    assert deployment.api_base == "http://localhost:8000/v1"
    assert config.warnings == []


def test_literal_key_and_env_refs_in_other_params() -> None:
    entry = _entry("openai/gpt-4o", api_key=OPENAI_KEY, api_base="os.environ/GW_BASE",
                   api_version="2024-10-01",
                   extra_headers={"X-Team": "os.environ/TEAM"},
                   aws_secret_access_key="os.environ/AWS_SECRET")
    env = {"GW_BASE": "http://127.0.0.1:9999/v1/", "TEAM": "search", "AWS_SECRET": "s3cr3t-aws"}
    config = load_config({"model_list": [entry]}, environ=env)
    deployment = next(build_catalog(config).deployments())
    assert deployment.key() == OPENAI_KEY
    assert deployment.api_base == "http://127.0.0.1:9999/v1"
    assert deployment.extra["api_version"] == "2024-10-01"
    assert deployment.extra["extra_headers"] == {"X-Team": "search"}
    assert deployment.extra["aws_secret_access_key"] == Secret("s3cr3t-aws")
    for text in (repr(deployment), repr(config), str(config), config.model_dump_json()):
        assert OPENAI_KEY not in text and "s3cr3t-aws" not in text

    unset = load_config({"model_list": [entry]}, environ={})
    reason = next(build_catalog(unset).deployments()).unavailable_reason or ""
    assert "GW_BASE" in reason and "TEAM" in reason and "AWS_SECRET" in reason


def test_base_url_env_and_build_environ() -> None:
    config = load_config({"model_list": [_entry()]}, environ=ENV)
    catalog = build_catalog(config, environ={**ENV, "ANTHROPIC_BASE_URL": "http://127.0.0.1:1/"})
    assert next(catalog.deployments()).api_base == "http://127.0.0.1:1"


def test_master_key_from_environment_when_config_has_none() -> None:
    config = load_config({"model_list": [_entry()]}, environ=ENV)
    assert config.general_settings.master_key is not None
    assert config.general_settings.master_key.get_secret_value() == MASTER_KEY
    none = load_config({"model_list": [_entry()]}, environ={})
    assert none.general_settings.master_key is None


def test_environ_is_read_at_load_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATE_KEY", ANTHROPIC_KEY)
    config = load_config({"model_list": [_entry(api_key="os.environ/LATE_KEY")]})
    assert next(build_catalog(config).deployments()).key() == ANTHROPIC_KEY


def test_router_settings_env_ref_unset_is_left_out_with_warning() -> None:
    config = load_config({"model_list": [_entry()],
                          "router_settings": {"redis_url": "os.environ/REDIS_URL"}},
                         environ=ENV)
    assert config.router_settings.redis_url is None
    assert any("REDIS_URL" in w for w in config.warnings)


# ---------------------------------------------------------------- the error report


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["model_list"][0]["litellm_params"].update(rpm="lots"),
         ["model_list[0].litellm_params.rpm", "'lots'", "expected a valid integer"]),
        (lambda d: d["model_list"][0]["litellm_params"].update(tpm=0),
         ["model_list[0].litellm_params.tpm", "0", "greater than or equal to 1"]),
        (lambda d: d["model_list"][0]["litellm_params"].update(timeout=-1),
         ["model_list[0].litellm_params.timeout", "-1", "greater than 0"]),
        (lambda d: d["model_list"][0]["litellm_params"].pop("model"),
         ["model_list[0].litellm_params.model", "missing"]),
        (lambda d: d["model_list"][0].pop("model_name"),
         ["model_list[0].model_name", "missing"]),
        (lambda d: d.update(model_list=[]),
         ["model_list", "got []", "at least 1"]),
        (lambda d: d.pop("model_list"), ["model_list", "missing"]),
        (lambda d: d.update(router_settings={"num_retries": "three"}),
         ["router_settings.num_retries", "'three'", "expected a valid integer"]),
        (lambda d: d.update(router_settings={"routing_strategy": "fastest"}),
         ["router_settings.routing_strategy", "'fastest'", "'simple-shuffle'"]),
        (lambda d: d.update(router_settings={"fallbacks": "claude"}),
         ["router_settings.fallbacks", "'claude'", "list", "dictionary"]),
        (lambda d: d.update(general_settings={"port": 70000}),
         ["general_settings.port", "70000", "less than or equal to 65535"]),
        (lambda d: d.update(general_settings={"allow_unauthenticated": "sometimes"}),
         ["general_settings.allow_unauthenticated", "'sometimes'", "valid boolean"]),
        (lambda d: d.update(ledger={"batch_size": 0}),
         ["ledger.batch_size", "0", "greater than or equal to 1"]),
        (lambda d: d.update(prices={"openai/gpt-4o": {"input_cost_per_token": "cheap"}}),
         ["prices.openai/gpt-4o.input_cost_per_token", "'cheap'", "decimal"]),
        (lambda d: d.update(budgets=[{"model_group": "g"}]),
         ["budgets[0].max_usd", "missing"]),
        (lambda d: d.update(budgets=[{"model_group": "nope", "max_usd": 5}]),
         ["budgets[0].model_group", "'nope'", "expected one of: g"]),
        (lambda d: d.update(router_settings={"fallbacks": [{"g": ["missing-group"]}]}),
         ["router_settings.fallbacks[0].g[0]", "'missing-group'", "expected a model group",
          "known: g"]),
        (lambda d: d.update(router_settings={"fallbacks": {"typo-group": ["g"]}}),
         ["router_settings.fallbacks.typo-group", "expected a model group"]),
        (lambda d: d.update(litellm_settings={"default_fallbacks": ["gone"]}),
         ["litellm_settings.default_fallbacks[0]", "'gone'"]),
        (lambda d: d.update(routing={"default_group": "cheap"}),
         ["routing.default_group", "'cheap'", "expected a model group"]),
        (lambda d: d.update(general_settings={"allow_unauthenticated": True,
                                              "host": "0.0.0.0"}),
         ["general_settings.host", "'0.0.0.0'", "loopback"]),
        (lambda d: d["model_list"][0]["litellm_params"].update(input_cost_per_token=1,
                                                               input_cost_per_million=2),
         ["model_list[0].litellm_params.input_cost_per_million", "not both"]),
    ],
)
def test_bad_input_names_path_value_and_expectation(mutate: Any, expected: list[str]) -> None:
    data: dict[str, Any] = {"model_list": [_entry(api_key=ANTHROPIC_KEY)]}
    mutate(data)
    message = _error(data)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    assert "1 problem" in message
    _assert_no_secret(message)


def test_every_problem_is_listed_at_once() -> None:
    data = {
        "model_list": [
            _entry(rpm="x"),
            {"model_name": "h", "litellm_params": {"model": "openai/gpt-4o", "tpm": -5}},
            {"litellm_params": {"model": "gemini/gemini-2.5-pro"}},
        ],
        "router_settings": {"num_retries": -1, "cooldown_tme": 3},
        "ledgr": {},
    }
    message = _error(data)
    assert "6 problems" in message
    for path in ("model_list[0].litellm_params.rpm", "model_list[1].litellm_params.tpm",
                 "model_list[2].model_name", "router_settings.num_retries",
                 "router_settings.cooldown_tme", "ledgr"):
        assert path in message


@pytest.mark.parametrize(
    ("data", "path", "suggestion"),
    [
        ({"model_list": [_entry()], "router_setings": {}}, "router_setings",
         "did you mean 'router_settings'?"),
        ({"model_list": [_entry()], "model_lists": []}, "model_lists",
         "did you mean 'model_list'?"),
        ({"model_list": [_entry(api_kye="os.environ/X")]}, "model_list[0].litellm_params.api_kye",
         "did you mean 'api_key'?"),
        ({"model_list": [_entry(rmp=60)]}, "model_list[0].litellm_params.rmp",
         "did you mean 'rpm'?"),
        ({"model_list": [_entry(max_input_token=1000)]},
         "model_list[0].litellm_params.max_input_token", "did you mean 'max_input_tokens'?"),
        ({"model_list": [_entry()], "router_settings": {"num_retires": 2}},
         "router_settings.num_retires", "did you mean 'num_retries'?"),
        ({"model_list": [_entry()], "router_settings": {"fallback": []}},
         "router_settings.fallback", "did you mean 'fallbacks'?"),
        ({"model_list": [_entry()], "general_settings": {"master_kye": "x"}},
         "general_settings.master_kye", "did you mean 'master_key'?"),
        ({"model_list": [{"model_nme": "g", "params": {"model": "openai/gpt-4o"}}]},
         "model_list[0].model_nme", "did you mean 'model_name'?"),
        ({"model_list": [_entry()], "ledger": {"databse": "x.sqlite"}},
         "ledger.databse", "did you mean 'database'?"),
        ({"model_list": [_entry()],
          "router_settings": {"retry_policy": {"RateLimitErrorRetrie": 1}}},
         "router_settings.retry_policy.RateLimitErrorRetrie",
         "did you mean 'RateLimitErrorRetries'?"),
    ],
)
def test_unknown_key_did_you_mean(data: dict[str, Any], path: str, suggestion: str) -> None:
    message = _error(data)
    assert f"{path}: unknown key; {suggestion}" in message


def test_unknown_key_without_close_match_lists_the_valid_keys() -> None:
    message = _error({"model_list": [_entry()], "ledger": {"zzz": 1}})
    assert "ledger.zzz: unknown key; expected one of: database, log_payloads" in message


def test_unknown_litellm_param_far_from_any_field_passes_through_with_warning() -> None:
    config = load_config({"model_list": [_entry(vendor_region="eu")]}, environ=ENV)
    assert any("vendor_region" in w and "provider-specific" in w for w in config.warnings)
    assert next(build_catalog(config).deployments()).extra == {"vendor_region": "eu"}


def test_the_openai_adapter_s_settings_load_quietly_into_the_deployment() -> None:
    settings = {"params_like": "openai", "allowed_openai_params": ["verbosity"],
                "max_tokens_param": "max_completion_tokens"}
    config = load_config({"model_list": [_entry(
        "openai/gpt-4o-mini", api_base="https://oai.example.com/v1", **settings)]},
        environ=ENV)
    assert config.warnings == []
    assert next(build_catalog(config).deployments()).extra == settings


@pytest.mark.parametrize(("params", "rules"), [
    # No api_base: OpenAI itself, wherever OPENAI_BASE_URL sends it (a proxy, a
    # test double), so its rules must not hang on the URL the variable gives.
    ({}, "openai"),
    ({"model": "gpt-4o-mini"}, "openai"),
    ({"params_like": "hosted_vllm"}, "hosted_vllm"),
    # An api_base of one's own is a server that cannot be named.
    ({"api_base": "https://oai.example.com/v1"}, None),
])
def test_an_openai_deployment_without_api_base_follows_openai_s_rules(
        params: dict[str, Any], rules: str | None) -> None:
    env = {**ENV, "OPENAI_BASE_URL": "http://127.0.0.1:8900/openai/v1"}
    config = load_config({"model_list": [_entry(**{"model": "openai/gpt-4o-mini", **params})]},
                         environ=env)
    dep = next(build_catalog(config).deployments())
    assert dep.extra.get("params_like") == rules
    assert dep.api_base == params.get("api_base", env["OPENAI_BASE_URL"])


@pytest.mark.parametrize("settings", [
    {"allowed_openai_params": ["logprobs"]},
    {"params_like": "openai", "allowed_openai_params": ["logprobs"]},
])
@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-20250514", "gemini/gemini-2.5-pro"])
def test_openai_adapter_settings_elsewhere_load_with_a_warning(
        settings: dict[str, Any], model: str) -> None:
    # LiteLLM users write allowed_openai_params on Claude deployments; no adapter
    # but the OpenAI one reads it, and a setting that does nothing says so.
    config = load_config({"model_list": [_entry(model, **settings)]}, environ=ENV)
    assert len(config.warnings) == len(settings)
    for key, warning in zip(settings, config.warnings, strict=True):
        assert warning.startswith(f"model_list[0].litellm_params.{key} (g/{model}): ignored")
        assert "only to OpenAI-compatible deployments" in warning
        assert f"{model.split('/')[0]}/ is not one" in warning


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("params_like", "vllm", "expected one of deepseek, groq, hosted_vllm"),
    ("params_like", ["openai"], "expected a valid string"),
    ("allowed_openai_params", "verbosity", "expected a list of parameter names"),
    ("allowed_openai_params", ["verbosity", 3], "expected a list of parameter names"),
    ("max_tokens_param", "max_output", "expected 'max_tokens' or 'max_completion_tokens'"),
])
def test_a_bad_openai_adapter_setting_fails_the_load(setting: str, value: Any,
                                                     says: str) -> None:
    message = _error({"model_list": [_entry("openai/gpt-4o-mini", **{setting: value})]})
    assert f"model_list[0].litellm_params.{setting}: got " in message and says in message


def test_params_like_vllm_is_pointed_at_hosted_vllm() -> None:
    message = _error({"model_list": [_entry("openai/qwen", params_like="vllm")]})
    assert "did you mean 'hosted_vllm'?" in message


def test_unknown_provider_names_known_ones_and_the_form() -> None:
    # A bare name whose provider is not beyond doubt (claude-, gpt-, ... are read
    # as LiteLLM reads them: test_a_bare_model_name_with_a_known_prefix_...).
    message = _error({"model_list": [_entry("llama-3-70b")]})
    assert "model_list[0].litellm_params.model: got 'llama-3-70b'" in message
    assert "'<provider>/<model-id>'" in message
    for provider in ("anthropic", "gemini", "openai", "openrouter", "ollama"):
        assert provider in message

    message = _error({"model_list": [_entry("antropic/claude-3-opus")]})
    assert "did you mean 'anthropic'?" in message
    message = _error({"model_list": [_entry("azure/gpt-4o")]})
    assert "got 'azure/gpt-4o'" in message


def test_custom_llm_provider() -> None:
    config = load_config({"model_list": [_entry("claude-sonnet-4-20250514",
                                                custom_llm_provider="anthropic")]}, environ=ENV)
    deployment = next(build_catalog(config).deployments())
    assert (deployment.provider, deployment.model) == ("anthropic", "claude-sonnet-4-20250514")


def test_secret_values_never_in_errors() -> None:
    data = {
        "model_list": [
            _entry(api_key=12345678901234),  # wrong type: the value must still be hidden
            _entry(api_kye=ANTHROPIC_KEY),  # a typo'd key name holding a key
            _entry(rpm=OPENAI_KEY),  # a key pasted into the wrong field
        ],
        "general_settings": {"master_key": ["not", "a", "string", MASTER_KEY]},
    }
    message = _error(data)
    assert "model_list[0].litellm_params.api_key: got '********'" in message
    assert "12345678901234" not in message
    assert "general_settings.master_key: got '********'" in message
    _assert_no_secret(message)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        model_list:
          - model_name: g
            litellm_params:
              model: openai/gpt-4o
             api_key: [unclosed
        """, name="broken.yaml")
    message = _error(path)
    assert "broken.yaml" in message
    assert "line 5" in message


def test_problems_in_a_file_carry_their_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        model_list:
          - model_name: g
            litellm_params:
              model: openai/gpt-4o
              rpm: lots
          - model_name: h
            litellm_params:
              api_key: os.environ/X
        router_settings:
          num_retires: 3
        """)
    message = _error(path)
    assert "model_list[0].litellm_params.rpm: got 'lots'" in message
    assert "integer (line 5)" in message
    # A missing key points at the mapping it is missing from.
    assert "model_list[1].litellm_params.model: missing; this key is required (line 7)" in message
    assert "did you mean 'num_retries'? (line 10)" in message


def test_duplicate_yaml_key_is_reported_with_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        model_list:
          - model_name: g
            litellm_params:
              model: openai/gpt-4o
              rpm: 10
              rpm: 20
        """)
    message = _error(path)
    assert "line 6" in message and "'rpm' appears twice" in message


def test_missing_file_empty_file_and_wrong_top_level(tmp_path: Path) -> None:
    assert "Cannot read the config file" in _error(tmp_path / "absent.yaml")
    assert "is empty" in _error(_write(tmp_path, "# nothing\n"))
    assert "expected a mapping" in _error(_write(tmp_path, "- a\n- b\n"))


# ---------------------------------------------------------------- cross-checks


def test_duplicate_deployment_ids() -> None:
    entries = [_entry(), _entry("openai/gpt-4o")]
    for e in entries:
        e["model_info"] = {"id": "same"}
    message = _error({"model_list": entries})
    assert "model_list[1].model_info.id: got 'same'; expected a unique id (model_list[0]" \
        in message


def test_routing_references_are_checked() -> None:
    routing = {
        "routers": {"tiers": {"type": "rules", "default": "g",
                              "rules": [{"name": "code", "group": "hq"}]},
                    "mf": {"type": "learned", "checkpoint_path": "models/mf"}},
        "groups": {"auto": {"router": "mf", "members": ["g", "gg"]}},
    }
    message = _error({"model_list": [_entry()], "routing": routing})
    assert "routing.routers.tiers.rules[0].group: got 'hq'" in message
    assert "routing.groups.auto.members[1]: got 'gg'; expected a model group" in message
    assert "did you mean 'g'?" in message


def test_routed_group_may_be_a_fallback_target() -> None:
    data = {
        "model_list": [_entry(group="hq"), _entry("gemini/gemini-2.0-flash-lite", group="lite")],
        "routing": {"routers": {"tiers": {"type": "rules", "rules": [], "default": "lite"}},
                    "groups": {"auto": {"router": "tiers"}}},
        "router_settings": {"fallbacks": [{"hq": ["auto"]}]},
    }
    config = load_config(data, environ=ENV)
    assert config.router_settings.fallbacks == [{"hq": ["auto"]}]


# ---------------------------------------------------------------- naming and prices


def test_deployment_names_ids_and_duplicates() -> None:
    entries = [
        _entry(group="a"),
        _entry(group="a"),
        _entry(group="a"),
        {**_entry("openai/gpt-4o", group="b"), "model_info": {"id": "b-main"}},
        {**_entry("openrouter/anthropic/claude-3.5-sonnet", group="c"), "model_info": {"id": 7}},
    ]
    config = load_config({"model_list": entries}, environ=ENV)
    base = "a/anthropic/claude-sonnet-4-20250514"
    assert config.deployment_names() == [base, f"{base}#2", f"{base}#3", "b-main", "7"]
    catalog = build_catalog(config)
    assert [d.name for d in catalog.deployments()] == config.deployment_names()
    routed = catalog.deployment("7")
    assert (routed.provider, routed.model) == ("openrouter", "anthropic/claude-3.5-sonnet")


def test_generated_name_never_collides_with_an_explicit_id() -> None:
    base = "a/anthropic/claude-sonnet-4-20250514"
    entries = [{**_entry(group="x"), "model_info": {"id": base}}, _entry(group="a")]
    names = load_config({"model_list": entries}, environ=ENV).deployment_names()
    assert names == [base, f"{base}#2"]


def test_per_million_prices_and_zero_price() -> None:
    entries = [
        _entry(input_cost_per_million=3, output_cost_per_million="15.5",
               cache_read_input_token_cost=0.0000003),
        _entry("ollama/llama3", input_cost_per_token=0, output_cost_per_token=0),
        {**_entry("openai/gpt-4o"),
         "model_info": {"input_cost_per_token": 0.0000025, "max_input_tokens": 128000}},
    ]
    catalog = build_catalog(load_config({"model_list": entries}, environ=ENV))
    claude, local, gpt = catalog.deployments()
    assert claude.input_cost_per_token == Decimal("0.000003")
    assert claude.output_cost_per_token == Decimal("0.0000155")
    assert claude.cached_input_cost_per_token == Decimal("3E-7")
    assert isinstance(claude.input_cost_per_token, Decimal)
    assert local.input_cost_per_token == Decimal(0)  # free, not "unknown"
    assert gpt.input_cost_per_token == Decimal("0.0000025")
    assert gpt.max_input_tokens == 128000


# ---------------------------------------------------------------- Router kwargs


def test_config_from_router_kwargs() -> None:
    model_list = [_entry(group="high-quality"),
                  _entry("gemini/gemini-2.5-pro", group="cost-optimized")]
    config = config_from_router_kwargs(
        model_list, environ=ENV, num_retries=3, timeout=30,
        fallbacks=[{"high-quality": ["cost-optimized"]}], enable_pre_call_checks=True,
        cooldown_time=30, allowed_fails=2, redis_url=None, routing_strategy="least-busy")
    rs = config.router_settings
    assert (rs.num_retries, rs.timeout, rs.cooldown_time, rs.allowed_fails) == (3, 30.0, 30.0, 2)
    assert rs.enable_pre_call_checks and rs.routing_strategy == "least-busy"
    assert rs.redis_url is None
    assert config.group_names == ["high-quality", "cost-optimized"]


def test_router_kwargs_unknown_and_bad_values() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_router_kwargs([_entry()], environ=ENV, num_retry=3)
    assert "num_retry" in str(info.value) and "did you mean 'num_retries'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        config_from_router_kwargs([_entry()], environ=ENV, fallbacks=[{"g": ["nope"]}])
    assert "router_settings.fallbacks[0].g[0]: got 'nope'" in str(info.value)
    # A bad value says it came from the Router's arguments, as an unknown name does,
    # not from "(dict)", which the caller never wrote.
    assert "(Router arguments)" in str(info.value) and "(dict)" not in str(info.value)


def test_router_kwargs_do_not_mutate_the_callers_model_list() -> None:
    model_list = [_entry(api_key="os.environ/K")]
    snapshot = repr(model_list)
    config_from_router_kwargs(model_list, environ={"K": ANTHROPIC_KEY})
    assert repr(model_list) == snapshot


# ---------------------------------------------------------------- examples and reprs


@pytest.mark.parametrize("name", ["claude-gemini.yaml", "fallback.yaml"])
def test_examples_load(name: str) -> None:
    config = load_config(EXAMPLES / name, environ=ENV)
    assert config.warnings == []
    catalog = build_catalog(config)
    assert all(d.available for d in catalog.deployments())


def test_claude_gemini_example_is_the_seed() -> None:
    config = load_config(EXAMPLES / "claude-gemini.yaml", environ=ENV)
    catalog = build_catalog(config)
    models = {g: [d.qualified_model for d in catalog.group(g).deployments]
              for g in catalog.group_names}
    assert models == {
        "high-quality": ["anthropic/claude-sonnet-4-20250514"],
        "cost-optimized": ["gemini/gemini-2.5-pro"],
        "budget": ["gemini/gemini-2.0-flash-lite"],
    }
    assert config.router_settings.fallbacks == [{"high-quality": ["cost-optimized"]},
                                                 {"cost-optimized": ["budget"]}]
    assert config.ledger.database and config.ledger.database.endswith(".sqlite")


def test_fallback_example_orders_claude_first() -> None:
    config = load_config(EXAMPLES / "fallback.yaml", environ=ENV)
    primary = build_catalog(config).group("primary").deployments
    assert [(d.provider, d.order) for d in primary] == [("anthropic", 1), ("gemini", 2)]
    rs = config.router_settings
    assert rs.enable_pre_call_checks and rs.cooldown_time == 30 and rs.allowed_fails == 2


def test_no_repr_or_dump_shows_a_key(tmp_path: Path) -> None:
    env = {**ENV, "REDIS_HOST": "127.0.0.1", "REDIS_PASSWORD": REDIS_PASSWORD}
    config = load_config(_write(tmp_path, LITELLM_YAML), environ=env)
    literal = load_config({"model_list": [_entry(api_key=ANTHROPIC_KEY)],
                           "general_settings": {"master_key": MASTER_KEY},
                           "router_settings": {"redis_url":
                                               f"redis://user:{REDIS_PASSWORD}@127.0.0.1:6379"},
                           "ledger": {"database": f"postgresql+psycopg://interlock:"
                                                  f"{REDIS_PASSWORD}@127.0.0.1/ledger"}},
                          environ={})
    for cfg in (config, literal):
        catalog = build_catalog(cfg)
        texts = [repr(cfg), str(cfg), cfg.model_dump_json(), "\n".join(cfg.warnings),
                 repr(catalog), str(list(catalog.deployments())),
                 # The sections on their own, as a log line or a debugger shows them.
                 repr(cfg.router_settings), repr(cfg.ledger), cfg.ledger.model_dump_json()]
        _assert_no_secret("\n".join(texts))
    # Code that connects still reads the real values.
    assert literal.ledger.database is not None and REDIS_PASSWORD in literal.ledger.database
    assert "127.0.0.1/ledger" in repr(literal.ledger)


def test_config_type() -> None:
    config = load_config({"model_list": [_entry()]}, environ=ENV)
    assert isinstance(config, InterlockConfig)
    # The object keeps no trace of the environment in its public data.
    assert "ANTHROPIC_API_KEY" not in config.model_dump_json()


def test_settings_that_need_a_missing_package_fail_at_load(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import interlock.config.checks as checks

    installed = {"psycopg"}
    monkeypatch.setattr(checks, "find_spec", lambda name: object() if name in installed else None)
    message = _error({"model_list": [_entry()],
                      "router_settings": {"redis_host": "127.0.0.1"},
                      "ledger": {"database": "postgresql://u@127.0.0.1/db"}})
    assert "router_settings.redis_host: Redis is configured but the redis package" in message
    assert "pip install 'interlock[redis]'" in message
    # postgresql:// means psycopg2 to SQLAlchemy; the psycopg (3) driver needs +psycopg.
    assert "ledger.database: got a postgresql:// URL but the psycopg2 driver" in message
    installed.add("redis")
    load_config({"model_list": [_entry()], "router_settings": {"redis_host": "127.0.0.1"},
                 "ledger": {"database": "postgresql+psycopg://u@127.0.0.1/db"}}, environ=ENV)


@pytest.mark.parametrize(("litellm", "ours"), [
    ("latency-based-routing", "latency-based"), ("usage-based-routing", "usage-based"),
    ("usage-based-routing-v2", "usage-based"), ("simple-shuffle", "simple-shuffle"),
])
def test_litellm_routing_strategy_names_load(litellm: str, ours: str) -> None:
    config = config_from_router_kwargs(
        [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        routing_strategy=litellm)
    assert config.router_settings.routing_strategy == ours and config.warnings == []


def test_litellm_router_arguments_without_an_effect_load_with_a_warning() -> None:
    # Ported code passes these to LiteLLM's Router; refusing them would break the
    # port, and accepting them silently would hide that they do nothing here.
    config = config_from_router_kwargs(
        [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        set_verbose=True, cache_responses=True, retry_after=5)
    warnings = "\n".join(config.warnings)
    for name in ("set_verbose", "cache_responses", "retry_after"):
        assert f"router_settings.{name}: accepted for LiteLLM compatibility" in warnings
    # LiteLLM's documented retry_policy names errors that Interlock never retries
    # on the same deployment; they load, and say so.
    config = config_from_router_kwargs(
        [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        retry_policy={"RateLimitErrorRetries": 4, "BadRequestErrorRetries": 0,
                      "AuthenticationErrorRetries": 0})
    assert config.router_settings.retry_policy.RateLimitErrorRetries == 4
    with pytest.raises(ConfigError, match=r"model_group_retry_policy\.gpt-5"):
        config_from_router_kwargs(
            [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
            model_group_retry_policy={"gpt-5": {"TimeoutErrorRetries": 0}})
    per_deployment = config_from_router_kwargs(
        [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k",
                                                "num_retries": 5}}])
    assert per_deployment.warnings == [
        "model_list[0].litellm_params.num_retries: accepted for LiteLLM compatibility; it has "
        "no effect here: retries are router_settings.num_retries"]
    assert [w.split(":")[0] for w in config.warnings] == [
        "router_settings.retry_policy.AuthenticationErrorRetries",
        "router_settings.retry_policy.BadRequestErrorRetries"]
    with pytest.raises(ConfigError, match="cost-based-routing"):
        config_from_router_kwargs(
            [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
            routing_strategy="cost-based-routing")
    # allowed_fails_policy (LiteLLM's) is read; its names for errors that never
    # cool a deployment down here load with a warning; a misspelt name is an error.
    policy = config_from_router_kwargs(
        [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        allowed_fails_policy={"RateLimitErrorAllowedFails": 100,
                              "ContentPolicyViolationErrorAllowedFails": 5})
    assert policy.router_settings.allowed_fails_policy.RateLimitErrorAllowedFails == 100
    assert [w.split(":")[0] for w in policy.warnings] == [
        "router_settings.allowed_fails_policy.ContentPolicyViolationErrorAllowedFails"]
    with pytest.raises(ConfigError, match="RateLimitErrorAllowedFails"):
        config_from_router_kwargs(
            [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
            allowed_fails_policy={"RateLimitErrorAllowedFail": 1})


def test_limits_beside_litellm_params_are_read_as_litellm_reads_them() -> None:
    # LiteLLM's Router takes tpm/rpm at the entry's top level too; a limit set in
    # litellm_params wins over one beside it.
    config = load_config({"model_list": [
        {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o", "rpm": 10},
         "tpm": 1000, "rpm": 99}]}, environ=ENV)
    deployment = build_catalog(config).group("g").deployments[0]
    assert (deployment.tpm, deployment.rpm) == (1000, 10)
    message = _error({"model_list": [
        {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o"}, "tpm": 0}]})
    assert "model_list[0].litellm_params.tpm" in message


def test_an_api_base_with_credentials_and_a_bearer_key_is_refused_without_echoing_them(
) -> None:
    entry = {"model_name": "g", "litellm_params": {
        "model": "openai/gpt-4o", "api_key": "sk-abcdefghijklmnop1234",
        "api_base": "https://bob:hunter2pw@proxy.example/v1"}}
    message = _error({"model_list": [entry]})
    assert "api_base carries credentials" in message
    assert "hunter2pw" not in message and "sk-abcdefghijklmnop1234" not in message
    # Without the key, the URL's credentials are the request's only Authorization.
    del entry["litellm_params"]["api_key"]
    load_config({"model_list": [entry]}, environ=ENV)


def test_litellm_cache_arguments_all_load_with_the_same_warning() -> None:
    # cache_responses used to warn while its companions were hard errors: a
    # ported cache setup failed on the arguments that go with it.
    config = config_from_router_kwargs(
        [{"model_name": "g", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        cache_responses=True, cache_kwargs={"type": "redis"}, caching_groups=[("g", "h")])
    assert sorted(config.warnings) == [
        f"router_settings.{name}: accepted for LiteLLM compatibility; Interlock has no "
        "response cache, so it has no effect"
        for name in ("cache_kwargs", "cache_responses", "caching_groups")]


@pytest.mark.parametrize(("model", "provider"), [
    ("gpt-4o-mini", "openai"), ("chatgpt-4o-latest", "openai"), ("o1", "openai"),
    ("o3-mini", "openai"), ("o4-mini", "openai"), ("text-embedding-3-small", "openai"),
    ("text-embedding-ada-002", "openai"),
    ("claude-3-5-sonnet-20240620", "anthropic"), ("gemini-2.0-flash", "gemini"),
])
def test_a_bare_model_name_with_a_known_prefix_gets_its_provider(model: str,
                                                                 provider: str) -> None:
    # LiteLLM's Router quick start writes bare names; their provider is beyond doubt.
    config = load_config({"model_list": [
        {"model_name": "g", "litellm_params": {"model": model, "api_key": "k"}}]})
    deployment = next(build_catalog(config).deployments())
    assert (deployment.provider, deployment.model) == (provider, model)


# Google's text-embedding-004 is a Vertex AI model, as LiteLLM reads the bare name.
@pytest.mark.parametrize("model", ["llama-3-70b", "o5", "omni-moderation", "mistral-large",
                                   "text-embedding-004"])
def test_any_other_bare_model_name_still_needs_its_provider(model: str) -> None:
    with pytest.raises(ConfigError, match=r"expected '<provider>/<model-id>'"):
        load_config({"model_list": [
            {"model_name": "g", "litellm_params": {"model": model, "api_key": "k"}}]})


@pytest.mark.parametrize(("extra", "says"), [
    ({"budgets": [{"model_group": "g", "max_usd": 5, "period": "weekly"}]},
     "budgets[0].period: got 'weekly'; expected 'day', 'month' or a number of hours"),
    ({"routing": {"routers": {"r": {"type": "rulez"}}}},
     "routing.routers.r.type: got 'rulez'; expected one of 'rules', 'intents', 'learned'; "
     "did you mean 'rules'?"),
    ({"model_list": []}, "model_list: got []; expected at least 1 entry"),
    # An endless period overflowed each reservation; a huge one broke Redis's expiry.
    ({"budgets": [{"model_group": "g", "max_usd": 5, "period": "inf"}]},
     "budgets[0].period: got 'inf'; expected 'day', 'month' or a number of hours from "
     "a minute (0.01667) to a year"),
    ({"budgets": [{"model_group": "g", "max_usd": 5, "period": 1e300}]},
     "to a year (8784; 168 for a week)"),
    # A vanishing period could hold no call, and named a new count every request.
    ({"budgets": [{"model_group": "g", "max_usd": 5, "period": 1e-300}]},
     "budgets[0].period: got 1e-300; expected 'day', 'month' or a number of hours from "
     "a minute"),
])
def test_a_mistake_is_one_problem_in_words_with_the_fix(extra: dict[str, Any],
                                                         says: str) -> None:
    text = _error({"model_list": [_entry(api_key="k")], **extra})
    assert "1 problem:" in text and says in text
    assert "Input should" not in text and "input tag" not in text


def test_a_budget_period_in_hours_still_loads() -> None:
    budgets = [{"model_group": "g", "max_usd": 5, "period": p} for p in (12, "day", 0.5)]
    loaded = load_config({"model_list": [_entry(api_key="k")], "budgets": budgets},
                         environ=ENV)
    assert [b.period for b in loaded.budgets] == [12.0, "day", 0.5]


@pytest.mark.parametrize(("router", "says"), [
    # pydantic puts the section's `type` in the path (`tiers.rules.rules[0]`), a key
    # the file does not have, and then looked for valid keys in the wrong member.
    ({"tiers": {"type": "rules", "default": "g", "rules": [
        {"name": "x", "group": "g", "when": {"text": "conversation"}}]}},
     "routing.routers.tiers.rules[0].when.text: got 'conversation'"),
    ({"topics": {"type": "intents", "treshold": 0.5, "default": "g", "intents": [
        {"name": "x", "group": "g", "utterances": ["hi"]}]}},
     "routing.routers.topics.treshold: unknown key; did you mean 'threshold'?"),
    ({"mf": {"type": "learned", "checkpont_path": "x"}},
     "routing.routers.mf.checkpont_path: unknown key; did you mean 'checkpoint_path'?"),
])
def test_a_routers_mistake_has_the_file_s_path_and_a_did_you_mean(
        router: dict[str, Any], says: str) -> None:
    text = _error({"model_list": [_entry(api_key="k")], "routing": {"routers": router}})
    assert says in text, text


def test_a_routers_mistake_points_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: g\n"
        "    litellm_params: {model: openai/gpt-4o, api_key: k}\n"
        "routing:\n"
        "  routers:\n"
        "    tiers:\n"
        "      type: rules\n"
        "      default: g\n"
        "      rules:\n"
        "        - name: x\n"
        "          group: g\n"
        "          when:\n"
        "            text: conversation\n")
    assert "when.text: got 'conversation'; expected 'last_user', 'all' or 'system' (line 13)" \
        in _error(path)


def test_a_config_key_named_like_a_key_loads_with_a_warning_that_names_no_key() -> None:
    # A config that loaded before the rule still loads; only the warning is new.
    general = {"master_key": "plain-master-secret-123",
               "api_keys": [{"name": "sk-team-SECRET", "key": "sk-a-0123456789"},
                            {"name": "plain-master-secret-123", "key": "sk-b-0123456789"},
                            {"name": "team-b", "key": "sk-c-0123456789"},
                            # Holding one among words was taken: only the whole name was.
                            {"name": "ops sk-a-0123456789", "key": "sk-d-0123456789"},
                            # And a provider's key among words, which no digest knows.
                            {"name": "ops sk-proj-SECRET", "key": "sk-e-0123456789"}]}
    config = load_config({"model_list": [_entry(api_key=ANTHROPIC_KEY)],
                          "general_settings": general})
    assert [k.name for k in config.general_settings.api_keys][2] == "team-b"
    said = [w for w in config.warnings if ".name: " in w]
    assert [w.split(":")[0] for w in said] == ["general_settings.api_keys[0].name",
                                               "general_settings.api_keys[1].name",
                                               "general_settings.api_keys[3].name",
                                               "general_settings.api_keys[4].name"]
    assert "looks like a key" in said[0] and "is or holds one of the config's keys" in said[1]
    assert "is or holds one of the config's keys" in said[2]
    assert "looks like a key or holds one" in said[3]
    assert not any("SECRET" in w or "plain-master" in w or "0123456789" in w
                   for w in config.warnings)


@pytest.mark.parametrize(("general", "ledger", "says"), [
    ({"database_url": "os.environ/DATABASE_URL"}, None,
     "set `ledger: {database: os.environ/DATABASE_URL}`"),
    ({"database_url": "postgresql://litellm:pw-SECRET@db/litellm"}, None,
     "set `ledger: {database: the same URL}`"),
    ({"database_url": "os.environ/DATABASE_URL"}, {"database": "spend.sqlite"},
     "no effect in Interlock: the spend ledger and the keys made at run time go to "
     "ledger.database"),
])
def test_litellm_s_database_url_warning_says_how_to_keep_the_ledger_there(
        general: dict[str, str], ledger: dict[str, str] | None, says: str) -> None:
    source: dict[str, Any] = {"model_list": [_entry(api_key=ANTHROPIC_KEY)],
                              "general_settings": general}
    if ledger is not None:
        source["ledger"] = ledger
    config = load_config(source, environ={})
    said = [w for w in config.warnings if w.startswith("general_settings.database_url")]
    assert len(said) == 1 and says in said[0], said
    assert "pw-SECRET" not in said[0]
    # Not used on its own: the ledger stays where the config (or its default) puts it.
    assert config.ledger.database == (ledger or {}).get("database", "interlock-ledger.sqlite")


def test_a_routed_group_threshold_out_of_range_is_reported_once() -> None:
    message = _error({
        "model_list": [_entry(group="s"), _entry("gemini/gemini-2.0-flash-lite", group="w")],
        "routing": {"groups": {"auto": {"router": "random", "strong": "s", "weak": "w",
                                        "threshold": 1.5}}}})
    # The report puts the value first; the check said it again ("got 1.5; got 1.5; ...").
    assert "routing.groups.auto.threshold: got 1.5; expected a probability in [0, 1]" in message
    assert message.count("1.5") == 1
