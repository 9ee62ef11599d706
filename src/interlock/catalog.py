"""Deployments and model groups, resolved from the config.

A `Deployment` is one concrete way to call one model: provider, model id,
base URL, key, limits and prices. A `ModelGroup` is the name clients ask for
and the deployments that can serve it. The `Catalog` holds them all; it is
built once from a loaded config (`config.build_catalog`) and then read-only.

Imports: the standard library, `errors`, `types`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from interlock.errors import (
    NAMED_SECRET_MIN,
    UnknownModel,
    a_setting_word,
    named_credentials,
    names_a_credential,
    names_a_credential_outright,
    names_a_description,
    redact,
    url_credentials,
)
from interlock.types import ChatRequest


class Secret:
    """An API key that never shows itself in a repr, str, log line or error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(slots=True, eq=False)
class Deployment:
    name: str
    group: str
    provider: str
    model: str
    api_base: str | None = None
    api_key: Secret | None = field(default=None, repr=False)
    # Why the deployment cannot be used (a missing environment variable, say);
    # None when it can.
    unavailable_reason: str | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    order: int | None = None
    # None when the config gives none: simple-shuffle then weighs by rpm or tpm
    # (`dispatch.selection.shuffle_weights`), so "not given" must stay visible.
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    # Calls in flight to it from this process at most (LiteLLM's
    # max_parallel_requests, else the router's default_max_parallel_requests).
    max_parallel_requests: int | None = None
    max_input_tokens: int | None = None
    # Where max_input_tokens came from, for `interlock check`: "litellm_params",
    # "model_info", or the model data that knew the model's context window
    # ("genai-prices openai/gpt-4o", when the config gives none); None: not known.
    max_input_tokens_from: str | None = None
    # The limit is a model table's (`max_input_tokens_from` names it), not the
    # config's: the pre-call checks skip the deployment only for a prompt surely
    # over it (`dispatch.selection.fits`). Set with it, read per candidate.
    max_input_tokens_listed: bool = False
    max_output_tokens: int | None = None
    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None
    cached_input_cost_per_token: Decimal | None = None
    cooldown_time: float | None = None
    drop_params: bool = False
    # Provider-specific parameters from litellm_params that have no field above
    # (api_version, extra headers, ...); only the adapter reads them.
    extra: dict[str, Any] = field(default_factory=dict)
    model_info: dict[str, Any] = field(default_factory=dict)
    # Call arguments from litellm_params (temperature, max_tokens, ...) that every
    # call to this deployment gets unless it gives its own, as in LiteLLM.
    call_defaults: ChatRequest | None = None
    # LiteLLM's litellm_params.tags, for `enable_tag_filtering`.
    tags: frozenset[str] = frozenset()

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    def __repr__(self) -> str:
        # Not the generated repr: api_base may hold user:password@ and `extra`
        # header values (an authorization header); neither belongs in a log.
        base = redact(self.api_base, *url_credentials(self.api_base)) if self.api_base else None
        return (f"Deployment(name={self.name!r}, group={self.group!r}, "
                f"provider={self.provider!r}, model={self.model!r}, api_base={base!r}, "
                f"available={self.available!r})")

    @property
    def qualified_model(self) -> str:
        return f"{self.provider}/{self.model}"

    def key(self) -> str | None:
        return self.api_key.get() if self.api_key else None

    def secrets(self) -> tuple[str, ...]:
        """What an error text about this deployment must not show (`errors.redact`
        takes them): its key, the credentials in its api_base, the secret
        provider parameters (an AWS secret key, an Azure AD token), and the
        values of its extra headers named as credentials (a proxy's own
        `X-Api-Key` or `Authorization`)."""
        found = [self.key() or ""]
        found += url_credentials(self.api_base or "")
        for name, value in self.extra.items():
            if isinstance(value, Secret):
                # A parameter whose name only mentions a credential is a setting
                # (`use_auth_token: true`, `token_lifetime_seconds: 3600`): its
                # value is one from NAMED_SECRET_MIN characters up, as in a
                # mapping. One the rule does not name was made Secret on purpose.
                outright = names_a_credential_outright(name) or not names_a_credential(name)
                found += _strings_in(value.get(), outright)
        found += _header_credentials(self.extra.get("extra_headers"))
        return tuple(s for s in found if s)


