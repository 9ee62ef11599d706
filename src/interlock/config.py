"""Config schema and loading: a YAML file or dicts -> `InterlockConfig` -> `Catalog`.

The file takes the shape of a LiteLLM proxy config (`model_list` entries with
`litellm_params`, `router_settings`, `litellm_settings`, `general_settings`,
`environment_variables`) plus Interlock's own sections (`routing`, `prices`,
`budgets`, `ledger`), so a LiteLLM user's file loads unchanged. The sections
of other layers are leaf schemas (`dispatch.settings`, `costs.settings`,
`routing.settings`) composed here. This module adds the `model_list` entries,
one error report that lists every problem with its path, value and what was
expected (did-you-mean for unknown keys), the checks across sections, and the
resolution of `os.environ/VAR` references.

A missing key never fails a load: the deployment is built unavailable, with a
reason naming the variable, and `config.warnings` says so. Keys are held as
`SecretStr` in the config and `catalog.Secret` in the catalog; no repr,
warning or error message carries a key's value.

Imports: pydantic, yaml, the standard library, `errors`, `catalog`, the leaf
settings modules; `adapters.registry` only inside functions, because it
brings in the HTTP stack and `import interlock.config` must stay light.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from interlock.catalog import Catalog, Deployment, Secret
from interlock.costs.settings import Budget, LedgerSettings, PriceOverride
from interlock.dispatch.settings import RouterSettings
from interlock.errors import ConfigError, redact
from interlock.routing.settings import RoutingSettings

__all__ = [
    "DeploymentParams",
    "GeneralSettings",
    "InterlockConfig",
    "LiteLLMSettings",
    "ModelEntry",
    "ModelInfo",
    "build_catalog",
    "config_from_router_kwargs",
    "load_config",
]

ENV_PREFIX = "os.environ/"
_MILLION = Decimal(1_000_000)
# Names whose values are secrets: masked in reprs, errors and the catalog.
_SECRET_NAME = re.compile(r"(api_key|master_key|password|secret|credential|access_key|"
                          r"session_token|auth)", re.IGNORECASE)
# litellm_params keys that LiteLLM users write and Interlock has no field for:
# accepted quietly and handed to the adapter in `Deployment.extra`.
PASSTHROUGH_PARAMS = frozenset({
    "organization", "headers", "max_retries", "num_retries", "temperature", "top_p", "seed",
    "stop", "max_completion_tokens", "region_name", "vertex_project", "vertex_location",
    "vertex_credentials", "aws_access_key_id", "aws_secret_access_key", "aws_region_name",
    "aws_session_token", "tags", "base_model", "use_in_pass_through", "mock_response",
    "input_cost_per_second", "output_cost_per_second", "litellm_credential_name",
})
_Fallbacks = list[dict[str, list[str]]] | dict[str, list[str]]


def _env_ref(value: object) -> str | None:
    """The variable name of an `os.environ/VAR` reference, else None."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX):].strip()
    return None


def _split_model(model: str, custom_provider: str | None) -> tuple[str, str]:
    if custom_provider:
        prefix = f"{custom_provider}/"
        return custom_provider, model[len(prefix):] if model.startswith(prefix) else model
    provider, _, model_id = model.partition("/")
    return provider, model_id


# ---------------------------------------------------------------- schema


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

    @field_validator("custom_llm_provider")
    @classmethod
    def _known_custom_provider(cls, value: str | None) -> str | None:
        if value is not None:
            _require_known_provider(value, value)
        return value

    @field_validator("model")
    @classmethod
    def _known_provider(cls, value: str, info: ValidationInfo) -> str:
        custom = info.data.get("custom_llm_provider")
        provider, model_id = _split_model(value, custom)
        if not model_id:
            raise PydanticCustomError(
                "model_form", "expected '<provider>/<model-id>', for example "
                "'anthropic/claude-sonnet-4-20250514'")
        _require_known_provider(provider, value)
        return value

    @property
    def provider(self) -> str:
        return _split_model(self.model, self.custom_llm_provider)[0]

    @property
    def model_id(self) -> str:
        return _split_model(self.model, self.custom_llm_provider)[1]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            secret = name is not None and _SECRET_NAME.search(name) and value is not None
            yield name, "********" if secret and not isinstance(value, SecretStr) else value


