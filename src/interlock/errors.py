"""The exception tree. Every error Interlock raises is one of these.

    InterlockError
    ├── ConfigError                  a config file or dict is invalid (load time)
    ├── RouterNotTrained             a learned router has no artefact to load
    ├── RouterClosed                 a library Router used after close() / aclose()
    ├── InternalError                a bug cut a request short (its ledger row's class)
    ├── ClientDisconnected           the client left mid-request (its ledger row's class)
    ├── GatewayShuttingDown          cut at shutdown: drain deadline, budgets closed (HTTP 503)
    ├── InvalidRequest               the caller's request is wrong (HTTP 400)
    │   ├── UnknownModel             no such model group (HTTP 404)
    │   └── UnsupportedParameter     a provider cannot take a parameter (HTTP 400)
    ├── BudgetExceeded               a budget has no money left for the target (HTTP 429)
    ├── KeyRateLimited               a client key is over its own limits (HTTP 429)
    ├── NoDeploymentAvailable        every candidate is cooling or over its limits (HTTP 503)
    └── ProviderError                an upstream call failed; carries provider,
        │                            deployment, status and retry_after
        ├── RateLimited              429, Anthropic rate-limit headers
        ├── Overloaded               503 from any provider, Anthropic 529
        ├── AuthenticationFailed     401, or a missing API key
        │   └── PermissionDenied         403: the key may not use this model or resource
        ├── NotFound                 404: unknown model or path upstream
        ├── BadRequest               a 400 from the provider
        │   ├── ContextWindowExceeded    the prompt is too long for the model
        │   ├── ContentFiltered          the provider refused on safety grounds
        │   └── UnprocessableEntity      422: well-formed, but the provider cannot act on it
        ├── Timeout                  connect, total, first-token or idle timeout
        ├── UpstreamServerError      5xx not covered above
        └── ConnectionFailed         refused, reset, DNS, TLS, broken mid-stream

Adapters convert provider answers into these at their boundary, through a
status table plus each provider's own recognisers (house rule 1): nothing
above the adapters looks at status codes or error texts.

ContextWindowExceeded and ContentFiltered are BadRequests, as LiteLLM's
ContextWindowExceededError and ContentPolicyViolationError are BadRequestErrors,
so that ported code catching the general class still catches them (the
dispatcher tests for the two first: they have fallbacks of their own).
PermissionDenied and UnprocessableEntity keep the upstream's 403 and 422 as
their `status_code`, as LiteLLM's PermissionDeniedError and
UnprocessableEntityError do, but stay subclasses of the classes that stood for
them before, so that handlers, retry rules and cooldowns written for an
authentication failure or a bad request treat them as before.
`interlock.exceptions` gives these classes LiteLLM's names.

Messages never carry API keys: `redact()` is applied to every text that came
from outside before it is stored on an error, with the deployment's secrets
(`catalog.Deployment.secrets`): each is hidden whole and in any run of
`SECRET_RUN` or more of its characters, as providers echo parts of a key. A
message that names the operator's network (a ConnectionFailed's upstream
host, address or URL) has a `client_message` without it, which is what the
gateway tells its clients; the library's caller, the operator, gets the whole
message.

Imports: the standard library only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

_SECRET_PATTERNS = [
    re.compile(r"(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+"),
    re.compile(r"(AIza[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]+"),
    # A key or password in a query (?key=, as Gemini takes it; ?password=, as
    # redis-py and libpq do), up to the next field, space or quote; a ':' right
    # before a space is the message's, as in "could not reach URL: refused".
    re.compile(r"((?:key|api_key|x-api-key|x-goog-api-key|password|passwd|pwd)=)"
               r"[^&\s\"']+?(?=:?(?:[&\s\"']|$))", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9_\-\.]{8,}", re.IGNORECASE),
]
# Where a URL's password may begin (`_hide_url_passwords`), and the end of the
# run of text it is in.
_URL_USER = re.compile(r"://[^:/@\s]*:")
_SPACE = re.compile(r"\s")


# The shortest run of a secret's characters that `redact` hides wherever it
# stands. Providers echo parts of a key they were given ("sk-proj-abc1****wxyz",
# or a proxy quoting a long stretch of it), so the whole key is not enough to
# look for. Shorter runs would hide ordinary text that a key happens to share
# with the message: its provider's fixed prefix ("sk-proj-", 8 characters), a
# word, a number. 12 characters of a random key are some 70 bits of it, and
# the parts a provider's own masking leaves are shorter (OpenAI shows 8 and 4).
SECRET_RUN = 12


def redact(text: str, *secrets: str | None) -> str:
    """Remove the given secrets, any run of `SECRET_RUN` or more characters of
    one of them, and anything shaped like an API key from text."""
    return _Secrets(secrets).hide(text)


def failure_said(exc: BaseException) -> str:
    """An exception for a log line: its type and its message's first line,
    redacted (a database driver's message can quote its URL, password too)."""
    text = str(exc)
    # Redacted whole, then cut: a URL cut first loses the "@host" its password
    # pattern needs, and the password's start would show.
    first = redact(text.splitlines()[0])[:200] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def redact_json(value: Any, *secrets: str | None) -> Any:
    """A decoded JSON value (a provider's error body) with `redact` applied to
    every string in it, keys included. String by string: run over the
    serialised text, the `key=...` pattern could take an escaped quote's
    backslash with it and leave JSON that no longer parses. The secrets'
    pieces are made once for the whole value: a body of thousands of strings
    and a long secret (a service account's key) would otherwise make them
    thousands of times."""
    return _Secrets(secrets).hide_json(value)


class _Secrets:
    """Secrets made ready to hide: each whole, and its `SECRET_RUN`-character
    pieces in a set, so that a text is scanned with one set lookup a position
    (linear in the text, and in the secrets' lengths for the set)."""

    __slots__ = ("pieces", "whole")

    def __init__(self, secrets: tuple[str | None, ...]) -> None:
        # Anything but text is no secret `redact` can look for.
        self.whole = [s for s in secrets if isinstance(s, str) and len(s) >= 4]
        self.pieces = {s[i:i + SECRET_RUN] for s in self.whole
                       for i in range(len(s) - SECRET_RUN + 1)}

    def hide(self, text: str) -> str:
        for secret in self.whole:
            text = text.replace(secret, "[redacted]")
        if self.pieces:
            text = self._without_runs(text)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(r"\1[redacted]", text)
        return _hide_url_passwords(text)

    def hide_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.hide(value)
        if isinstance(value, dict):
            return {self.hide(str(k)): self.hide_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.hide_json(v) for v in value]
        return value

    def _without_runs(self, text: str) -> str:
        """`text` with every stretch made of the pieces written `[redacted]`. Each
        run of SECRET_RUN or more characters of a secret is covered by pieces, so
        it is hidden whole; two pieces that overlap in the text but not in the
        secret are hidden too (too much hidden, never too little)."""
        pieces = self.pieces
        spans: list[list[int]] = []
        for start in range(len(text) - SECRET_RUN + 1):
            if text[start:start + SECRET_RUN] not in pieces:
                continue
            if spans and start <= spans[-1][1]:
                spans[-1][1] = start + SECRET_RUN
            else:
                spans.append([start, start + SECRET_RUN])
        if not spans:
            return text
        kept, at = [], 0
        for start, end in spans:
            kept.append(text[at:start])
            kept.append("[redacted]")
            at = end
        kept.append(text[at:])
        return "".join(kept)


def _hide_url_passwords(text: str) -> str:
    """The password of a database or Redis URL (scheme://user:password@host)
    hidden, a '/', ':' or '@' in it too (people write them unescaped, and
    drivers take them): up to the last '@' of the run of text without
    whitespace that holds it. A URL with no password but an '@' in its path
    after a port loses its port and path here: too much hidden, never too
    little. One pass over the text: a regex looking ahead for that '@' scanned
    to the run's end from every '://user:' and back, quadratic in a run of
    them, and a provider's error text can hold one (40 KB held the loop 3 s)."""
    if "://" not in text:
        return text
    kept: list[str] = []
    done = 0  # text[:done] is in `kept`
    run_end = last_at = -1  # the current run's end, and its last '@'
    for match in _URL_USER.finditer(text):
        start = match.end()
        if start < done:  # inside a password already hidden
            continue
        if start > run_end:
            space = _SPACE.search(text, start)
            run_end = space.start() if space else len(text)
            last_at = text.rfind("@", start, run_end)
        if last_at <= start:  # no '@' after it in its run: no password
            continue
        kept += (text[done:start], "[redacted]")
        done = last_at
    if not kept:
        return text
    kept.append(text[done:])
    return "".join(kept)


# A name is a credential's (a query parameter's, a field of a secret mapping such
# as a service account's) when a part of it is one of these words, alone, plural
# or run together with a prefix (a number may follow), and its last part does not
# say it describes something else: parts are split at '-', '_', '.' and before a
# capital, so that `X-Amz-Signature`, `sas_token`, `client_secret`, `apiKey`,
# `apitoken`, `private_key_pem`, `api_keys` and `api_key_2` are, and
# `bypass_cache`, `author`, `auth_mode`, `token_type`, `key_id`, `token_limit`,
# `key_path` or `token_uri` (what an operator reads an error for) are not. A JSON
# web token (`jwt`) is a bearer credential, and a DSN (`sentry_dsn`) holds the
# key or password it connects with. A password or a secret is one whatever word
# runs into it (`dbpassword`, `adminpassword`, `mysecret`), as long as the part
# ends with it (`secretary` is not); a key and a token take only the prefixes
# listed, since many more words end in them (`monkey`, `turnkey`).
_CREDENTIAL_PART = re.compile(
    r"(?:api|access|auth|session|client|refresh|private|secret|security|subscription|"
    r"sas|bearer|id|x)?(?:key|token|secret|pass|password|passwd|passphrase|pwd|sig|"
    r"signature|auth|authorization|credential|assertion|certificate|cookie|jwt|dsn)s?\d*"
    r"|[a-z0-9]*(?:password|passwd|passphrase|secret)s?\d*")
# A key and a token may also be a place or a unit, which a word right before
# the bare word says: a public key; a token that pages through a listing; a key
# that finds an entry (a cache's, an idempotency key); a cost per token. The word
# speaks for that key or token alone: `public_key_secret` and `cache_password`
# are still secrets.
_KEY_OR_TOKEN = re.compile(r"(?:key|token)s?\d*")
_NOT_SECRET_BEFORE = frozenset({"public", "page", "cursor", "continuation", "cache",
                                "idempotency", "per"})
# And a word right after one that makes it a verb's (`use_in_pass_through`).
_NOT_SECRET_AFTER = frozenset({"through"})
_DESCRIPTOR_PARTS = frozenset({
    "type", "mode", "uri", "url", "endpoint", "host", "domain", "port", "id", "name",
    "version", "method", "algorithm", "count", "email", "date", "expiry", "expires", "ttl",
    "scope", "scopes", "format", "kind", "provider", "size", "length", "limit", "budget",
    "timeout", "retries", "file", "path", "at", "expiration", "audience", "scheme",
    "region", "enabled", "prefix", "flavor", "uris", "urls", "origins", "endpoints",
    "cost", "time"})
_COUNT_PARTS = frozenset({"max", "min", "num", "total"})
_NAME_PARTS = re.compile(r"[-_.\s]+|(?<=[a-z0-9])(?=[A-Z])")
# A value taken as a secret only because it sits within a field named as a
# credential, not for its own name, is at least this long: a short one ("true",
# "basic") is a setting, and hiding it wherever it appears would blank ordinary
# words out of every error of the deployment.
NAMED_SECRET_MIN = 8


def _name_parts(name: str) -> list[str]:
    return [part.lower() for part in _NAME_PARTS.split(name) if part]


def _credential_at(parts: list[str], i: int) -> bool:
    """Whether `parts[i]` is a credential's word where it stands in the name."""
    part = parts[i]
    return (_CREDENTIAL_PART.fullmatch(part) is not None
            and not (i > 0 and parts[i - 1] in _NOT_SECRET_BEFORE and _KEY_OR_TOKEN.fullmatch(part))
            and (i + 1 == len(parts) or parts[i + 1] not in _NOT_SECRET_AFTER))


def names_a_description(name: str) -> bool:
    """Whether a field called `name` describes something (a type, a place, an
    id, a limit, a count: `max_tokens`) rather than holding a secret, even
    inside a credential."""
    parts = _name_parts(name)
    return bool(parts) and (parts[-1] in _DESCRIPTOR_PARTS or parts[0] in _COUNT_PARTS)


def names_a_credential(name: str) -> bool:
    """Whether a parameter or field called `name` holds a credential (also the
    whole name `code`, Azure Functions' key). The one judge of a name: the
    catalog keeps a deployment's secrets by it, and the config masks values
    and makes parameters `Secret` by it (`config.report`, `config.schema`,
    `config.build`), so that no value an error hides is quoted elsewhere."""
    if not name or names_a_description(name):
        return False
    parts = _name_parts(name)
    return name.lower() == "code" or any(_credential_at(parts, i) for i in range(len(parts)))


# Values no credential holds, whatever its name says (`use_auth_token: "true"`):
# hidden, they would blank these words out of every error of the deployment.
_SETTING_WORDS = frozenset({"true", "false", "none", "null", "yes", "no", "on", "off"})


def a_setting_word(value: str) -> bool:
    """Whether `value` is a word such as "true" or "none", never a credential."""
    return value.lower() in _SETTING_WORDS


# Parts that say how a credential is written, after its word (`private_key_pem`).
_ENCODING_PARTS = frozenset({"pem", "der", "b64", "base64", "hex", "json", "value", "string",
                             "data"})


def names_a_credential_outright(name: str) -> bool:
    """Whether `name` is a credential's by its last word (`password`, `client_secret`,
    `api_key_2`, `private_key_pem`), so that its value is one at any length, a
    number too; a name holding the word elsewhere (`token_lifetime_seconds`,
    `auth_timeout_ms`) or only the bare `auth` (`auth=none`) may name a setting,
    whose value is a secret only from `NAMED_SECRET_MIN` characters up."""
    if not names_a_credential(name):
        return False
    parts = _name_parts(name)
    while len(parts) > 1 and (parts[-1] in _ENCODING_PARTS or parts[-1].isdigit()):
        parts.pop()
    last = parts[-1]
    return last != "auth" and (_credential_at(parts, len(parts) - 1) or last == "code")


# What separates a connection string's pairs (`AccountName=..;AccountKey=..`),
# and a SAS query's, given with or without its '?'.
_PAIRS = re.compile(r"[;&?]")


def named_credentials(text: str, pairs: re.Pattern[str] = _PAIRS) -> list[str]:
    """The credentials in a string of `name=value` pairs split at `pairs` (a
    connection string, a SAS query; a URL's query, split at '&' alone): the
    values of the pairs named as credentials. Both as written and decoded: a
    provider may echo either."""
    found: list[str] = []
    for pair in pairs.split(text):
        name, equals, value = pair.strip().partition("=")
        value = value.strip()
        if not equals or not value or a_setting_word(unquote(value)):
            continue
        name = unquote(name)
        if names_a_credential_outright(name) or (
                len(value) >= NAMED_SECRET_MIN and names_a_credential(name)):
            found.append(value)
    return _as_written_and_decoded(found)


def _as_written_and_decoded(found: list[str]) -> list[str]:
    return [s for raw in found for s in dict.fromkeys((raw, unquote(raw))) if s]


_QUERY_PAIRS = re.compile("&")


def url_credentials(url: str) -> list[str]:
    """The credentials a URL carries: the password of user:password@ (the user
    alone when no password follows it: a token written as the user), and the
    values of query parameters named like credentials. Both as written and
    decoded: a provider may echo either."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo, at, _ = parts.netloc.rpartition("@")
    found: list[str] = []
    if at:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    return _as_written_and_decoded(found) + named_credentials(parts.query, _QUERY_PAIRS)


class InterlockError(Exception):
    """Base of every Interlock error."""

    status_code: int = 500
    error_type: str = "internal_error"
    # What a gateway's client is told in place of `message`, when the message
    # holds what only the operator should read (an upstream's host or address):
    # None when the message itself may be shown.
    client_message: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Set by the dispatcher on the error it finally raises: every upstream
        # attempt made for the request (dispatch.Attempt values), for headers,
        # metadata and the ledger.
        self.attempts: list[Any] = []


class InternalError(InterlockError):
    """A bug inside Interlock cut a request short: what its ledger row records
    (the caller gets the original exception, and a gateway client a 500)."""


class ClientDisconnected(InterlockError):
    """The ledger's error class for a request its client abandoned: named apart
    from other failures so that spend and report can count them."""


class GatewayShuttingDown(InterlockError):
    """A request the gateway cut because its drain time at shutdown ran out,
    or one a shared budget covers that its closed budget gate stops
    (`costs.budgets`): either way another replica can take it."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str = (
            "The gateway is shutting down and its drain time (--drain-timeout) ran out "
            "before this request finished; send it again.")) -> None:
        super().__init__(message)


