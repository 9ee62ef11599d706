"""The config schema: `InterlockConfig` and the `model_list` entry models.

`model_list` entries take LiteLLM's shape (`model_name`, `litellm_params` or
`params`, `model_info`); `litellm_settings` and `general_settings` accept the
LiteLLM keys users commonly write. The other sections are the leaf schemas of
the layers that own them, composed here.

Imports: pydantic, the standard library, `config.report`, `errors`, `ignored_keys`,
`key_names`, `key_models`, the leaf settings modules; `adapters.registry` only
inside functions (it brings in the HTTP stack, and `import interlock.config` must
stay light).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from interlock.config.report import did_you_mean
from interlock.costs.settings import Budget, LedgerSettings, PriceOverride
from interlock.dispatch.settings import RouterSettings
from interlock.errors import InvalidRequest, names_a_credential, redact
from interlock.ignored_keys import AcceptsIgnoredKeys
from interlock.key_models import allowed_models
from interlock.key_names import config_name_problem
from interlock.openai_request import parse_call_defaults
from interlock.routing.settings import RoutingSettings
from interlock.types import ChatRequest

ENV_PREFIX = "os.environ/"
# litellm_params keys that LiteLLM users write and Interlock has no field for:
# accepted quietly and handed to the adapter in `Deployment.extra`.
PASSTHROUGH_PARAMS = frozenset({
    "organization", "region_name",
    "vertex_project", "vertex_location", "vertex_credentials", "aws_access_key_id",
    "aws_secret_access_key", "aws_region_name", "aws_session_token", "base_model",
    "use_in_pass_through", "input_cost_per_second", "output_cost_per_second",
    "litellm_credential_name",
})
# litellm_params keys LiteLLM reads per deployment that do nothing here: retries
# belong to the router (router_settings.num_retries), never to the HTTP layer.
NO_EFFECT_PARAMS = frozenset({"num_retries", "max_retries"})
# litellm_params keys that are call arguments: LiteLLM passes them to every call
# of the deployment unless the call gives its own, and so does Interlock
# (`Deployment.call_defaults`). max_tokens is also read as the output limit.
CALL_DEFAULT_PARAMS = frozenset({
    "temperature", "top_p", "seed", "stop", "max_tokens", "max_completion_tokens",
    "frequency_penalty", "presence_penalty", "logit_bias", "response_format",
    "reasoning_effort", "top_k", "thinking", "user", "parallel_tool_calls",
})
# Settings only the OpenAI adapter reads (`adapters.openai.server_params`):
# LiteLLM users also put them on Claude or Gemini deployments, where no adapter
# reads them, so load says so (`DeploymentParams.unread_adapter_settings`).
OPENAI_ONLY_SETTINGS = ("params_like", "allowed_openai_params")
_Fallbacks = list[dict[str, list[str]]] | dict[str, list[str]]


def env_ref(value: object) -> str | None:
    """The variable name of an `os.environ/VAR` reference, else None."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX):].strip()
    return None


# Bare model names whose provider is beyond doubt, as LiteLLM reads them
# ("gpt-4o-mini" is OpenAI's); any other bare name still needs its prefix.
_BARE_MODEL_PROVIDER = re.compile(
    r"^(?:(?P<openai>gpt-|chatgpt-|o[134](?:-|$)|text-embedding-(?:3-|ada-))|(?P<anthropic>claude-)|(?P<gemini>gemini-))")


def _split_model(model: str, custom_provider: str | None) -> tuple[str, str]:
    if custom_provider:
        prefix = f"{custom_provider}/"
        return custom_provider, model[len(prefix):] if model.startswith(prefix) else model
    if "/" not in model:
        bare = _BARE_MODEL_PROVIDER.match(model)
        if bare is not None and bare.lastgroup is not None:
            return bare.lastgroup, model
    provider, _, model_id = model.partition("/")
    return provider, model_id