def _require_known_provider(provider: str, model: str) -> None:
    from interlock.adapters.registry import known_providers

    known = known_providers()
    if provider not in known:
        raise PydanticCustomError(
            "unknown_provider",
            "expected '<provider>/<model-id>' with a known provider ({known}); "
            "for example 'anthropic/claude-sonnet-4-20250514' or 'gemini/gemini-2.5-pro'"
            "{hint}",
            {"known": ", ".join(known), "hint": _did_you_mean(provider, known)},
        )


class ModelInfo(BaseModel):
    """`model_info` of one entry: free-form, with the keys Interlock reads typed."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, min_length=1)
    mode: str | None = None
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

    @property
    def group(self) -> str:
        return self.model_name

    @property
    def info(self) -> ModelInfo:
        return self.model_info or ModelInfo()


class LiteLLMSettings(BaseModel):
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
    set_verbose: bool | None = None
    json_logs: bool | None = None
    success_callback: Any = None
    failure_callback: Any = None
    callbacks: Any = None
    service_callback: Any = None
    cache: Any = None
    cache_params: Any = Field(default=None, repr=False)
    telemetry: Any = None
    turn_off_message_logging: Any = None
    redact_user_api_key_info: Any = None
    modify_params: Any = None


class GeneralSettings(BaseModel):
    """`general_settings`: the gateway's own settings."""

    model_config = ConfigDict(extra="forbid")

    IGNORED: ClassVar[frozenset[str]] = frozenset({
        "database_url", "store_model_in_db", "alerting", "disable_spend_logs",
        "proxy_batch_write_at", "background_health_checks", "health_check_interval",
    })

    # A literal or `os.environ/VAR`; after loading, the resolved key (or
    # INTERLOCK_MASTER_KEY from the environment when the file gives none).
    master_key: SecretStr | None = None
    # Serve without a key; the server allows it only on a loopback address.
    allow_unauthenticated: bool = False
    max_request_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    drain_timeout: float = Field(default=30.0, ge=0)
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    database_url: Any = Field(default=None, repr=False)
    store_model_in_db: Any = None
    alerting: Any = None
    disable_spend_logs: Any = None
    proxy_batch_write_at: Any = None
    background_health_checks: Any = None
    health_check_interval: Any = None


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

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # RouterSettings holds Redis credentials as plain strings.
        for name, value in super().__repr_args__():
            yield name, _masked_router(value) if isinstance(value, RouterSettings) else value


def _masked_router(settings: RouterSettings) -> RouterSettings:
    update: dict[str, Any] = {}
    if settings.redis_password:
        update["redis_password"] = "********"
    if settings.redis_url:
        update["redis_url"] = re.sub(r"://([^:@/]*):([^@/]*)@", r"://\1:********@",
                                     settings.redis_url)
    return settings.model_copy(update=update) if update else settings


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


