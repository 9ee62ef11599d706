"""From a loaded config to a `Catalog`: keys and `os.environ/VAR` references
resolved under an environment, base URLs defaulted, prices made per token, and
a deployment's input limit taken from known model data when its config gives
none (a lookup the caller passes in: the data lives in `costs`).

Imports: the standard library, `catalog`, `config.schema`, `errors`;
`adapters.registry` inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from interlock.catalog import Catalog, Deployment, Secret
from interlock.config.schema import (
    CALL_DEFAULT_PARAMS,
    DeploymentParams,
    InterlockConfig,
    ModelEntry,
    env_ref,
)
from interlock.errors import names_a_credential

_MILLION = Decimal(1_000_000)

# A deployment's known context window: (tokens, where they came from).
ContextWindowLookup = Callable[[Deployment], tuple[int, str] | None]


def resolve_entry(entry: ModelEntry, env: Mapping[str, str]
                   ) -> tuple[Secret | None, dict[str, Any], str | None]:
    """(key, resolved parameters, why unavailable) for one entry under `env`."""
    params = entry.litellm_params
    # A mocked deployment calls no provider, so it needs no key to be available.
    key, reasons = _resolve_key(params, env) if params.mock_response is None else (None, [])
    resolved: dict[str, Any] = {}
    raw = {"api_base": params.api_base, "api_version": params.api_version,
           "extra_headers": _headers(params), "mock_response": params.mock_response,
           **params.adapter_settings,
           **{k: v for k, v in (params.model_extra or {}).items()
              if k not in CALL_DEFAULT_PARAMS}}
    for name, value in raw.items():
        if value is None:
            continue
        value, missing = _resolve_value(value, env)
        reasons.extend(f"the environment variable {var} (litellm_params.{name}) is not set"
                       for var in missing)
        if not missing:
            # Judged as the catalog judges a secret mapping's fields and the
            # config masks a value (`errors.names_a_credential`).
            resolved[name] = Secret(value) if names_a_credential(name) else value
    return key, resolved, "; ".join(reasons) or None


def _resolve_value(value: Any, env: Mapping[str, str]) -> tuple[Any, list[str]]:
    """`value` with `os.environ/VAR` references resolved (inside dicts too, for
    extra_headers), and the names of the variables that are unset."""
    if isinstance(value, Mapping):
        pairs = {k: _resolve_value(v, env) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, [m for _, ms in pairs.values() for m in ms]
    var = env_ref(value)
    if var is None:
        return value, []
    return (env[var], []) if env.get(var) else (None, [var])


def _resolve_key(params: DeploymentParams, env: Mapping[str, str]
                 ) -> tuple[Secret | None, list[str]]:
    from interlock.adapters.registry import API_KEY_ENV, KEYLESS_PROVIDERS

    provider = params.provider
    raw = params.api_key.get_secret_value() if params.api_key is not None else None
    if raw is None:
        names = API_KEY_ENV.get(provider, ())
        if provider in KEYLESS_PROVIDERS or not names:
            return None, []
        found = next((env[n] for n in names if env.get(n)), None)
        if found:
            return Secret(found), []
        listed = " or ".join(names)
        return None, [f"no API key: set {listed} or give litellm_params.api_key"]
    var = env_ref(raw)
    if var is not None:
        value = env.get(var)
        if value:
            return Secret(value), []
        return None, [f"the environment variable {var} (litellm_params.api_key) is not set"]
    if not raw and provider not in KEYLESS_PROVIDERS:
        return None, ["litellm_params.api_key is empty"]
    return (Secret(raw) if raw else None), []


def build_catalog(config: InterlockConfig, *, environ: Mapping[str, str] | None = None,
                  context_windows: ContextWindowLookup | None = None) -> Catalog:
    """One `Deployment` per model_list entry, keys and base URLs resolved under
    `environ` (default: the environment the config was loaded with).

    `context_windows` gives the known window of a deployment's model (the
    gateway passes `costs.context_windows.listed_context_window`); it becomes
    the input limit of each deployment whose config sets no max_input_tokens,
    here, once, so the pre-call checks read a plain field on every request.
    Without it only the config's limits are known."""
    env = environ if environ is not None else config._environ
    if env is None:
        env = os.environ
    names = config.deployment_names()
    default_drop = bool(config.litellm_settings.drop_params)
    default_cap = config.router_settings.default_max_parallel_requests
    deployments = [_deployment(entry, name, env, default_drop, default_cap)
                   for entry, name in zip(config.model_list, names, strict=True)]
    if context_windows is not None:
        for entry, d in zip(config.model_list, deployments, strict=True):
            # The config's own value always wins.
            if d.max_input_tokens is None and _runs_the_named_model(entry, d):
                _use_known_window(d, context_windows(d))
    return Catalog.from_deployments(deployments)