class DeploymentParams(BaseModel):
    """`litellm_params` (or `params`) of one `model_list` entry."""

    # Unknown keys are allowed here (LiteLLM has hundreds of provider-specific
    # ones); `_check_params_keys` rejects the ones that look like typos.
    model_config = ConfigDict(extra="allow")

    # Declared before `model`, whose validator reads it.
    custom_llm_provider: str | None = None
    model: str
    api_key: SecretStr | None = None
    api_base: str | None = None
    api_version: str | None = None
    order: int | None = Field(default=None, ge=0)
    weight: float | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_parallel_requests: int | None = Field(default=None, ge=1)
    max_input_tokens: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    input_cost_per_token: Decimal | None = Field(default=None, ge=0)
    output_cost_per_token: Decimal | None = Field(default=None, ge=0)
    input_cost_per_million: Decimal | None = Field(default=None, ge=0)
    output_cost_per_million: Decimal | None = Field(default=None, ge=0)
    cache_read_input_token_cost: Decimal | None = Field(default=None, ge=0)
    cooldown_time: float | None = Field(default=None, ge=0)
    drop_params: bool | None = None
    extra_headers: dict[str, str] | None = Field(default=None, repr=False)
    # LiteLLM's other name for them; extra_headers wins where both set a header.
    headers: dict[str, str] | None = Field(default=None, repr=False)
    # LiteLLM's: answer with this text and call no provider (adapters/mock.py).
    mock_response: str | None = None
    # LiteLLM's: the request tags this deployment serves (enable_tag_filtering).
    tags: list[str] | None = None
    # Settings of an OpenAI-compatible deployment that its adapter reads from
    # `Deployment.extra` (adapters.openai.server_params and .request): declared
    # so that a bad one fails the load, not the deployment's first call.
    params_like: str | None = None
    allowed_openai_params: list[str] | None = None
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    _call_defaults: ChatRequest | None = PrivateAttr(default=None)

    @field_validator("custom_llm_provider")
    @classmethod
    def _known_custom_provider(cls, value: str | None) -> str | None:
        if value is not None:
            _require_known_provider(value)
        return value

    @field_validator("params_like")
    @classmethod
    def _names_a_compatible_server(cls, value: str | None) -> str | None:
        from interlock.adapters.registry import OPENAI_COMPATIBLE_BASES

        if value is not None and value not in OPENAI_COMPATIBLE_BASES:
            known = sorted(OPENAI_COMPATIBLE_BASES)
            # 'vllm' means hosted_vllm, which difflib ranks below 'ollama'.
            within = [k for k in known if value and value.lower() in k]
            raise PydanticCustomError(
                "unknown_server",
                "expected one of {known}: the OpenAI-compatible server whose parameter "
                "rules this api_base follows{hint}",
                {"known": ", ".join(known),
                 "hint": f"; did you mean {within[0]!r}?" if len(within) == 1
                 else did_you_mean(value, known, list_valid=False)})
        return value

    @field_validator("allowed_openai_params", mode="before")
    @classmethod
    def _names_of_parameters(cls, value: Any) -> Any:
        # One sentence for a bare name or a number, rather than pydantic's per item.
        if value is not None and not (
                isinstance(value, list) and all(isinstance(n, str) for n in value)):
            raise PydanticCustomError(
                "not_parameter_names",
                "expected a list of parameter names, e.g. [verbosity]")
        return value

    @field_validator("model")
    @classmethod
    def _known_provider(cls, value: str, info: ValidationInfo) -> str:
        custom = info.data.get("custom_llm_provider")
        provider, model_id = _split_model(value, custom)
        _require_known_provider(provider if model_id else "")
        return value

    @model_validator(mode="after")
    def _one_authorization(self) -> DeploymentParams:
        # An OpenAI-compatible call sends its key as "Authorization: Bearer", and
        # user:password@ in the URL would be a second Authorization (Basic): one
        # request cannot carry both, and the HTTP client refuses to send it.
        base = self.api_base or ""
        if (self.api_key is not None and self.provider == "openai"
                and "@" in urlsplit(base).netloc and not base.startswith(ENV_PREFIX)):
            raise ValueError(
                "api_base carries credentials (user:password@) and api_key is set, but an "
                "OpenAI-compatible call sends its key as 'Authorization: Bearer', so it "
                "cannot also send the URL's credentials. Remove one: drop api_key, or take "
                "the credentials out of the URL (a proxy's own token can go in extra_headers)")
        return self

    @model_validator(mode="after")
    def _call_defaults_parse(self) -> DeploymentParams:
        given = {"max_tokens": self.max_tokens, **(self.model_extra or {})}
        defaults = {k: v for k, v in given.items()
                    if k in CALL_DEFAULT_PARAMS and v is not None}
        if defaults:
            try:
                self._call_defaults = parse_call_defaults(defaults)
            except InvalidRequest as exc:
                raise ValueError(exc.message) from None
        return self

    @property
    def call_defaults(self) -> ChatRequest | None:
        """The call arguments among these parameters (CALL_DEFAULT_PARAMS), parsed
        as a request's would be; None when there are none."""
        return self._call_defaults

    @property
    def adapter_settings(self) -> dict[str, Any]:
        """The OpenAI adapter's settings that are given, as `Deployment.extra`
        carries them."""
        params_like = self.params_like
        if params_like is None and self.provider == "openai" and not self.api_base:
            # No api_base: OpenAI's own API wherever OPENAI_BASE_URL sends the call
            # (a proxy, an egress gateway, a test double), so OpenAI's rules, not
            # those of the unnamed server the resolved URL would otherwise be.
            params_like = "openai"
        given = {"params_like": params_like,
                 "allowed_openai_params": self.allowed_openai_params,
                 "max_tokens_param": self.max_tokens_param}
        return {k: v for k, v in given.items() if v is not None}

    @property
    def unread_adapter_settings(self) -> list[str]:
        """The OPENAI_ONLY_SETTINGS given on a deployment another adapter serves
        (anthropic/, gemini/): accepted, and read by nothing."""
        from interlock.adapters.registry import PROVIDER_ALIASES

        if PROVIDER_ALIASES.get(self.provider) == "openai":
            return []
        return [name for name in OPENAI_ONLY_SETTINGS if getattr(self, name) is not None]

    @property
    def provider(self) -> str:
        return _split_model(self.model, self.custom_llm_provider)[0]

    @property
    def model_id(self) -> str:
        return _split_model(self.model, self.custom_llm_provider)[1]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Extra keys such as aws_secret_access_key are plain strings.
        for name, value in super().__repr_args__():
            yield name, _mask_extra(name, value)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if info.mode == "json" and isinstance(data, dict):
            return {name: _mask_extra(name, value) for name, value in data.items()}
        return data