# ---------------------------------------------------------------- loading


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> InterlockConfig:
    """Load and check a config from a YAML file path or the same structure as dicts.

    Raises `ConfigError` listing every problem found. `environ` (default: the
    process environment, read now) resolves `os.environ/VAR` references and the
    providers' default key variables.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    data, path = _read_source(source)
    where = str(path) if path else "(dict)"
    problems: list[str] = []
    warnings: list[str] = []
    data = _prepare(data, env, problems, warnings)
    config = _validate(data, problems)
    if config is not None:
        problems.extend(_cross_check(config))
    if problems or config is None:
        raise _config_error(where, problems)
    warnings.extend(_fold_litellm_settings(config))
    warnings.extend(_resolve_master_key(config.general_settings, env))
    warnings.extend(_availability_warnings(config, env))
    config._warnings = warnings
    config._environ = env
    config._source = path
    return config


def config_from_router_kwargs(
    model_list: Iterable[Mapping[str, Any]],
    *,
    environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> InterlockConfig:
    """The config that `Router(model_list=..., num_retries=3, ...)` describes.

    Keyword arguments are router_settings fields; None means "not given", as in
    LiteLLM. An unknown keyword raises `ConfigError` with a did-you-mean.
    """
    valid = list(RouterSettings.model_fields)
    problems = [
        f"Router({key}=...): unknown keyword argument{_did_you_mean(key, valid)}"
        for key in kwargs if key not in RouterSettings.model_fields
    ]
    if problems:
        raise _config_error("(Router arguments)", problems)
    settings = {k: v for k, v in kwargs.items() if v is not None}
    return load_config({"model_list": list(model_list), "router_settings": settings},
                       environ=environ)


def _read_source(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Any, Path | None]:
    if isinstance(source, Mapping):
        return dict(source), None
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc.strerror or exc}") from None
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"Invalid YAML in {path}{at}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid YAML in {path}: {exc}") from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise _config_error(str(path), loader.duplicates)
    if data is None:
        raise ConfigError(f"The config file {path} is empty; expected a mapping with model_list.")
    return data, path


class _Loader(yaml.SafeLoader):
    """SafeLoader that notes keys given twice in one mapping, which PyYAML would
    otherwise resolve silently in favour of the last."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value in seen:
                self.duplicates.append(
                    f"line {key_node.start_mark.line + 1}: the key {key_node.value!r} appears "
                    "twice in the same mapping; expected each key once")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _prepare(data: Any, env: Mapping[str, str], problems: list[str],
             warnings: list[str]) -> dict[str, Any]:
    """Checks that pydantic cannot make, on the raw data; returns a copy to validate."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"Invalid config: the top level is {type(data).__name__}; expected a mapping "
            f"with the keys {', '.join(InterlockConfig.model_fields)}.")
    # `litellm_settings:` with every line under it commented out reads as None.
    prepared = {k: v for k, v in data.items() if v is not None}
    if isinstance(prepared.get("router_settings"), Mapping):
        prepared["router_settings"] = _resolve_section_env(
            prepared["router_settings"], "router_settings", env, warnings)
    if prepared.get("environment_variables"):
        warnings.append("environment_variables: ignored; Interlock reads keys from the process "
                        "environment, so export them before starting")
    model_list = prepared.get("model_list")
    if isinstance(model_list, list):
        for index, entry in enumerate(model_list):
            problems.extend(_check_params_keys(index, entry, warnings))
    return prepared


def _resolve_section_env(section: Mapping[str, Any], name: str, env: Mapping[str, str],
                         warnings: list[str]) -> dict[str, Any]:
    # LiteLLM files write `redis_host: os.environ/REDIS_HOST`; an unset variable
    # leaves the setting out (with a warning) rather than stopping the server.
    resolved: dict[str, Any] = {}
    for key, value in section.items():
        var = _env_ref(value)
        if var is None:
            resolved[key] = value
        elif env.get(var):
            resolved[key] = env[var]
        else:
            warnings.append(f"{name}.{key}: the environment variable {var} is not set; "
                            "the setting is left out")
    return resolved


def _check_params_keys(index: int, entry: Any, warnings: list[str]) -> list[str]:
    if not isinstance(entry, Mapping):
        return []
    if "litellm_params" in entry and "params" in entry:
        return [f"model_list[{index}]: both litellm_params and params are given; "
                "expected one of them (params is an alias)"]
    key_name = "params" if "params" in entry else "litellm_params"
    params = entry.get(key_name)
    if not isinstance(params, Mapping):
        return []
    known = list(DeploymentParams.model_fields)
    problems = []
    for key in params:
        if not isinstance(key, str) or key in DeploymentParams.model_fields:
            continue
        if key in PASSTHROUGH_PARAMS:
            continue
        path = f"model_list[{index}].{key_name}.{key}"
        # A near miss of a key Interlock reads is a typo that would silently
        # drop a limit or a key; anything else is a provider-specific parameter.
        if difflib.get_close_matches(key, known, n=1, cutoff=0.8):
            problems.append(f"{path}: unknown key{_did_you_mean(key, known)}")
        else:
            warnings.append(f"{path}: not a key Interlock reads; passed to the adapter as a "
                            f"provider-specific parameter{_did_you_mean(key, known)}")
    return problems


def _validate(data: dict[str, Any], problems: list[str]) -> InterlockConfig | None:
    try:
        config = InterlockConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_merge_same_path(_describe(err) for err in exc.errors()))
        return None
    return config


# ---------------------------------------------------------------- error report


def _config_error(where: str, problems: list[str]) -> ConfigError:
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    lines = "\n".join(f"  - {redact(p)}" for p in problems)
    return ConfigError(f"Invalid Interlock config {where}: {count}:\n{lines}")


def _path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _is_union_tag(part):
            text += f".{part}" if text else part
    return text or "(top level)"


def _is_union_tag(part: str) -> bool:
    # pydantic names the member of a union it tried: 'list[...]', 'function-after[...]'.
    return bool(re.match(r"^[\w-]+\[.*\]$", part))


def _show(value: Any, loc: Sequence[str | int]) -> str:
    names = [p for p in loc if isinstance(p, str) and not _is_union_tag(p)]
    if names and _SECRET_NAME.search(names[-1]):
        return "'********'"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(err: Mapping[str, Any]) -> tuple[str, str]:
    """(path, what is wrong) for one pydantic error."""
    loc = tuple(err["loc"])
    path = _path(loc)
    kind, msg = err["type"], str(err["msg"])
    if kind == "value_error" and isinstance(err.get("input"), Mapping):
        # A whole-section check (a model validator) has a sentence, not a bad value.
        return path, msg.removeprefix("Value error, ")
    if kind == "missing":
        return path, "missing; this key is required"
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        return path, "unknown key" + _did_you_mean(str(loc[-1]), valid or [])
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
    elif not msg.startswith("expected"):
        msg = msg[:1].lower() + msg[1:]
    return path, f"got {_show(err.get('input'), loc)}; {msg}"


def _merge_same_path(described: Iterable[tuple[str, str]]) -> list[str]:
    # A union field fails once per member; say it once ("expected a list or a dict").
    merged: dict[str, str] = {}
    for path, text in described:
        if path in merged and "; expected " in text and "; expected " in merged[path]:
            merged[path] += " or " + text.split("; expected ", 1)[1]
        elif path not in merged:
            merged[path] = text
    return [f"{path}: {text}" for path, text in merged.items()]


def _did_you_mean(key: str, valid: Sequence[str], *, list_valid: bool = True) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if list_valid and valid and len(valid) <= 30:
        return f"; expected one of: {', '.join(valid)}"
    return ""


def _valid_keys(loc: Sequence[str | int]) -> list[str] | None:
    """The keys the model at `loc` (under InterlockConfig) accepts."""
    current: Any = InterlockConfig
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    model = _as_model(current)
    if model is None:
        return None
    keys: list[object] = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        keys.extend(alias.choices if isinstance(alias, AliasChoices) else [name])
    return [k for k in keys if isinstance(k, str)]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _step(annotation: Any, part: str | int) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _step(get_args(annotation)[0], part)
    if origin in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        steps = (_step(m, part) for m in members)
        return next((s for s in steps if s is not None), None)
    model = _as_model(annotation)
    if model is not None:
        if isinstance(part, str):
            for name, field in model.model_fields.items():
                alias = field.validation_alias
                names = alias.choices if isinstance(alias, AliasChoices) else [name]
                if part in names:
                    return field.annotation
        return None
    args = get_args(annotation)
    if origin in (list, Sequence, tuple) and isinstance(part, int) and args:
        return args[0]
    if origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
        return args[1]
    return None


# ---------------------------------------------------------------- cross-checks


def _cross_check(config: InterlockConfig) -> list[str]:
    groups = config.group_names
    targets = groups + [g for g in config.routing.groups if g not in groups]
    problems: list[str] = []
    for section in ("router_settings", "litellm_settings"):
        problems.extend(_check_fallbacks(getattr(config, section), section, targets))
    problems.extend(_check_routing(config.routing, groups, targets))
    problems.extend(_check_ids(config.model_list))
    problems.extend(_check_prices(config.model_list))
    problems.extend(_check_budgets(config))
    problems.extend(_check_general(config.general_settings))
    return problems


def _unknown_group(path: str, name: object, targets: Sequence[str]) -> str:
    return (f"{path}: got {name!r}; expected a model group (known: {', '.join(targets)})"
            f"{_did_you_mean(str(name), targets, list_valid=False)}")


def _fallback_pairs(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, group name) for every name in a fallbacks setting."""
    if isinstance(value, dict):
        value = [value]
        single = True
    else:
        single = False
    for i, mapping in enumerate(value or []):
        where = path if single else f"{path}[{i}]"
        for source, fallbacks in mapping.items():
            if source != "*":  # LiteLLM's "any group" key
                yield f"{where}.{source}", source
            for j, target in enumerate(fallbacks):
                yield f"{where}.{source}[{j}]", target