class ConfigError(InterlockError):
    error_type = "config_error"


class RouterNotTrained(InterlockError):
    error_type = "config_error"


class RouterClosed(InterlockError):
    """A library Router was used after its close (a bug in the caller): reopening
    it silently left its connections to no one to close."""


class InvalidRequest(InterlockError):
    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class UnknownModel(InvalidRequest):
    status_code = 404

    def __init__(self, model: str, known: list[str], hint: str = ""):
        listing = ", ".join(sorted(known)) or "(none configured)"
        super().__init__(
            f"The model {model!r} does not exist. Known model groups: {listing}."
            + (f" {hint}" if hint else ""),
            param="model",
            code="model_not_found",
        )
        self.model = model
        self.hint = hint


class ModelNotAllowed(InvalidRequest):
    """The caller's key may not ask for this model (its `models` in api_keys)."""

    status_code = 403
    error_type = "permission_error"

    def __init__(self, model: str, allowed: list[str]):
        super().__init__(
            f"This API key may not ask for {model!r}; it may ask for: "
            f"{', '.join(sorted(allowed)) or '(nothing)'}.",
            param="model", code="model_not_allowed")
        self.model = model


class UnsupportedParameter(InvalidRequest):
    def __init__(self, param: str, provider: str, hint: str = ""):
        extra = f" {hint}" if hint else ""
        super().__init__(
            f"The provider {provider!r} does not support the parameter {param!r}.{extra} "
            "Remove it, or set drop_params: true to drop unsupported parameters.",
            param=param,
            code="unsupported_parameter",
        )
        self.provider = provider