# Header maps often carry a key ("authorization", "x-api-key", a proxy's token)
# under names no pattern reliably catches, so every value of them is masked.
_HEADER_MAPS = frozenset({"extra_headers", "headers"})


def _mask_extra(name: str | None, value: Any) -> Any:
    if name in _HEADER_MAPS and isinstance(value, dict):
        return {k: "********" for k in value}
    if name == "api_base" and isinstance(value, str):
        return redact(value)  # a proxy URL may carry user:password@
    secret = name is not None and names_a_credential(name) and value is not None
    return "********" if secret and not isinstance(value, SecretStr) else value


def _require_known_provider(provider: str) -> None:
    """Raises unless `provider` is known (an empty one means the model had no
    `<provider>/` prefix or no model id after it)."""
    from interlock.adapters.registry import known_providers

    known = known_providers()
    if provider not in known:
        raise PydanticCustomError(
            "unknown_provider",
            "expected '<provider>/<model-id>' with a known provider ({known}); "
            "for example 'anthropic/claude-sonnet-4-20250514' or 'gemini/gemini-2.5-pro'"
            "{hint}",
            {"known": ", ".join(known),
             "hint": did_you_mean(provider, known, list_valid=False) if provider else ""},
        )


class ModelInfo(BaseModel):
    """`model_info` of one entry: free-form, with the keys Interlock reads typed."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, min_length=1)
    mode: str | None = None
    # The model a fine-tune or an Azure deployment runs, as LiteLLM reads it: the
    # price of a deployment whose own model has none (`costs.prices.base_model`).
    base_model: str | None = None
    max_input_tokens: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    input_cost_per_token: Decimal | None = Field(default=None, ge=0)
    output_cost_per_token: Decimal | None = Field(default=None, ge=0)
    cache_read_input_token_cost: Decimal | None = Field(default=None, ge=0)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # YAML reads `id: 1` as an int; an id is a name.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ModelEntry(BaseModel):
    """One `model_list` entry: a deployment of the group `model_name`."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    litellm_params: DeploymentParams = Field(
        validation_alias=AliasChoices("litellm_params", "params"))
    model_info: ModelInfo | None = None

    # Limits LiteLLM's Router also reads beside litellm_params (its load-balancing
    # examples put them there); moved in, where litellm_params does not set them.
    _ENTRY_LIMITS: ClassVar[tuple[str, ...]] = ("tpm", "rpm")

    @model_validator(mode="before")
    @classmethod
    def _limits_into_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not any(k in data for k in cls._ENTRY_LIMITS):
            return data
        name = "params" if "params" in data else "litellm_params"
        params = data.get(name)
        if not isinstance(params, Mapping):
            return data  # reported as it is
        entry = {k: v for k, v in data.items() if k not in cls._ENTRY_LIMITS}
        entry[name] = {**{k: data[k] for k in cls._ENTRY_LIMITS if k in data}, **params}
        return entry

    @property
    def group(self) -> str:
        return self.model_name

    @property
    def info(self) -> ModelInfo:
        return self.model_info or ModelInfo()