def _check_fallbacks(settings: BaseModel, section: str, targets: Sequence[str]) -> list[str]:
    problems = []
    for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for path, name in _fallback_pairs(getattr(settings, field), f"{section}.{field}"):
            if name not in targets:
                problems.append(_unknown_group(path, name, targets))
    for j, name in enumerate(getattr(settings, "default_fallbacks", None) or []):
        if name not in targets:
            problems.append(_unknown_group(f"{section}.default_fallbacks[{j}]", name, targets))
    return problems


def _check_routing(routing: RoutingSettings, groups: Sequence[str],
                   targets: Sequence[str]) -> list[str]:
    problems = []
    for field in ("default_group", "strong_group", "weak_group"):
        name = getattr(routing, field, None)
        if name is not None and name not in targets:
            problems.append(_unknown_group(f"routing.{field}", name, targets))
    for router_name, router in routing.routers.items():
        problems.extend(_check_router_groups(f"routing.routers.{router_name}", router, targets))
    for routed, spec in routing.groups.items():
        if routed in groups:
            problems.append(f"routing.groups.{routed}: got {routed!r}; expected a name that is "
                            "not also a model_name in model_list (a request could mean either)")
        problems.extend(_check_routed_members(f"routing.groups.{routed}", spec, targets))
    return problems


