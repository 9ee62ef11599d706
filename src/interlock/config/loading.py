"""`load_config` and `config_from_router_kwargs`: from a file, dicts or Router
keyword arguments to a checked `InterlockConfig`.

Reading (YAML with its line numbers, duplicate keys caught), the checks that
must see the raw data (typos among litellm_params), validation, cross-checks,
then what follows a valid load: folding litellm_settings in, resolving the
master key, and warning about deployments that will be unavailable.

Imports: yaml, pydantic, the standard library, `errors`, `key_names`,
`costs.settings`, `dispatch.settings`, `config.*`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from interlock.config.build import resolve_entry
from interlock.config.checks import cross_check
from interlock.config.report import config_error, describe_validation_error, did_you_mean
from interlock.config.schema import (
    CALL_DEFAULT_PARAMS,
    NO_EFFECT_PARAMS,
    PASSTHROUGH_PARAMS,
    DeploymentParams,
    GeneralSettings,
    InterlockConfig,
    LiteLLMSettings,
    env_ref,
)
from interlock.costs.settings import LedgerSettings
from interlock.dispatch.settings import RouterSettings
from interlock.errors import ConfigError
from interlock.key_names import SECRET_PREFIX, holds_key_like, name_parts


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    label: str = "(dict)",
) -> InterlockConfig:
    """Load and check a config from a YAML file path or the same structure as dicts.

    Raises `ConfigError` listing every problem found. `environ` (default: the
    process environment, read now) resolves `os.environ/VAR` references and the
    providers' default key variables.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    data, path, lines = _read_source(source)
    where = str(path) if path else label  # errors say where the config came from
    problems: list[str] = []
    warnings: list[str] = []
    data = _prepare(data, env, problems, warnings)
    config = _validate(data, problems)
    if config is not None:
        problems.extend(cross_check(config))
    if problems or config is None:
        raise config_error(where, problems, lines)
    if path is not None:
        # Not the working directory: `interlock serve --config /etc/interlock/...`
        # runs from anywhere, and the file's own paths must not depend on where.
        # (The ledger's SQLite path stays relative to the working directory, as it
        # always was: moving it would leave an existing ledger behind unseen.)
        config.routing.read_paths_from(path.absolute().parent)
    warnings.extend(_fold_litellm_settings(config))
    warnings.extend(_resolve_master_key(config.general_settings, env))
    warnings.extend(_resolve_api_keys(config.general_settings, env))
    warnings.extend(_key_like_names(config.general_settings))
    warnings.extend(_availability_warnings(config, env))
    warnings.extend(_unread_settings_warnings(config))
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
    valid = [*RouterSettings.model_fields, *sorted(RouterSettings.IGNORED)]
    problems = [
        f"Router({key}=...): unknown keyword argument{did_you_mean(key, valid)}"
        for key in kwargs if key not in valid
    ]
    if problems:
        raise config_error("(Router arguments)", problems)
    settings = {k: v for k, v in kwargs.items() if v is not None}
    return load_config({"model_list": list(model_list), "router_settings": settings},
                       environ=environ, label="(Router arguments)")


def _read_source(source: str | os.PathLike[str] | Mapping[str, Any]
                 ) -> tuple[Any, Path | None, dict[str, int]]:
    """(data, file path or None, line of each path in the file)."""
    if isinstance(source, Mapping):
        return dict(source), None, {}
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc.strerror or exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
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
        raise config_error(str(path), loader.duplicates)
    if data is None or node is None:
        raise ConfigError(f"The config file {path} is empty; expected a mapping with model_list.")
    lines: dict[str, int] = {}
    _node_lines(node, "", lines, depth=0)
    return data, path, lines


def _node_lines(node: yaml.Node, path: str, lines: dict[str, int], depth: int) -> None:
    """Record the line of every key and list item, by the path the error report uses."""
    if depth > 64:  # aliases can make a node its own descendant
        return
    children: list[tuple[str, yaml.Node, int]] = []
    if isinstance(node, yaml.MappingNode):
        children = [(f"{path}.{k.value}" if path else str(k.value), v, k.start_mark.line)
                    for k, v in node.value if isinstance(k, yaml.ScalarNode)]
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{path}[{i}]", item, item.start_mark.line)
                    for i, item in enumerate(node.value)]
    for child, value, line in children:
        lines.setdefault(child, line + 1)
        _node_lines(value, child, lines, depth + 1)


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
    general = prepared.get("general_settings")
    keys = general.get("api_keys") if isinstance(general, Mapping) else None
    for index, key in enumerate(keys if isinstance(keys, list) else []):
        if isinstance(key, Mapping) and key.get("models") == []:
            # It meant "nothing" before it meant LiteLLM's "everything": a key
            # parked that way would now widen without a word.
            warnings.append(f"general_settings.api_keys[{index}].models: [] lets the key ask "
                            "for every model, as on LiteLLM's proxy; list the models it may "
                            "use, or remove the key to refuse it everything")
    if isinstance(general, Mapping) and "database_url" in general:
        warnings.append(_database_url_warning(general["database_url"], prepared.get("ledger")))
    if isinstance(prepared.get("ledger"), Mapping):
        prepared["ledger"] = _resolve_ledger_env(prepared["ledger"], env, problems)
    if prepared.get("environment_variables"):
        warnings.append("environment_variables: ignored; Interlock reads keys from the process "
                        "environment, so export them before starting")
    model_list = prepared.get("model_list")
    if isinstance(model_list, list):
        for index, entry in enumerate(model_list):
            problems.extend(_check_params_keys(index, entry, warnings))
    return prepared