class BudgetExceeded(InterlockError):
    """No candidate has budget left. `retry_after`: seconds until the first of
    the budgets that refused begins a new period. Not worth a client's quick
    retry (`should_retry`): a spent budget stays spent until then."""

    status_code = 429
    error_type = "budget_exceeded"
    should_retry = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeyRateLimited(InterlockError):
    """The caller's client key is over one of its own limits (`rpm_limit`,
    `tpm_limit`, `max_parallel_requests` in general_settings.api_keys); nothing
    was sent upstream."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, key: str, limit: str, value: int, retry_after: float | None, *,
                 lease: float | None = None):
        if limit == "max_parallel_requests":
            # retry_after is then only a hint: nobody knows when a call will end.
            wait = " Retry when one of its calls has ended."
            if lease is not None:
                wait += (" A call may also be held by a gateway replica that stopped without "
                         "giving it back, until its lease ends (at most "
                         f"{lease:g} seconds).")
        elif retry_after is not None:
            wait = f" Retry in {max(1, round(retry_after))} s."
        else:
            wait = " Retry when one of its calls has ended."
        super().__init__(f"The API key {key!r} is over its {limit} of {value:,}.{wait}")
        self.code = "rate_limit_exceeded"
        self.param = None
        self.limit = limit
        self.retry_after = retry_after


class NoDeploymentAvailable(InterlockError):
    """Every candidate deployment is cooling down, over a limit or unavailable."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None,
                 tried: list[str] | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.tried = tried or []


