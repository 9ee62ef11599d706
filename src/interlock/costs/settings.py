"""The `prices`, `budgets` and `ledger` sections of the config.

A leaf schema module (pydantic only) so that `config` can compose it.

Imports: pydantic, the standard library, `masking`; sqlalchemy inside a function
(only a database given as a URL needs it).
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interlock.masking import MaskedModel


class PriceOverride(BaseModel):
    """Prices for one model, per token or per million tokens (give one of each pair)."""

    model_config = ConfigDict(extra="forbid")

    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None
    cached_input_cost_per_token: Decimal | None = None
    input_cost_per_million: Decimal | None = None
    output_cost_per_million: Decimal | None = None
    cached_input_cost_per_million: Decimal | None = None


MAX_PERIOD_HOURS = 24 * 366
MIN_PERIOD_HOURS = 1 / 60


def per_period(period: str | float) -> str:
    """A budget's period as its limit is read: "a day", "a month", "every 12 hours"
    (a `Budget`'s `limit`, and a run-time key's budget as `interlock keys list`
    prints it)."""
    return f"a {period}" if isinstance(period, str) else f"every {period:g} hours"


def budget_period(value: Any) -> Any:
    """A budget's period as written: "day", "month", or hours from a minute to a
    year, for a config's budgets and a client key's alike; one message naming
    the forms otherwise (not one per member of the union). At most a year: an
    infinite or huge period failed every request's reservation (an overflow) or
    Redis's expiry (every replica then on local counts). At least a minute: a
    period of 1e-300 hours could never hold a call, and its id (a period count
    since the epoch) ran to hundreds of digits, a new Redis key a request."""
    if value in ("day", "month"):
        return value
    try:
        hours = float(value) if not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        hours = 0.0
    if MIN_PERIOD_HOURS <= hours <= MAX_PERIOD_HOURS:
        return hours
    raise ValueError("expected 'day', 'month' or a number of hours from "
                     f"a minute ({MIN_PERIOD_HOURS:.4g}) to a year ({MAX_PERIOD_HOURS:g}; "
                     "168 for a week)")


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Exactly one of these names the target. `end_user` is the request's `user`
    # (OpenAI's end-user id): one end user, or "*" for a budget of its own for
    # each end user (requests that name none are not counted by it).
    deployment: str | None = None
    provider: str | None = None
    model_group: str | None = None
    end_user: str | None = None
    # A client key's name (general_settings.api_keys): that client's spend.
    api_key: str | None = None
    period: Literal["day", "month"] | float = "month"  # a number means hours
    max_usd: Decimal = Field(gt=0)

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        return budget_period(value)

    @model_validator(mode="after")
    def _one_target(self) -> Budget:
        targets = [t for t in (self.deployment, self.provider, self.model_group,
                               self.end_user, self.api_key) if t]
        if len(targets) != 1:
            raise ValueError("a budget names exactly one of deployment, provider, "
                             "model_group, end_user, api_key")
        if isinstance(self.period, float) and self.period <= 0:
            raise ValueError("a period in hours must be positive")
        return self

    @property
    def target(self) -> tuple[str, str]:
        """(kind, name), e.g. ("model_group", "high-quality")."""
        if self.deployment:
            return "deployment", self.deployment
        if self.provider:
            return "provider", self.provider
        if self.end_user:
            return "end_user", self.end_user
        if self.api_key:
            return "api_key", self.api_key
        return "model_group", self.model_group or ""

    @property
    def limit(self) -> str:
        """The limit as a person reads it: "$5 a day", "$0.5 every 12 hours"."""
        return f"${self.max_usd.normalize():f} {per_period(self.period)}"


# The SQLAlchemy URL schemes the ledger writes with: its inserts are SQLite's and
# PostgreSQL's, from a thread or a process of its own (so no async driver).
# postgresql:// and postgresql+psycopg2:// mean psycopg2, which the config check
# asks for when it is missing.
LEDGER_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg", "postgresql",
                  "postgresql+psycopg2")
_LEDGER_FORMS = ("a SQLite file path, sqlite:///PATH or "
                 "postgresql+psycopg://USER@HOST/DB")
# What may stand before "://" in a URL (RFC 3986), so that it can be quoted back.
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


def ledger_url_problem(database: str) -> str | None:
    """Why the ledger could not write to the URL `database`, else None. Only the
    scheme is quoted: the URL may carry a password."""
    scheme = database.partition("://")[0]
    if not URL_SCHEME.match(scheme):
        return f"not a URL the ledger can read; expected {_LEDGER_FORMS}"
    if scheme not in LEDGER_SCHEMES:
        close = difflib.get_close_matches(scheme, ["postgresql+psycopg", "sqlite"], n=1)
        return (f"the ledger cannot write to a {scheme}:// URL; expected {_LEDGER_FORMS}"
                + (f"; did you mean {close[0]!r}?" if close else ""))
    import sqlalchemy as sa

    try:
        url = sa.make_url(database)
    except (sa.exc.ArgumentError, ValueError):
        return ("not a URL the ledger can read: expected a port that is a number, and "
                "the password's special characters percent-encoded (%40 for @)")
    if url.get_backend_name() == "sqlite" and url.host:
        # SQLAlchemy refuses it when connecting, where the writer buffers rows for ever.
        return ("a SQLite URL names its file after three slashes (sqlite:///spend.sqlite, "
                "or sqlite:////abs/path/spend.sqlite), not as a host")
    return None


class LedgerSettings(MaskedModel):
    # Router(ledger=...) builds these directly: its error must not show the URL.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    URL_FIELDS = frozenset({"database"})

    # SQLite file path or SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...).
    database: str | None = "interlock-ledger.sqlite"
    log_payloads: bool = False
    batch_size: int = Field(default=200, ge=1)
    flush_interval: float = Field(default=0.5, gt=0)
    max_buffer: int = Field(default=100_000, ge=100)
    # Every ledger table name starts with this (tests use a fresh prefix per run).
    table_prefix: str = Field(default="interlock_", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # How long shutdown waits for the buffer to reach the database.
    close_timeout: float = Field(default=5.0, ge=0)
    # Backoff between write attempts while the database is unreachable.
    retry_initial: float = Field(default=0.2, gt=0)
    retry_max: float = Field(default=5.0, gt=0)
    # Where `interlock serve` writes batches: "process", a child process (the
    # database work never holds the event loop's GIL), or "thread", a worker
    # thread of its own. The library always writes from a thread.
    writer: Literal["process", "thread"] = "process"

    @field_validator("database")
    @classmethod
    def _usable_database(cls, value: str | None) -> str | None:
        # A URL the ledger cannot use passed the load; serve then buffered rows
        # until max_buffer or shutdown, and lost them.
        problem = ledger_url_problem(value) if value and "://" in value else None
        if problem:
            raise ValueError(problem)
        return value
