"""`/key/*`: client keys made, listed and revoked while the gateway runs.

    POST /key/generate  {"name", "models"?, "rpm_limit"?, "tpm_limit"?,
                         "max_parallel_requests"?, "max_budget"?,
                         "budget_period"?, "duration"?}          -> the key, once
    POST /key/update    {"name", and the fields to change}       -> the key, no secret
    POST /key/delete    {"names": [...]} or {"keys": [...]}      -> the names revoked (as
                                                                    "deleted" and as
                                                                    "deleted_keys"), and
                                                                    those not found
    GET  /key/list                                               -> every key, no secrets,
                                                                    with its spend
    GET  /key/info?name=NAME or ?key=SHA256                      -> one key, no secret,
                                                                    its spend and budget

LiteLLM's proxy serves the same paths; its `key_alias` is taken for `name`,
`models: []`, `["*"]` and `["all-proxy-models"]` mean every model, as there
(null does too; `key_models`), and
`duration` is written as it writes it ("30d", "12h", "15m", "45s", "2w"), and
`max_budget` is its name for a key's spending limit; the budget's period is a
config budget's (`budget_period`: "day", "month" or hours, calendar periods in
UTC), not LiteLLM's `budget_duration`, which counts from the key's creation and
is refused with a word on the difference. Behind the
master key (`auth.ADMIN_PATHS`). The keys live in `key_store.KeyStore`; a
name already used (by a run-time key or by one in general_settings.api_keys) is
refused, since the ledger records requests by it, and so is one that could be
taken for an id or a label Interlock writes there itself, or that looks like
a key or is or holds one (`name_problem`, `secret_judge`): a name is logged and
listed.
A key is never taken in a URL (`?name=` that is a key included).

Imports: the standard library, pydantic, sqlalchemy, `config`, `gateway`, `key_models`,
`key_names`, `key_store`,
`server.asgi_io`, `server.auth`; `costs.queries`, `costs.usd` lazily.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from interlock.config.report import did_you_mean
from interlock.config.schema import GeneralSettings
from interlock.costs.settings import budget_period
from interlock.gateway import Gateway
from interlock.key_models import allowed_models, unknown_models
from interlock.key_names import (
    NOT_SHOWN,
    holds_key_like,
    name_parts,
    name_problem,
    shown_name,
)
from interlock.key_store import KeyNameTaken, KeyStore, Revoked, StoredKey, digest
from interlock.server.asgi_io import ANSWERED, Receive, Scope, Send, read_json, send_json
from interlock.server.asgi_io import send_plain_error as _error
from interlock.server.auth import any_threshold

log = logging.getLogger("interlock.server")

# The fields of a key that /key/update changes as given (the others stay).
CHANGEABLE = ("models", "rpm_limit", "tpm_limit", "max_parallel_requests", "max_budget",
              "budget_period")
METHODS = {"/key/generate": "POST", "/key/update": "POST", "/key/delete": "POST",
           "/key/list": "GET", "/key/info": "GET"}
# LiteLLM's units (no "mo": a calendar month is no fixed number of seconds), and
# bare digits for seconds; at most 12 digits, past which no duration is in range.
_DURATION = re.compile(r"([0-9]{1,12})([smhdw]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST = 100 * 365 * 86400  # past this, "never" (no duration) says it better
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SAY_WHICH = ("Ask by ?name=NAME (the name the key was made with), or by ?key= and the "
              "SHA-256 of the key in hex (printf %s \"$KEY\" | sha256sum).")
_BY_NAME = ("Send {\"name\": NAME, ...} with the name the key was made with (GET "
            "/key/list shows them; LiteLLM's key_alias is taken for name).")
# LiteLLM's key fields Interlock does not take, and what to do instead: said in
# place of "not a field", for a request written for LiteLLM's proxy.
_LITELLM_FIELDS = {
    "team_id": "Interlock has no teams: make a key per team, named for it",
    "user_id": "Interlock has no users: make a key per user, named for them",
    "metadata": "not kept: what tells keys apart goes in their name",
    "tags": "not kept: what tells keys apart goes in their name",
    "soft_budget": "no soft budgets: max_budget is the limit past which a key is refused",
    "spend": "a key's spend is the ledger's, read by GET /key/info, not set",
    "model_max_budget": "no budget per model: max_budget is the key's, over all models",
    "model_rpm_limit": "no limits per model: rpm_limit is the key's, over all models",
    "model_tpm_limit": "no limits per model: tpm_limit is the key's, over all models",
}
_NOT_IN_URL = ("a key is not taken in a URL, which access logs and proxies write down "
               "(if this one was, count the key as seen).")


class GenerateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    models: list[str] | None = None
    rpm_limit: int | None = Field(default=None, ge=1)
    tpm_limit: int | None = Field(default=None, ge=1)
    max_parallel_requests: int | None = Field(default=None, ge=1)
    # Dollars its requests may spend a period, and the period (default: month).
    max_budget: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    budget_period: Literal["day", "month"] | float | None = None
    # How long the key lasts, read by `_seconds` ("30d", "12h", "15m", "45s", "2w",
    # or seconds) into seconds; None: the key does not expire.
    duration: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _litellm_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "budget_duration" in data:
            raise ValueError(
                "budget_duration: Interlock's budgets run by calendar period, not from the "
                "key's creation; give budget_period: \"day\", \"month\" or a number of hours")
        # LiteLLM's name for the key's name.
        if "key_alias" in data and "name" not in data:
            data = {**data, "name": data["key_alias"]}
            del data["key_alias"]
        return data

    @field_validator("models")
    @classmethod
    def _every_model(cls, value: list[str] | None) -> list[str] | None:
        # [], "*" and "all-proxy-models" are every model, as on LiteLLM's proxy (a
        # key that could ask for nothing is no use to anyone).
        return allowed_models(value)

    @field_validator("budget_period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        try:
            return None if value is None else budget_period(value)
        except ValueError as exc:
            raise ValueError(f"got {value!r}; {exc}") from None

    @field_validator("duration", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> int | None:
        """LiteLLM's duration ("30s", "30m", "30h", "30d", "2w") or whole seconds (a
        number, or digits), as seconds; anything else gets one message saying all
        that is taken (not pydantic's, one per type tried)."""
        if value is None:
            return None
        seconds = 0
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
            seconds = int(found[1]) * _UNIT[found[2]]
        if not 0 < seconds <= _LONGEST:
            months = isinstance(value, str) and value.strip().endswith("mo")
            raise ValueError(
                f"got {value!r}; expected a whole number and a unit, s, m, h, d or w (as "
                f"'45s', '15m', '12h', '30d', '2w'{'; a month: 30d' if months else ''}), "
                f"or a whole number of seconds; more than 0 and at most "
                f"{_LONGEST // 86400:,} days; or null for a key that does not expire")
        return seconds

    def lifetime(self) -> timedelta | None:
        return None if self.duration is None else timedelta(seconds=self.duration)


class KeyAdmin:
    """The /key/* endpoints of one app (see the module's text)."""

    def __init__(self, gateway: Gateway, *, config_keys: set[str], max_body_bytes: int) -> None:
        self.gateway = gateway
        self._config_keys = config_keys
        self._max_body_bytes = max_body_bytes
        # The config's keys are hashed once here, not on each request.
        self._is_secret = secret_judge(gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        store = self.gateway.keys
        if method != METHODS[path]:
            await _error(send, 405, f"Use {METHODS[path]} for {path}.",
                         type_="invalid_request_error", code="method_not_allowed",
                         headers=[(b"allow", METHODS[path].encode())])
        elif store is None:
            await _error(send, 501, "Client keys made at run time need the ledger's "
                         "database (where they are kept) and a master key (which manages "
                         "them): set ledger.database and general_settings.master_key.",
                         type_="invalid_request_error", code="key_management_off")
        elif path == "/key/list":
            keys = store.listed()
            spend = await self._recorded_spend([k.name for k in keys])
            await send_json(send, 200, {"keys": [{**k.as_dict(), "spend_usd": spend(k.name)}
                                                 for k in keys]})
        elif path == "/key/info":
            found = await _info_key(store, scope, send, self._is_secret)
            if found is not None:
                spend = await self._recorded_spend([found.name])
                await send_json(send, 200, {**found.as_dict(),
                                            "spend_usd": spend(found.name),
                                            "budget_status": await self._spend(found.name)})
        else:
            body = await read_json(receive, send, self._max_body_bytes, scope)
            if body is ANSWERED:
                return
            try:
                if path == "/key/generate":
                    await self._generate(store, body, send)
                elif path == "/key/update":
                    await self._update(store, body, send)
                else:
                    await _delete(store, body, send, self._is_secret)
            except sa.exc.SQLAlchemyError as exc:
                await _error(send, 503, "The ledger's database, where client keys are kept, "
                                        f"could not be written ({type(exc).__name__}); "
                                        "nothing was changed. Retry once it is back.",
                             type_="service_unavailable", code="database_unavailable")

    async def _asked(self, body: Any, send: Send, *,
                     new: bool) -> tuple[GenerateKey, timedelta | None] | None:
        """The request's fields and lifetime; None when they were refused (with a 400
        sent). A `new` key's name must not be a config key's too."""
        unnamed = which_key_problem(body, new=new)
        if unnamed is not None:
            await _invalid(send, unnamed[0], param=unnamed[1])
            return None
        try:
            asked = GenerateKey.model_validate(body)
            lifetime = asked.lifetime()
        except (ValidationError, ValueError) as exc:
            await _invalid(send, first_problem(exc), param=problem_field(exc),
                           code=_problem_code(exc))
            return None
        problem = (new_key_problem(self.gateway, asked, self._config_keys,
                                   is_secret=self._is_secret) if new
                   else models_problem(self.gateway, asked.models))
        if problem is not None:
            await _invalid(send, *problem)
            return None
        return asked, lifetime

    async def _generate(self, store: KeyStore, body: Any, send: Send) -> None:
        found = await self._asked(body, send, new=True)
        if found is None:
            return
        asked, lifetime = found
        try:
            token, key = await store.generate(
                asked.name, models=asked.models, rpm_limit=asked.rpm_limit,
                tpm_limit=asked.tpm_limit, max_parallel_requests=asked.max_parallel_requests,
                lifetime=lifetime, max_budget=asked.max_budget,
                budget_period=asked.budget_period)
        except KeyNameTaken:
            await _invalid(send, name_taken(asked.name), param="name", code="name_taken")
            return
        log.info("client key %s made", shown_name(key.name))
        await send_json(send, 200, {"key": token, **key.as_dict()})

    async def _update(self, store: KeyStore, body: Any, send: Send) -> None:
        # The same fields as generate's; those given are changed (null clears one,
        # a duration counts from now), the others kept.
        found = await self._asked(body, send, new=False)
        if found is None:
            return
        asked, lifetime = found
        given = asked.model_fields_set
        changes: dict[str, Any] = {field: getattr(asked, field) for field in CHANGEABLE
                                   if field in given}
        if "duration" in given:
            changes["lifetime"] = lifetime
        changed = await store.update(asked.name, **changes)
        if changed is None and self._is_secret(asked.name):
            await _invalid(send, "name: that is a key, not a key's name; /key/update finds "
                                 f"the key by its name. {_BY_NAME}", param="name")
            return
        if changed is None:
            await _no_such_key(send, asked.name, self._is_secret)
            return
        log.info("client key %s changed: %s", shown_name(changed.name),
                 ", ".join(sorted(changes)))
        await send_json(send, 200, changed.as_dict())

    async def _recorded_spend(self, names: list[str]) -> Callable[[str], str | None]:
        """Dollars the requests of each of the keys `names` cost, all time, as the
        ledger has them written (rows recorded in the last half second may not be
        yet): "0" for a key with none, as the other money fields write nothing
        spent; None for every key when the ledger cannot be read (the keys are
        still shown: an unknown spend is not a spend of nothing)."""
        from interlock.costs.queries import LedgerReader
        from interlock.costs.usd import plain_usd

        settings = self.gateway.config.ledger
        if settings is None or not settings.database or not names:
            return lambda name: None

        def read() -> dict[str, int]:
            with LedgerReader(str(settings.database),
                              table_prefix=settings.table_prefix) as reader:
                return reader.spend_since(datetime.fromtimestamp(0, UTC), "api_key_id", names)

        try:
            spent = await asyncio.to_thread(read)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("client keys' spend could not be read from the ledger (%s)",
                        type(exc).__name__)
            return lambda name: None
        return lambda name: plain_usd(spent.get(name, 0))

    async def _spend(self, name: str) -> dict[str, Any] | None:
        """The key's budget now: spent and held in this period (from Redis when the
        budgets are shared through it, else this process' count); None without one."""
        gate = self.gateway.budgets
        if gate is None or name not in gate.key_budgets:
            return None
        for row in await gate.astatus():
            if row["target"] == "api_key" and row["name"] == name:
                return {k: row[k] for k in ("period_id", "spent_usd", "reserved_usd",
                                             "exhausted", "resets_in_s")}
        return None


async def _info_key(store: KeyStore, scope: Scope, send: Send,
                    is_secret: Callable[[str], bool]) -> StoredKey | None:
    """The key /key/info asks about: by `?name=`, or by `?key=` the SHA-256 of the
    key in hex, as LiteLLM also takes it; None when an error was sent. The key
    itself is not taken in the URL, which access logs and proxies write down."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    name, key = (query.get("name") or [""])[0], (query.get("key") or [""])[0]
    if name:
        secret = is_secret(name)
        found = None if secret else store.named(name)
        if found is None and (secret or holds_key_like(name)):
            # A key made before such names were refused is still found by its name;
            # anything else that looks like a key is taken for one, and not echoed.
            await _invalid(send, f"name: {_NOT_IN_URL} {_SAY_WHICH}", param="name")
        elif found is None:
            await _no_such_key(send, name, is_secret)
        return found
    if _SHA256_HEX.fullmatch(key):
        found = store.find_digest(bytes.fromhex(key))
        if found is None:
            await _error(send, 404, "No client key made at run time has that SHA-256.",
                         type_="invalid_request_error", code="key_not_found")
        return found
    if key:
        await _invalid(send, f"key: {_NOT_IN_URL} {_SAY_WHICH}", param="key")
    else:
        await _invalid(send, f"Say which key to describe. {_SAY_WHICH}", param="name")
    return None


async def _delete(store: KeyStore, body: Any, send: Send,
                  is_secret: Callable[[str], bool]) -> None:
    names = body.get("names", body.get("key_aliases")) if isinstance(body, dict) else None
    tokens = body.get("keys") if isinstance(body, dict) else None
    if not all(v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))
               for v in (names, tokens)) or not (names or tokens):
        await _invalid(send, "expected {\"names\": [...]} (the keys' names) or "
                             "{\"keys\": [...]} (the keys themselves)")
        return
    revoked = await store.delete(names or (), tokens or ())
    hidden = unsaid_names(revoked, is_secret)
    if not revoked.names:
        said = not_found(revoked, hidden.__contains__)
        await _error(send, 404, f"{said[:1].upper()}{said[1:]} (keys from the config file "
                                "are changed there); nothing was deleted.",
                     type_="invalid_request_error", code="key_not_found")
        return
    log.info("client keys revoked: %s", ", ".join(map(shown_name, revoked.names)))
    # `deleted_keys` is LiteLLM's field, read by clients ported from its proxy;
    # `deleted` was Interlock's first. Both hold names: LiteLLM echoes what it
    # was given, which for {"keys": [...]} would be the secrets themselves.
    answer: dict[str, Any] = {"deleted": revoked.names, "deleted_keys": revoked.names}
    # What was not found is said beside what was deleted, not as an error: the
    # deletions happened, and a client that reads a 4xx as "nothing done" would be wrong.
    if revoked.missing_names:
        answer["not_found"] = [NOT_SHOWN if n in hidden else n
                               for n in revoked.missing_names]
    if revoked.missing_keys:
        answer["keys_not_found"] = revoked.missing_keys
    await send_json(send, 200, answer)


def which_key_problem(body: Any, *, new: bool) -> tuple[str, str] | None:
    """(message, param) when a key request names no key the way Interlock takes
    it, as one written for LiteLLM's proxy may: it sends `key` to say which key
    /key/update changes, or to choose a new key's value. None when it is named."""
    if not isinstance(body, dict):
        return None
    if "key" in body:
        said = ("key: Interlock makes each key itself and gives it in the answer, once; "
                "a key of your own choosing goes in the config file's "
                "general_settings.api_keys. Send {\"name\": NAME, ...}: the name to know "
                "the new key by (LiteLLM's key_alias is taken for name)." if new else
                "key: /key/update finds the key by the name it was made with, not by the "
                f"key itself (LiteLLM's way; a key is sent only to use it). {_BY_NAME}")
        return said, "key"
    if "name" not in body and "key_alias" not in body:
        said = ("name: required: the name to know the new key by, which the ledger "
                "records its requests under, as {\"name\": \"team-a\"} (LiteLLM's "
                "key_alias is taken for name)" if new else
                f"name: required: which key to change. {_BY_NAME}")
        return said, "name"
    return None


def unsaid_names(revoked: Revoked, is_secret: Callable[[str], bool]) -> set[str]:
    """The names a delete did not find that are not to be said back: a key sent
    among the names, whatever it looks like (`is_secret`), or anything in one
    that looks like a key."""
    return {n for n in revoked.missing_names if is_secret(n) or holds_key_like(n)}


def not_found(revoked: Revoked, is_secret: Callable[[str], bool] = lambda name: False) -> str:
    """What a delete did not find, in words (for the API's 404); a
    name `is_secret` says is a key is not repeated, nor one that looks like a key."""
    said = []
    if revoked.missing_names:
        names = [NOT_SHOWN if is_secret(n) else shown_name(n) for n in revoked.missing_names]
        said.append(f"no client key made at run time is named {' or '.join(names)}")
    if revoked.missing_keys:
        said.append(f"{revoked.missing_keys} of the keys given "
                    + ("is not a key" if revoked.missing_keys == 1 else "are not keys")
                    + " made at run time")
    return "; ".join(said)


def new_key_problem(gateway: Gateway, asked: GenerateKey, config_keys: set[str], *,
                    is_secret: Callable[[str], bool] | None = None,
                    ) -> tuple[str, str, str] | None:
    """(message, param, code) of what forbids making `asked` beside the config's
    keys (`config_keys`, by name); None when nothing does. The store finds a name
    taken by another run-time key itself. `is_secret`: `secret_judge(gateway)`,
    for a caller that has made it already."""
    # Judged first: the other refusals repeat the name, which must not be a key.
    if (is_secret or secret_judge(gateway))(asked.name):
        refused: str | None = (
            "the name is, or holds, the value of a key this gateway takes (the master "
            "key or a client key), and a name is shown in logs, in /key/list and in "
            "spend reports; send a name to know the new key by, as \"team-a\"")
    else:
        refused = name_problem(asked.name)
    if refused is not None:
        return f"name: {refused}", "name", "invalid_value"
    problem = models_problem(gateway, asked.models)
    if problem is None and asked.name in config_keys:
        return name_taken(asked.name), "name", "name_taken"
    if problem is None and asked.budget_period is not None and asked.max_budget is None:
        return ("budget_period: a period is for a budget; give max_budget (dollars a "
                "period) too", "budget_period", "invalid_value")
    return problem


def secret_judge(gateway: Gateway) -> Callable[[str], bool]:
    """Whether a name is, or holds, the master key or a live client key of the
    gateway's (`keys_judge`)."""
    # Asked each time: the app is built before the gateway gets its key store.
    return keys_judge(gateway.config.general_settings, lambda: gateway.keys)


def keys_judge(general: GeneralSettings,
               store_now: Callable[[], KeyStore | None]) -> Callable[[str], bool]:
    """Whether a name is, or holds, the master key or a live client key (the
    config's or one in `store_now()`'s store), whatever it looks like: any of its
    `name_parts`, compared by digest. The config's keys are hashed once, here."""
    secrets = [k.key.get_secret_value() for k in general.api_keys]
    if general.master_key is not None:
        secrets.append(general.master_key.get_secret_value())
    known = [digest(s.encode()) for s in secrets]

    def is_secret(name: str) -> bool:
        store = store_now()
        found = []
        for part in name_parts(name):
            asked = digest(part.encode())
            # Every digest compared, in constant time: no early answer says which.
            found += [hmac.compare_digest(asked, k) for k in known]
            found.append(store is not None and store.find_digest(asked) is not None)
        return any(found)

    return is_secret


def models_problem(gateway: Gateway, models: list[str] | None) -> tuple[str, str, str] | None:
    """(message, param, code) when `models` names what clients cannot ask for."""
    known = gateway.model_names() + [any_threshold(r) for r in gateway.routing.alias_routers()]
    problem = unknown_models(models or (), known)
    return None if problem is None else (f"models: {problem}", "models", "invalid_value")


def name_taken(name: str) -> str:
    return (f"A client key named {name!r} exists already: names are what the ledger "
            "records, so each is given once. Pick another name, or delete that key first.")


def problem_field(exc: Exception) -> str | None:
    """The body field the first problem is in, for the error's `param`."""
    if isinstance(exc, ValidationError) and exc.errors()[0]["loc"]:
        return str(exc.errors()[0]["loc"][0])
    return None


def _problem_code(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors()[0]["type"] == "extra_forbidden":
        return "unknown_parameter"
    return "invalid_value"


def first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        message = error["msg"]
        if error["type"] == "extra_forbidden" and error["loc"]:
            # A misspelt field: say which was meant, as the config loader does.
            field = str(error["loc"][-1])
            if field in _LITELLM_FIELDS:
                return f"{field}: LiteLLM's field is not taken here; {_LITELLM_FIELDS[field]}"
            return (f"{field}: not a field of a client key"
                    f"{did_you_mean(field, sorted(GenerateKey.model_fields))}")
        if error["type"] == "value_error":  # our own checks' text, without pydantic's prefix
            message = str(error.get("ctx", {}).get("error", message))
            if not error["loc"]:  # a check of the whole body names the field itself
                return message
        where = ".".join(str(p) for p in error["loc"]) or "body"
        return f"{where}: {message}"
    return str(exc)


async def _invalid(send: Send, message: str, param: str | None = None,
                   code: str = "invalid_value") -> None:
    await _error(send, 400, message, type_="invalid_request_error", code=code, param=param)


async def _no_such_key(send: Send, name: str, is_secret: Callable[[str], bool]) -> None:
    shown = NOT_SHOWN if is_secret(name) else shown_name(name)
    await _error(send, 404, f"No client key made at run time is named {shown} "
                            "(keys from the config file are changed there).",
                 type_="invalid_request_error", code="key_not_found")