def _check_routed_members(path: str, spec: Any, targets: Sequence[str]) -> list[str]:
    problems = []
    for key in ("strong", "weak", "default"):
        name = _spec_get(spec, key)
        if isinstance(name, str) and name not in targets:
            problems.append(_unknown_group(f"{path}.{key}", name, targets))
    members = _spec_get(spec, "members")
    for j, name in enumerate(members if isinstance(members, list) else []):
        if name not in targets:
            problems.append(_unknown_group(f"{path}.members[{j}]", name, targets))
    return problems


def _check_router_groups(path: str, router: Any, targets: Sequence[str]) -> list[str]:
    # Rules and intents each name a group; a router may name a default and a judge.
    problems = []
    for key in ("default", "judge_group"):
        name = _spec_get(router, key)
        if isinstance(name, str) and name not in targets:
            problems.append(_unknown_group(f"{path}.{key}", name, targets))
    for key in ("rules", "intents"):
        items = _spec_get(router, key)
        for j, item in enumerate(items if isinstance(items, list) else []):
            name = _spec_get(item, "group")
            if isinstance(name, str) and name not in targets:
                problems.append(_unknown_group(f"{path}.{key}[{j}].group", name, targets))
    return problems


def _spec_get(spec: Any, key: str) -> Any:
    # Tolerates dicts and models, so the routing schema can change shape freely.
    return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)