def _database_url_warning(value: Any, ledger: Any) -> str:
    """What LiteLLM's `general_settings.database_url` does here (nothing), and how
    to put the ledger in that database, which Interlock does not do unasked: its
    tables would sit beside LiteLLM's. The URL is not quoted (it may hold a
    password); an `os.environ/VAR` reference is, as the value to write."""
    said = "general_settings.database_url: LiteLLM's database; it has no effect in Interlock"
    if isinstance(ledger, Mapping) and "database" in ledger:
        return f"{said}: the spend ledger and the keys made at run time go to ledger.database"
    var = env_ref(value)
    same = f"os.environ/{var}" if var else "the same URL"
    return (f"{said}, whose spend ledger and keys made at run time (/key/generate) go to "
            f"ledger.database, by default the file {LedgerSettings().database} in the "
            f"working directory. To keep them in that database instead (in tables of "
            f"Interlock's own), set `ledger: {{database: {same}}}`; a postgresql:// URL "
            "needs the postgresql+psycopg:// scheme there (docs/costs.md, Databases)")


def _resolve_section_env(section: Mapping[str, Any], name: str, env: Mapping[str, str],
                         warnings: list[str]) -> dict[str, Any]:
    # LiteLLM files write `redis_host: os.environ/REDIS_HOST`; an unset variable
    # leaves the setting out (with a warning) rather than stopping the server.
    resolved, unset = _env_refs_read(section, env)
    warnings.extend(f"{name}.{key}: the environment variable {var} is not set; "
                    "the setting is left out" for key, var in unset)
    return resolved


def _resolve_ledger_env(section: Mapping[str, Any], env: Mapping[str, str],
                        problems: list[str]) -> dict[str, Any]:
    # LiteLLM files write `database_url: os.environ/DATABASE_URL`; read literally,
    # `os.environ/DB` was a relative SQLite path, and the rows went to a file
    # of that name. An unset variable stops the load: falling back to a local
    # file would keep the spend where no one looks for it.
    resolved, unset = _env_refs_read(section, env)
    problems.extend(f"ledger.{key}: the environment variable {var} is not set; "
                    "export it, or write the value in the file" for key, var in unset)
    return resolved


