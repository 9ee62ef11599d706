"""Client keys made and revoked at run time, kept in the ledger's database.

The keys in `general_settings.api_keys` change only with the config file; a
team that hands out keys (one per application, per contractor, per
experiment) needs them made and taken back while the gateway runs, as
LiteLLM's proxy does with `/key/generate`. `KeyStore` keeps such keys in the
ledger's database (table `<prefix>keys`, migration 0006_keys): a key's name,
the SHA-256 of the key (the key itself is shown once, when made, and never
stored), the models it may ask for, its limits (as a config key's), its budget
(as a config budget for `api_key: NAME`, migration 0007) and when it expires.

Requests are authenticated from memory: every key is read at start-up and again
every `refresh_interval` seconds, so that a key made or revoked by another
worker or replica is known here within that time (at once in the process that
made or revoked it). A lookup is one dictionary read by digest, as for the
config's keys; the database is never asked on the request path, so a flood of
wrong keys costs it nothing.

Until the keys have been read once (`loaded`), a key that is none of them may be
one not read yet: a process started while the database is away must not refuse
valid keys as wrong ones, so the server answers a token shaped as one (`sk-il-`)
503, and its readiness probe says `run_time_keys_read: false` while staying
ready for the master key and config keys (`server.auth`, `server.app`). Once read, an
outage keeps the keys read before. Failed reads are told in the log when they
begin, then once a minute, and their end too (`outage_log`).

Imports: the standard library, sqlalchemy, `outage_log`, `costs.schema`, `costs.settings`,
`errors`, `key_names`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from interlock.costs.schema import ledger_tables, make_engine, migrate
from interlock.costs.settings import Budget, LedgerSettings
from interlock.errors import failure_said
from interlock.key_names import KEY_PREFIX
from interlock.outage_log import OutageLog

log = logging.getLogger(__name__)

Period = Literal["day", "month"] | float  # as `costs.settings.Budget.period`
REFRESH_INTERVAL = 5.0


def digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key made at run time, as the gateway needs it (no secret in it)."""

    name: str
    hint: str
    models: frozenset[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    created_at: datetime
    expires_at: datetime | None
    # Dollars a period its requests may spend (None: no budget of its own), and
    # the period: "day", "month" or hours, as a config budget's.
    max_budget: Decimal | None = None
    budget_period: Period = "month"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def budget(self) -> Budget | None:
        """The key's budget, as `costs.budgets.BudgetGate` counts it."""
        if self.max_budget is None:
            return None
        return Budget(api_key=self.name, max_usd=self.max_budget, period=self.budget_period)

    def as_dict(self) -> dict[str, Any]:
        """For the admin API's answers: everything but the key."""
        return {
            "name": self.name, "key_hint": self.hint,
            "models": sorted(self.models) if self.models is not None else None,
            "rpm_limit": self.rpm_limit, "tpm_limit": self.tpm_limit,
            "max_parallel_requests": self.max_parallel_requests,
            "max_budget": f"{self.max_budget:f}" if self.max_budget is not None else None,
            "budget_period": self.budget_period if self.max_budget is not None else None,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True, slots=True)
class Revoked:
    """What `KeyStore.delete` did: the names of the keys revoked, and what it was
    asked to revoke and did not find (the names, and how many of the keys: a key
    is never said back)."""

    names: list[str]
    missing_names: list[str]
    missing_keys: int


class KeyNameTaken(ValueError):
    """A key of that name exists already (here or in the config)."""


class KeyStore:
    """The run-time keys of one gateway process, in memory and in the database."""

    def __init__(self, settings: LedgerSettings, *,
                 refresh_interval: float = REFRESH_INTERVAL,
                 on_change: Callable[[dict[bytes, StoredKey]], None] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        """`on_change` is told the keys each time they are read or changed (the
        gateway sets each key's limits from them)."""
        if not settings.database:
            raise ValueError("run-time keys need the ledger's database")
        self._settings = settings
        self._tables = ledger_tables(settings.table_prefix)
        self._engine: sa.Engine | None = None
        self._refresh_interval = refresh_interval
        self._on_change = on_change
        self._clock = clock or (lambda: datetime.now(UTC))
        self._by_digest: dict[bytes, StoredKey] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._migrated = False
        # False until every key has been read once: till then a token found in
        # none of them may still be a key (`loaded`).
        self.loaded = False
        self._outage = OutageLog()

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Read every key (migrating the database first); then again every
        `refresh_interval` seconds, until `aclose`. A database that cannot be
        reached now does not stop the gateway (the master key and the config's
        keys still work): it is tried again at each refresh, and till it is read
        the keys are not `loaded`."""
        if self._refresher is not None:
            return
        await self._load()
        self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def read(self) -> None:
        """Read every key (migrating the database the first time), raising what
        the database raises: for a command that uses the store and ends, and for
        each of a server's reads (`_load`)."""
        if not self._migrated:
            await asyncio.to_thread(self._migrate)
            self._migrated = True
        await self.refresh()

    async def aclose(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- the request path -------------------------------------------------------
    def find(self, token: bytes) -> StoredKey | None:
        """The key `token` is, expired or not; None if it is none of them."""
        return self.find_digest(digest(token)) if self._by_digest else None

    def find_digest(self, token_digest: bytes) -> StoredKey | None:
        """`find` for a caller that has the token's SHA-256 already (`digest`). The
        caller compares nothing more: the digest is of the whole token, and a
        SHA-256 match is the key."""
        return self._by_digest.get(token_digest)

    def now(self) -> datetime:
        return self._clock()

    @property
    def retry_after(self) -> float:
        """Seconds until the keys are tried again: for a client refused because
        they have not been read yet."""
        return self._refresh_interval

    # -- the admin API ----------------------------------------------------------
    async def generate(self, name: str, *, models: Sequence[str] | None = None,
                       rpm_limit: int | None = None, tpm_limit: int | None = None,
                       max_parallel_requests: int | None = None,
                       lifetime: timedelta | None = None, max_budget: Decimal | None = None,
                       budget_period: Period | None = None) -> tuple[str, StoredKey]:
        """A new key: (the key, shown only now; what is kept of it). A budget's
        period is a month unless given."""
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        key = StoredKey(name, token[-4:], frozenset(models) if models is not None else None,
                        rpm_limit, tpm_limit, max_parallel_requests, now,
                        now + lifetime if lifetime is not None else None,
                        max_budget, budget_period or "month")
        token_digest = digest(token.encode())
        await asyncio.to_thread(self._insert, key, token_digest)
        self._by_digest[token_digest] = key
        self._changed()
        return token, key

    async def update(self, name: str, **changes: Any) -> StoredKey | None:
        """Change the key named `name`: any of models, rpm_limit, tpm_limit,
        max_parallel_requests, max_budget, budget_period (None: a month) and
        lifetime (from now; None: no expiry), as given.
        The changed key, or None if there is none of that name."""
        known = self.named(name)
        if known is None:
            await self.refresh()  # made elsewhere since the last read, perhaps
            known = self.named(name)
        if known is None:
            return None
        if "lifetime" in changes:
            lifetime = changes.pop("lifetime")
            changes["expires_at"] = None if lifetime is None else self._clock() + lifetime
        if "budget_period" in changes and changes["budget_period"] is None:
            changes["budget_period"] = "month"
        if "models" in changes and changes["models"] is not None:
            changes["models"] = frozenset(changes["models"])
        changed = dataclasses.replace(known, **changes)
        if not await asyncio.to_thread(self._update, changed):
            return None  # deleted elsewhere meanwhile
        self._by_digest = {d: (changed if k.name == name else k)
                           for d, k in self._by_digest.items()}
        self._changed()
        return changed

    async def delete(self, names: Sequence[str] = (), tokens: Sequence[str] = ()) -> Revoked:
        """Revoke the keys with these names or these tokens."""
        digests = {digest(t.encode()).hex() for t in tokens}
        found = await asyncio.to_thread(self._delete, list(names), sorted(digests))
        gone = sorted({name for name, _ in found})
        self._by_digest = {d: k for d, k in self._by_digest.items() if k.name not in gone}
        self._changed()
        return Revoked(gone, sorted(set(names) - set(gone)),
                       len(digests - {d for _, d in found}))

    def listed(self) -> list[StoredKey]:
        return sorted(self._by_digest.values(), key=lambda k: k.name)

    def named(self, name: str) -> StoredKey | None:
        return next((k for k in self._by_digest.values() if k.name == name), None)

    async def refresh(self) -> None:
        self._by_digest = await asyncio.to_thread(self._read_all)
        self.loaded = True
        self._changed()

    # -- internals --------------------------------------------------------------
    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            await self._load()

    async def _load(self) -> None:
        try:
            await self.read()
        except Exception as exc:  # the database away: keep the keys known
            self._tell_failure(exc)
            return
        ended = self._outage.succeeded()
        if ended is not None:
            log.info("run-time keys read from the ledger's database again, after %d failed "
                     "tries in %.0f s; %d keys", ended.failures, ended.seconds,
                     len(self._by_digest))

    def _tell_failure(self, exc: Exception) -> None:
        """Say that the keys could not be read: when failures begin, then at most
        once every `outage_log.INTERVAL` seconds (a line every refresh, in each
        worker, was a flood)."""
        unsaid = self._outage.failed()
        if unsaid is None:
            return
        serving = (f"serving the {len(self._by_digest)} read before" if self.loaded else
                   "none read yet: a key made at run time is answered 503 until they are")
        if unsaid == 0:
            log.warning("run-time keys could not be read from the ledger's database (%s); "
                        "%s; trying again every %g s, said again once a minute",
                        failure_said(exc), serving, self._refresh_interval)
        else:
            log.warning("run-time keys still could not be read from the ledger's database "
                        "(%s): %d more tries failed; %s", failure_said(exc), unsaid, serving)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._by_digest)

    def _get_engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(str(self._settings.database))
        return self._engine

    def _migrate(self) -> None:
        migrate(self._get_engine(), self._tables)

    def _insert(self, key: StoredKey, key_digest: bytes) -> None:
        table = self._tables.keys
        try:
            with self._get_engine().begin() as conn:
                conn.execute(table.insert().values(
                    name=key.name, key_digest=key_digest.hex(), key_hint=key.hint,
                    created_at=key.created_at, **_changeable(key)))
        except sa.exc.IntegrityError:
            raise KeyNameTaken(key.name) from None

    def _update(self, key: StoredKey) -> bool:
        table = self._tables.keys
        with self._get_engine().begin() as conn:
            done = conn.execute(table.update().where(table.c.name == key.name)
                                .values(**_changeable(key)))
        return bool(done.rowcount)

    def _delete(self, names: list[str], digests: list[str]) -> list[tuple[str, str]]:
        """Delete the keys named `names` or whose digests (hex) are `digests`; the
        (name, digest) of each deleted."""
        table = self._tables.keys
        where = sa.or_(table.c.name.in_(names), table.c.key_digest.in_(digests))
        with self._get_engine().begin() as conn:
            found = [(row[0], row[1]) for row in conn.execute(
                sa.select(table.c.name, table.c.key_digest).where(where))]
            conn.execute(table.delete().where(table.c.name.in_([n for n, _ in found])))
        return found

    def _read_all(self) -> dict[bytes, StoredKey]:
        table = self._tables.keys
        with self._get_engine().connect() as conn:
            rows = conn.execute(sa.select(table)).mappings().all()
        return {bytes.fromhex(r["key_digest"]): _stored(r) for r in rows}


def _changeable(key: StoredKey) -> dict[str, Any]:
    """The columns of `key` that `update` may change, as they are stored."""
    return {"models": json.dumps(sorted(key.models)) if key.models is not None else None,
            "rpm_limit": key.rpm_limit, "tpm_limit": key.tpm_limit,
            "max_parallel_requests": key.max_parallel_requests,
            "expires_at": key.expires_at,
            "max_budget_usd": str(key.max_budget) if key.max_budget is not None else None,
            "budget_period": str(key.budget_period)}


def _stored(row: Any) -> StoredKey:
    models = json.loads(row["models"]) if row["models"] is not None else None
    return StoredKey(row["name"], row["key_hint"],
                     frozenset(models) if models is not None else None,
                     row["rpm_limit"], row["tpm_limit"], row["max_parallel_requests"],
                     row["created_at"], row["expires_at"],
                     Decimal(row["max_budget_usd"]) if row["max_budget_usd"] else None,
                     _period(row["budget_period"]))


def _period(stored: str | None) -> Period:
    """A stored budget period: "day", "month", or hours as text ("month" when unset)."""
    if stored == "day":
        return "day"
    return "month" if stored is None or stored == "month" else float(stored)