def _check_ids(entries: Sequence[ModelEntry]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for index, entry in enumerate(entries):
        ident = entry.info.id
        if ident is None:
            continue
        if ident in first:
            problems.append(f"model_list[{index}].model_info.id: got {ident!r}; expected a unique "
                            f"id (model_list[{first[ident]}] has it too)")
        first.setdefault(ident, index)
    return problems


def _check_prices(entries: Sequence[ModelEntry]) -> list[str]:
    problems = []
    for index, entry in enumerate(entries):
        params = entry.litellm_params
        for side in ("input", "output"):
            per_token = getattr(params, f"{side}_cost_per_token")
            per_million = getattr(params, f"{side}_cost_per_million")
            if per_token is not None and per_million is not None:
                problems.append(
                    f"model_list[{index}].litellm_params.{side}_cost_per_million: got "
                    f"{str(per_million)!r}; expected either {side}_cost_per_token or "
                    f"{side}_cost_per_million, not both")
    return problems


def _check_budgets(config: InterlockConfig) -> list[str]:
    from interlock.adapters.registry import known_providers

    names = config.deployment_names()
    known = {"model_group": config.group_names, "deployment": names,
             "provider": known_providers()}
    problems = []
    for index, budget in enumerate(config.budgets):
        for field, valid in known.items():
            value = getattr(budget, field)
            if value is not None and value not in valid:
                problems.append(f"budgets[{index}].{field}: got {value!r}; expected one of: "
                                f"{', '.join(valid)}")
    return problems


def _check_general(general: GeneralSettings) -> list[str]:
    loopback = {"127.0.0.1", "localhost", "::1"}
    if general.allow_unauthenticated and general.host and general.host not in loopback:
        return [f"general_settings.host: got {general.host!r}; expected a loopback address "
                "(127.0.0.1, localhost, ::1) while allow_unauthenticated is true"]
    return []


# ---------------------------------------------------------------- after validation


def _fold_litellm_settings(config: InterlockConfig) -> list[str]:
    settings = config.litellm_settings
    router = config.router_settings
    warnings = []
    for source, target in LiteLLMSettings.FOLDED.items():
        value = getattr(settings, source)
        if value is None:
            continue
        if target in router.model_fields_set:
            if getattr(router, target) != value:
                warnings.append(f"litellm_settings.{source}: overridden by "
                                f"router_settings.{target}")
            continue
        setattr(router, target, value)
    for key in sorted(settings.model_fields_set & LiteLLMSettings.IGNORED):
        warnings.append(f"litellm_settings.{key}: accepted for LiteLLM compatibility; "
                        "it has no effect in Interlock")
    general = config.general_settings
    for key in sorted(general.model_fields_set & GeneralSettings.IGNORED):
        warnings.append(f"general_settings.{key}: accepted for LiteLLM compatibility; "
                        "it has no effect in Interlock")
    return warnings


def _resolve_master_key(general: GeneralSettings, env: Mapping[str, str]) -> list[str]:
    raw = general.master_key.get_secret_value() if general.master_key else None
    var = _env_ref(raw)
    if raw is None:
        fallback = env.get("INTERLOCK_MASTER_KEY")
        general.master_key = SecretStr(fallback) if fallback else None
        return []
    if var is None:
        return []
    value = env.get(var)
    general.master_key = SecretStr(value) if value else None
    if value:
        return []
    return [f"general_settings.master_key: the environment variable {var} is not set; "
            "the gateway has no master key"]


def _availability_warnings(config: InterlockConfig, env: Mapping[str, str]) -> list[str]:
    warnings = []
    for index, (entry, name) in enumerate(zip(config.model_list, config.deployment_names(),
                                              strict=True)):
        reason = _resolve_entry(entry, env)[2]
        if reason:
            warnings.append(f"model_list[{index}] ({name}): unavailable: {reason}")
    return warnings


def _resolve_entry(entry: ModelEntry, env: Mapping[str, str]
                   ) -> tuple[Secret | None, dict[str, Any], str | None]:
    """(key, resolved parameters, why unavailable) for one entry under `env`."""
    params = entry.litellm_params
    key, reasons = _resolve_key(params, env)
    resolved: dict[str, Any] = {}
    raw = {"api_base": params.api_base, "api_version": params.api_version,
           "extra_headers": params.extra_headers, **(params.model_extra or {})}
    for name, value in raw.items():
        if value is None:
            continue
        value, missing = _resolve_value(value, env)
        reasons.extend(f"the environment variable {var} (litellm_params.{name}) is not set"
                       for var in missing)
        if not missing:
            resolved[name] = Secret(value) if _SECRET_NAME.search(name) else value
    return key, resolved, "; ".join(reasons) or None


def _resolve_value(value: Any, env: Mapping[str, str]) -> tuple[Any, list[str]]:
    """`value` with `os.environ/VAR` references resolved (inside dicts too, for
    extra_headers), and the names of the variables that are unset."""
    if isinstance(value, Mapping):
        pairs = {k: _resolve_value(v, env) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, [m for _, ms in pairs.values() for m in ms]
    var = _env_ref(value)
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
    var = _env_ref(raw)
    if var is not None:
        value = env.get(var)
        if value:
            return Secret(value), []
        return None, [f"the environment variable {var} (litellm_params.api_key) is not set"]
    if not raw and provider not in KEYLESS_PROVIDERS:
        return None, ["litellm_params.api_key is empty"]
    return (Secret(raw) if raw else None), []


# ---------------------------------------------------------------- catalog


def build_catalog(config: InterlockConfig, *, environ: Mapping[str, str] | None = None
                  ) -> Catalog:
    """One `Deployment` per model_list entry, keys and base URLs resolved under
    `environ` (default: the environment the config was loaded with)."""
    env = environ if environ is not None else config._environ
    if env is None:
        env = os.environ
    names = config.deployment_names()
    default_drop = bool(config.litellm_settings.drop_params)
    return Catalog.from_deployments(
        _deployment(entry, name, env, default_drop)
        for entry, name in zip(config.model_list, names, strict=True)
    )


def _first(*values: Any) -> Any:
    """The first value that is not None (a price of 0 is a price)."""
    return next((v for v in values if v is not None), None)


def _per_token(per_token: Decimal | None, per_million: Decimal | None) -> Decimal | None:
    if per_token is not None:
        return per_token
    return per_million / _MILLION if per_million is not None else None


def _deployment(entry: ModelEntry, name: str, env: Mapping[str, str],
                default_drop: bool) -> Deployment:
    from interlock.adapters.registry import resolve_base_url

    params, info = entry.litellm_params, entry.info
    key, resolved, reason = _resolve_entry(entry, env)
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
        weight=_first(params.weight, 1.0),
        rpm=params.rpm,
        tpm=params.tpm,
        max_input_tokens=_first(params.max_input_tokens, info.max_input_tokens),
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
    )