def _env_refs_read(section: Mapping[str, Any], env: Mapping[str, str]
                   ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """`section` with each `os.environ/VAR` value read from `env`, and the (key,
    VAR) of those whose variable is unset, left out: what that means is the
    caller's to say."""
    resolved: dict[str, Any] = {}
    unset: list[tuple[str, str]] = []
    for key, value in section.items():
        var = env_ref(value)
        if var is None:
            resolved[key] = value
        elif env.get(var):
            resolved[key] = env[var]
        else:
            unset.append((key, var))
    return resolved, unset


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
        if key in PASSTHROUGH_PARAMS or key in CALL_DEFAULT_PARAMS:
            continue
        path = f"model_list[{index}].{key_name}.{key}"
        if key in NO_EFFECT_PARAMS:
            warnings.append(f"{path}: accepted for LiteLLM compatibility; it has no effect "
                            "here: retries are router_settings.num_retries")
            continue
        # A near miss of a key Interlock reads is a typo that would silently
        # drop a limit or a key; anything else is a provider-specific parameter.
        if _looks_like_typo(key, known):
            problems.append(f"{path}: unknown key{did_you_mean(key, known)}")
        else:
            warnings.append(f"{path}: not a key Interlock reads; passed to the adapter as a "
                            f"provider-specific parameter{did_you_mean(key, known)}")
    return problems


def _looks_like_typo(key: str, known: Sequence[str]) -> bool:
    # Close by difflib, or the same letters reordered ('rmp' for 'rpm').
    return bool(difflib.get_close_matches(key, known, n=1, cutoff=0.8)) or any(
        sorted(key) == sorted(k) for k in known)


def _validate(data: dict[str, Any], problems: list[str]) -> InterlockConfig | None:
    try:
        config = InterlockConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(describe_validation_error(exc, InterlockConfig))
        return None
    return config


# LiteLLM's response-cache settings: one reason for all of them.
_CACHE_SETTINGS = dict.fromkeys(
    ("cache", "cache_params", "cache_responses", "cache_kwargs", "caching_groups"),
    "Interlock has no response cache, so it has no effect")


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
    for section, model in (("litellm_settings", settings), ("router_settings", router),
                           ("general_settings", config.general_settings)):
        warnings.extend(f"{section}.{key}: accepted for LiteLLM compatibility; "
                        f"{_CACHE_SETTINGS.get(key, 'it has no effect in Interlock')}"
                        for key in sorted(model.ignored_keys)
                        if (section, key) != ("general_settings", "database_url"))
    warnings.extend(f"router_settings.retry_policy.{key}: accepted for LiteLLM "
                    "compatibility; Interlock never retries that error on the same "
                    "deployment, it tries the next one"
                    for key in sorted(router.retry_policy.ignored_keys
                                      if router.retry_policy else ()))
    warnings.extend(f"router_settings.allowed_fails_policy.{key}: accepted for LiteLLM "
                    "compatibility; that error never cools a deployment down in Interlock "
                    "(the request was at fault, not the deployment)"
                    for key in sorted(router.allowed_fails_policy.ignored_keys
                                      if router.allowed_fails_policy else ()))
    return warnings


def _resolve_master_key(general: GeneralSettings, env: Mapping[str, str]) -> list[str]:
    raw = general.master_key.get_secret_value() if general.master_key else None
    var = env_ref(raw)
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
    # No fallback to INTERLOCK_MASTER_KEY here: a gateway quietly guarded by a key
    # other than the one the operator named is worse than one that will not start.
    general._unset_master_key_var = var
    return [f"general_settings.master_key: the environment variable {var} is not set, so "
            "the gateway has no master key (INTERLOCK_MASTER_KEY is not used in its place "
            f"when the config names a variable); export {var}"]


def _resolve_api_keys(general: GeneralSettings, env: Mapping[str, str]) -> list[str]:
    """Each client key's `os.environ/VAR` read; a key whose variable is unset is
    left out (no one can use it), and said so."""
    kept, warnings = [], []
    for index, client in enumerate(general.api_keys):
        var = env_ref(client.key.get_secret_value())
        if var is not None:
            value = env.get(var)
            if not value:
                warnings.append(f"general_settings.api_keys[{index}] ({client.name}): the "
                                f"environment variable {var} is not set; the key is off")
                continue
            client.key = SecretStr(value)
        kept.append(client)
    general.api_keys = kept
    return warnings


def names_holding_keys(general: GeneralSettings) -> set[str]:
    """The client keys' names that are, or hold, one of the config's keys or the
    master key (`key_names.name_parts`, as a run-time key's name is judged)."""
    values = {k.key.get_secret_value() for k in general.api_keys}
    if general.master_key is not None:
        values.add(general.master_key.get_secret_value())
    return {k.name for k in general.api_keys
            if name_parts(k.name) & values}


def _key_like_names(general: GeneralSettings) -> list[str]:
    """Warnings (naming no name) for the client keys whose names look like a key
    or are or hold one of the config's keys: a name is logged, kept in the ledger
    and shown by `spend --by key`. Not refused, as for a key made at run time: a
    config that loaded before still loads, and its clients still get in."""
    holding = names_holding_keys(general)
    return [f"general_settings.api_keys[{index}].name: "
            + ("is or holds one of the config's keys" if client.name in holding else
               f"looks like a key or holds one (a word of it starts with {SECRET_PREFIX!r})")
            + ", and a key's name is written in logs, in the ledger and in spend reports; "
            "give it a name to know it by, as \"team-a\" (its past requests stay under "
            "the old name)"
            for index, client in enumerate(general.api_keys)
            if client.name in holding or holds_key_like(client.name)]


def _unread_settings_warnings(config: InterlockConfig) -> list[str]:
    return [f"model_list[{index}].litellm_params.{key} ({name}): ignored; it applies only "
            "to OpenAI-compatible deployments (openai/, groq/, hosted_vllm/, ...), and "
            f"{entry.litellm_params.provider}/ is not one: its adapter knows which "
            "parameters the provider takes (docs/providers.md). Remove it"
            for index, (entry, name) in enumerate(zip(config.model_list,
                                                      config.deployment_names(), strict=True))
            for key in entry.litellm_params.unread_adapter_settings]


def _availability_warnings(config: InterlockConfig, env: Mapping[str, str]) -> list[str]:
    warnings = []
    for index, (entry, name) in enumerate(zip(config.model_list, config.deployment_names(),
                                              strict=True)):
        reason = resolve_entry(entry, env)[2]
        if reason:
            warnings.append(f"model_list[{index}] ({name}): unavailable: {reason}")
    return warnings