class ProviderError(InterlockError):
    """An upstream call failed. Carries where and how, never the API key."""

    status_code = 502
    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        deployment: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        body: Any = None,
        client_message: str | None = None,
    ) -> None:
        super().__init__(redact(message))
        if client_message is not None:
            self.client_message = redact(client_message)
        self.provider = provider
        self.deployment = deployment
        self.status = status
        self.retry_after = retry_after
        self.body = body

    @property
    def llm_provider(self) -> str:
        """`provider` under LiteLLM's name for it, for handlers ported from LiteLLM."""
        return self.provider

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, deployment={self.deployment!r}, "
            f"status={self.status!r}, retry_after={self.retry_after!r}, message={self.message!r})"
        )


class RateLimited(ProviderError):
    status_code = 429
    error_type = "rate_limit_error"


class Overloaded(ProviderError):
    status_code = 503
    error_type = "overloaded_error"


class AuthenticationFailed(ProviderError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDenied(AuthenticationFailed):
    """The key is valid but may not do this (a model it has no access to, a
    region the provider does not serve). Like a 401 it is the deployment's
    configuration that needs a human, so it is an AuthenticationFailed."""

    status_code = 403
    error_type = "permission_error"


class NotFound(ProviderError):
    status_code = 404
    error_type = "not_found_error"


class BadRequest(ProviderError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextWindowExceeded(BadRequest):
    pass


class ContentFiltered(BadRequest):
    error_type = "content_filter_error"


class UnprocessableEntity(BadRequest):
    """A 422: the provider understood the request and will not act on it.
    Retrying the same request cannot help, so it is a BadRequest."""

    status_code = 422


class Timeout(ProviderError):
    status_code = 504
    error_type = "timeout_error"


class UpstreamServerError(ProviderError):
    status_code = 502
    error_type = "upstream_error"


class ConnectionFailed(ProviderError):
    status_code = 502
    error_type = "connection_error"


# The generic part of the status -> error table; each adapter adds its own
# recognisers (context window texts, safety blocks) before falling back to it.
STATUS_TO_ERROR: dict[int, type[ProviderError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    408: Timeout,
    409: UpstreamServerError,
    413: ContextWindowExceeded,
    422: UnprocessableEntity,
    429: RateLimited,
    500: UpstreamServerError,
    502: UpstreamServerError,
    503: Overloaded,
    504: Timeout,
    529: Overloaded,
}


def error_for_status(status: int) -> type[ProviderError]:
    if status in STATUS_TO_ERROR:
        return STATUS_TO_ERROR[status]
    if status >= 500:
        return UpstreamServerError
    return BadRequest
