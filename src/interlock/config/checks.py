"""Checks across config sections that no single field can make: fallbacks and
routing naming groups that exist, unique deployment ids, one price form per
side, budgets naming real targets (one budget per target and period),
unauthenticated serving only on loopback, Redis settings redis-py can connect
with, and the optional packages that Redis or PostgreSQL settings need.

Imports: the standard library, `errors`, `config.schema`, `config.report`, the
leaf settings modules; `adapters.registry` and `redis.connection` inside functions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from importlib.util import find_spec
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel

from interlock.config.report import did_you_mean
from interlock.config.schema import GeneralSettings, InterlockConfig, ModelEntry
from interlock.costs.settings import URL_SCHEME, Budget
from interlock.dispatch.settings import RouterSettings
from interlock.errors import redact
from interlock.routing.settings import RoutingSettings


def cross_check(config: InterlockConfig) -> list[str]:
    groups = config.group_names
    targets = groups + [g for g in config.routing.groups if g not in groups]
    problems: list[str] = []
    for section in ("router_settings", "litellm_settings"):
        problems.extend(_check_fallbacks(getattr(config, section), section, targets))
    problems.extend(_check_routing(config.routing, groups, targets))
    problems.extend(_check_aliases(config.router_settings.group_aliases(), groups, targets))
    problems.extend(_unknown_group(f"router_settings.model_group_retry_policy.{name}", name,
                                   groups)
                    for name in config.router_settings.model_group_retry_policy
                    if name not in groups)
    problems.extend(_check_ids(config.model_list))
    problems.extend(_check_prices(config.model_list))
    problems.extend(_check_budgets(config))
    problems.extend(_check_general(config.general_settings))
    problems.extend(_check_redis(config.router_settings))
    problems.extend(_check_extras(config))
    return problems


# What redis-py's from_url accepts.
_REDIS_FORMS = "redis://, rediss:// or unix:// (redis://HOST:6379/0)"


def redis_url_problem(url: str) -> str | None:
    """Why redis-py could not connect with `url`, else None. Nothing of the URL but
    its scheme is quoted: it may carry a password, in places redaction misses."""
    scheme, sep, _ = url.partition("://")
    if not sep or not URL_SCHEME.match(scheme):
        return f"got no scheme; expected {_REDIS_FORMS}"
    if scheme not in ("redis", "rediss", "unix"):
        return f"got a {scheme}:// URL; expected {_REDIS_FORMS}"
    parts = urlsplit(url)
    if scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path (unix:///PATH)"
    try:
        port_ok = parts.port != 0
    except ValueError:
        port_ok = False
    if not port_ok:
        return "the port is not a number from 1 to 65535 (redis://HOST:6379/0)"
    db = unquote(parts.path).replace("/", "")
    if db and not db.isdigit() and "db" not in parse_qs(parts.query):
        # redis-py would quietly use database 0 instead.
        return "the path after the host must be a database number (redis://HOST:6379/0)"
    return _redis_py_refusal(url, parts.password)


def _redis_py_refusal(url: str, password: str | None) -> str | None:
    # What is left (the query's options) is redis-py's to judge, as the pool will.
    if find_spec("redis") is None:
        return None  # _check_extras says the package is missing
    from redis.connection import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        return redact(str(exc), password, unquote(password or ""))
    return None


def _check_redis(settings: RouterSettings) -> list[str]:
    """redis_url, else LiteLLM's redis_host and redis_port, which the budgets
    join into a URL (`redis_connection_url`)."""
    if settings.redis_url:
        problem = redis_url_problem(settings.redis_url)
        return [f"router_settings.redis_url: {problem}"] if problem else []
    problems = []
    port = settings.redis_port
    if port is not None and not 0 < port <= 65535:
        problems.append(f"router_settings.redis_port: got {port}; expected a number "
                        "from 1 to 65535")
    if settings.redis_host:
        problem = _redis_host_problem(settings.redis_host)
        if problem is None and not problems:
            problem = redis_url_problem(settings.redis_connection_url() or "")
        if problem:
            problems.append(f"router_settings.redis_host: {problem}")
    return problems


def _redis_host_problem(host: str) -> str | None:
    if "://" in host:
        return "got a URL; expected a host name alone, or the whole URL as redis_url"
    if "@" in host:
        return ("got a host with credentials; expected the host alone (the password "
                "goes in redis_password)")
    if "/" in host:
        return "got a host with a path; expected the host alone, or a URL as redis_url"
    if ":" not in host:
        return None
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return ("got a host with a port; expected the host alone (the port goes in "
                "redis_port)")
    return f"got an IPv6 address; expected it as redis_url (redis://[{host}]:6379/0)"


def _check_extras(config: InterlockConfig) -> list[str]:
    """Settings that need an optional package: say so at load, not on the first
    request (a budget gate without redis would fail every call it covers)."""
    problems = []
    settings = config.router_settings
    if (settings.redis_url or settings.redis_host) and find_spec("redis") is None:
        field = "redis_url" if settings.redis_url else "redis_host"
        problems.append(f"router_settings.{field}: Redis is configured but the redis package "
                        "is not installed; expected pip install 'interlock[redis]'")
    database = config.ledger.database or ""
    scheme = database.split("://", 1)[0] if "://" in database else ""
    if scheme.startswith("postgresql"):
        driver = scheme.partition("+")[2] or "psycopg2"  # SQLAlchemy's default for postgresql://
        if find_spec(driver) is None:
            problems.append(
                f"ledger.database: got a {scheme}:// URL but the {driver} driver is not "
                "installed; expected postgresql+psycopg://... with pip install "
                "'interlock[postgres]'")
    return problems


def _unknown_group(path: str, name: object, targets: Sequence[str]) -> str:
    return (f"{path}: got {name!r}; expected a model group (known: {', '.join(targets)})"
            f"{did_you_mean(str(name), targets, list_valid=False)}")


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


def _check_aliases(aliases: Mapping[str, Any], groups: Sequence[str],
                   targets: Sequence[str]) -> list[str]:
    problems = []
    for alias, target in aliases.items():
        path = f"router_settings.model_group_alias.{alias}"
        if alias in targets:
            problems.append(f"{path}: got {alias!r}; expected a name that is not also a "
                            "model group (a request could mean either)")
        if target.model not in targets:
            problems.append(_unknown_group(path, target.model, targets))
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
             "provider": known_providers(),
             "api_key": [k.name for k in config.general_settings.api_keys]}
    problems = []
    for index, budget in enumerate(config.budgets):
        for field, valid in known.items():
            value = getattr(budget, field)
            if value is not None and value not in valid:
                problems.append(f"budgets[{index}].{field}: got {value!r}; expected one of: "
                                f"{', '.join(valid)}")
    return problems + _check_budgets_unique(config.budgets)


def _check_budgets_unique(budgets: Sequence[Budget]) -> list[str]:
    # Two budgets of one target and period count each call twice, and on Redis
    # share one counter key, where a reservation of one was never settled.
    first: dict[tuple[str, str, str | float], int] = {}
    problems = []
    for index, budget in enumerate(budgets):
        key = (*budget.target, budget.period)
        if key in first:
            kind, name = budget.target
            problems.append(
                f"budgets[{index}]: the same target and period as budgets[{first[key]}] "
                f"({kind} {name!r}, {budgets[first[key]].limit} and {budget.limit}); "
                "expected one budget for each target and period: keep one of them")
        first.setdefault(key, index)
    return problems


def _check_general(general: GeneralSettings) -> list[str]:
    loopback = {"127.0.0.1", "localhost", "::1"}
    problems = []
    if general.allow_unauthenticated and general.host and general.host not in loopback:
        problems.append(f"general_settings.host: got {general.host!r}; expected a loopback "
                        "address (127.0.0.1, localhost, ::1) while allow_unauthenticated is true")
    names = [k.name for k in general.api_keys]
    problems += [f"general_settings.api_keys: the name {name!r} is given twice; each key's "
                 "name must be its own (it is what the ledger records)"
                 for name in sorted({n for n in names if names.count(n) > 1})]
    return problems