class LiteLLMSettings(AcceptsIgnoredKeys):
    """LiteLLM's `litellm_settings`: the keys with a meaning here are folded into
    `router_settings` (or the deployments' defaults); the others in IGNORED are
    accepted so LiteLLM files load, with a warning that they do nothing."""

    model_config = ConfigDict(extra="forbid")

    FOLDED: ClassVar[dict[str, str]] = {
        "num_retries": "num_retries",
        "request_timeout": "timeout",
        "fallbacks": "fallbacks",
        "context_window_fallbacks": "context_window_fallbacks",
        "content_policy_fallbacks": "content_policy_fallbacks",
        "default_fallbacks": "default_fallbacks",
    }
    IGNORED: ClassVar[frozenset[str]] = frozenset({
        "set_verbose", "json_logs", "success_callback", "failure_callback", "callbacks",
        "service_callback", "cache", "cache_params", "telemetry", "turn_off_message_logging",
        "redact_user_api_key_info", "modify_params",
    })

    drop_params: bool | None = None
    num_retries: int | None = Field(default=None, ge=0, le=20)
    request_timeout: float | None = Field(default=None, gt=0)
    fallbacks: _Fallbacks | None = None
    context_window_fallbacks: _Fallbacks | None = None
    content_policy_fallbacks: _Fallbacks | None = None
    default_fallbacks: list[str] | None = None


class ClientKey(BaseModel):
    """One of `general_settings.api_keys`: a key that one client application (a
    team, a service) sends instead of the master key, recorded by its name."""

    model_config = ConfigDict(extra="forbid")

    # What the ledger records as the request's api_key_id (and spend --by key shows).
    name: str = Field(min_length=1, max_length=128)
    # A literal or `os.environ/VAR`; after loading, the resolved key.
    key: SecretStr
    # The names it may ask for (model groups, routers, aliases); None, [], or a
    # list holding "*" or "all-proxy-models" (as on LiteLLM's proxy, and as for a
    # key made at run time; `key_models`): all of them.
    models: list[str] | None = None
    # Its own limits (LiteLLM's names), over all the deployments it reaches:
    # requests and tokens a minute, and calls at once; shared through Redis
    # where router_settings names one, else in each gateway process.
    rpm_limit: int | None = Field(default=None, ge=1)
    tpm_limit: int | None = Field(default=None, ge=1)
    max_parallel_requests: int | None = Field(default=None, ge=1)

    @field_validator("name")
    @classmethod
    def _a_name_of_its_own(cls, name: str) -> str:
        problem = config_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name

    @field_validator("models")
    @classmethod
    def _every_model(cls, models: list[str] | None) -> list[str] | None:
        return allowed_models(models)