# A header value written `<scheme> <credential>` (`Bearer ...`, `Basic ...`).
_SCHEME_AND_CREDENTIAL = re.compile(r"[A-Za-z][\w.+-]*\s+(\S+)")


def _header_credentials(headers: Any) -> list[str]:
    """The credentials in a deployment's extra headers: the values of those
    named as credentials (`Authorization`, `X-Api-Key`, `Cookie`, a proxy's
    `X-Proxy-Token`; not `X-Request-Source`), read as a secret mapping's fields
    are, and of a value written `<scheme> <credential>` the credential alone
    too: a provider may echo it without its scheme, and one shorter than
    `SECRET_RUN` would then match neither the whole value nor a run of it."""
    if not isinstance(headers, Mapping):
        return []
    found = []
    for value in _strings_in(dict(headers)):
        found.append(value)
        scheme = _SCHEME_AND_CREDENTIAL.fullmatch(value)
        if scheme:
            found.append(scheme.group(1))
    return found


def _strings_in(value: Any, outright: bool = True, named: bool = True,
                inherited: bool = False, top: bool = True) -> list[str]:
    """The text in a secret parameter's value. A value named as a credential
    `outright`, by the parameter or its own field's last word (`private_key`,
    `password`), is one whole, at any length, a number as its digits; one
    `named` with the word elsewhere (`token_lifetime_seconds`) is a secret only
    as a string of `NAMED_SECRET_MIN` characters or more. In a mapping, such as
    a service account's, other fields are not (its project, e-mail and endpoints
    are what an operator reads an error for), but for those `inherited` within a
    field named as a credential, whose long strings are secrets too unless their
    own names describe (a type, an id, an endpoint). A URL anywhere keeps its
    own credentials secret (a SAS `sig=`)."""
    if isinstance(value, str):
        if a_setting_word(value):
            return []
        if outright or ((named or inherited) and len(value) >= NAMED_SECRET_MIN):
            return [value]
        found = url_credentials(value) if "://" in value else []
        if "=" in value:  # a connection string, a SAS query: its named credentials
            found += [s for s in named_credentials(value) if s not in found]
        return found
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            name = str(key)
            within = not top and (named or inherited) and not names_a_description(name)
            out += _strings_in(item, names_a_credential_outright(name),
                               names_a_credential(name), within, False)
        return out
    if isinstance(value, list | tuple):
        return [s for item in value
                for s in _strings_in(item, outright, named, inherited, top)]
    if outright and isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


@dataclass(slots=True)
class ModelGroup:
    name: str
    deployments: list[Deployment] = field(default_factory=list)


@dataclass(slots=True)
class Catalog:
    groups: dict[str, ModelGroup] = field(default_factory=dict)
    # Deployments by name, built on the first lookup (the catalog is read-only
    # once built, and lookups happen on every ledger row).
    _by_name: dict[str, Deployment] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_deployments(cls, deployments: Iterable[Deployment]) -> Catalog:
        catalog = cls()
        for d in deployments:
            catalog.groups.setdefault(d.group, ModelGroup(d.group)).deployments.append(d)
        return catalog

    def group(self, name: str) -> ModelGroup:
        try:
            return self.groups[name]
        except KeyError:
            raise UnknownModel(name, list(self.groups)) from None

    def deployments(self) -> Iterator[Deployment]:
        for g in self.groups.values():
            yield from g.deployments

    def deployment(self, name: str) -> Deployment:
        if not self._by_name:
            self._by_name.update((d.name, d) for d in self.deployments())
        return self._by_name[name]

    @property
    def group_names(self) -> list[str]:
        return list(self.groups)