def _runs_the_named_model(entry: ModelEntry, deployment: Deployment) -> bool:
    """Whether the deployment's server is its provider's own API, whose model
    of that name the table describes. One given an api_base elsewhere may be
    any server answering to the name (LocalAI serves local models as "gpt-4"),
    whose window the table cannot know; an api_base that is the provider's own
    host (api.openai.com, eu.api.openai.com, ...) is read as the OpenAI
    adapter's field rules read it."""
    from interlock.adapters.registry import at_default_host

    if entry.litellm_params.api_base is None:
        return True
    return deployment.api_base is not None and at_default_host(deployment.provider,
                                                               deployment.api_base)


def _use_known_window(deployment: Deployment, known: tuple[int, str] | None) -> None:
    if known is not None:
        deployment.max_input_tokens, deployment.max_input_tokens_from = known
        deployment.max_input_tokens_listed = True


def _first(*values: Any) -> Any:
    """The first value that is not None (a price of 0 is a price)."""
    return next((v for v in values if v is not None), None)


def _per_token(per_token: Decimal | None, per_million: Decimal | None) -> Decimal | None:
    if per_token is not None:
        return per_token
    return per_million / _MILLION if per_million is not None else None


def _deployment(entry: ModelEntry, name: str, env: Mapping[str, str],
                default_drop: bool, default_cap: int | None) -> Deployment:
    from interlock.adapters.registry import resolve_base_url

    params, info = entry.litellm_params, entry.info
    key, resolved, reason = resolve_entry(entry, env)
    api_base = resolved.pop("api_base", None)
    return Deployment(
        name=name,
        group=entry.group,
        provider=params.provider,
        model=params.model_id,
        api_base=resolve_base_url(params.provider, api_base, env),
        api_key=key,
        unavailable_reason=reason,
        timeout=params.timeout,
        stream_timeout=params.stream_timeout,
        order=params.order,
        weight=params.weight,
        rpm=params.rpm,
        tpm=params.tpm,
        max_parallel_requests=_first(params.max_parallel_requests, default_cap),
        max_input_tokens=_first(params.max_input_tokens, info.max_input_tokens),
        max_input_tokens_from=("litellm_params" if params.max_input_tokens is not None
                               else "model_info" if info.max_input_tokens is not None
                               else None),
        max_output_tokens=_first(params.max_output_tokens, params.max_tokens,
                                 info.max_output_tokens, info.max_tokens),
        input_cost_per_token=_first(
            _per_token(params.input_cost_per_token, params.input_cost_per_million),
            info.input_cost_per_token),
        output_cost_per_token=_first(
            _per_token(params.output_cost_per_token, params.output_cost_per_million),
            info.output_cost_per_token),
        cached_input_cost_per_token=_first(params.cache_read_input_token_cost,
                                           info.cache_read_input_token_cost),
        cooldown_time=params.cooldown_time,
        drop_params=_first(params.drop_params, default_drop),
        extra=resolved,
        model_info=info.model_dump(exclude_none=True),
        call_defaults=params.call_defaults,
        tags=frozenset(params.tags or ()),
    )


def _headers(params: DeploymentParams) -> dict[str, str] | None:
    if params.headers is None:
        return params.extra_headers
    return {**params.headers, **(params.extra_headers or {})}