class GeneralSettings(AcceptsIgnoredKeys):
    """`general_settings`: the gateway's own settings."""

    model_config = ConfigDict(extra="forbid")

    IGNORED: ClassVar[frozenset[str]] = frozenset({
        "database_url", "store_model_in_db", "alerting", "disable_spend_logs",
        "proxy_batch_write_at", "background_health_checks", "health_check_interval",
    })

    # A literal or `os.environ/VAR`; after loading, the resolved key (or
    # INTERLOCK_MASTER_KEY from the environment when the file gives none).
    master_key: SecretStr | None = None
    # Keys for client applications, by name: they reach the API endpoints but
    # not the health and metrics pages, which need the master key.
    api_keys: list[ClientKey] = Field(default_factory=list)
    # Serve without a key; the server allows it only on a loopback address.
    allow_unauthenticated: bool = False
    max_request_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # What one connection may cost before it is cut (server/connection_limits.py):
    # the request line and headers, in bytes (431 past it); seconds for the
    # headers to arrive, for a body to send its next bytes, and for the whole body
    # to arrive after the headers (408 past them).
    max_request_header_bytes: int = Field(default=64 * 1024, ge=1024)
    request_header_timeout: float = Field(default=30.0, gt=0)
    request_body_timeout: float = Field(default=30.0, gt=0)
    request_body_total_timeout: float = Field(default=120.0, gt=0)
    # Connections and requests at once a server process takes before it answers
    # new requests 503 (uvicorn's limit_concurrency); None: no cap.
    max_connections: int | None = Field(default=None, gt=0)
    drain_timeout: float = Field(default=30.0, ge=0)
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    # The variable `master_key: os.environ/VAR` named, when it was not set: then
    # INTERLOCK_MASTER_KEY is not used in its place (the operator chose VAR).
    _unset_master_key_var: str | None = PrivateAttr(default=None)

    @property
    def unset_master_key_var(self) -> str | None:
        return self._unset_master_key_var


class InterlockConfig(BaseModel):
    """A whole loaded config. Build it with `load_config`, not directly."""

    model_config = ConfigDict(extra="forbid")

    model_list: list[ModelEntry] = Field(min_length=1)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    litellm_settings: LiteLLMSettings = Field(default_factory=LiteLLMSettings)
    general_settings: GeneralSettings = Field(default_factory=GeneralSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    budgets: list[Budget] = Field(default_factory=list)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    # LiteLLM writes this block; Interlock does not set environment variables.
    environment_variables: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _environ: Mapping[str, str] | None = PrivateAttr(default=None)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def warnings(self) -> list[str]:
        """What loaded but deserves attention: unavailable deployments, ignored keys."""
        return list(self._warnings)

    @property
    def source(self) -> Path | None:
        """The file the config came from (None for dicts)."""
        return self._source

    @property
    def group_names(self) -> list[str]:
        return list(dict.fromkeys(e.model_name for e in self.model_list))

    def deployment_names(self) -> list[str]:
        """The deployment names, in model_list order (see `_deployment_names`)."""
        return _deployment_names(self.model_list)


def _deployment_names(entries: Sequence[ModelEntry]) -> list[str]:
    """model_info.id when given, else `group/provider/model`, with `#2`, `#3`, ...
    on repeats so every deployment has its own name (cooldowns are per name)."""
    taken = {e.info.id for e in entries if e.info.id}
    names: list[str] = []
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.info.id:
            names.append(entry.info.id)
            continue
        base = f"{entry.group}/{entry.litellm_params.provider}/{entry.litellm_params.model_id}"
        count = seen.get(base, 0) + 1
        name = base if count == 1 else f"{base}#{count}"
        while name in taken:
            count += 1
            name = f"{base}#{count}"
        seen[base] = count
        taken.add(name)
        names.append(name)
    return names

