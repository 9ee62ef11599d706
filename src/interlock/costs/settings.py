"""The `prices`, `budgets` and `ledger` sections of the config.

A leaf schema module (pydantic only) so that `config` can compose it.

Imports: pydantic, the standard library.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PriceOverride(BaseModel):
    """Prices for one model, per token or per million tokens (give one of each pair)."""

    model_config = ConfigDict(extra="forbid")

    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None
    cached_input_cost_per_token: Decimal | None = None
    input_cost_per_million: Decimal | None = None
    output_cost_per_million: Decimal | None = None
    cached_input_cost_per_million: Decimal | None = None


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Exactly one of these names the target.
    deployment: str | None = None
    provider: str | None = None
    model_group: str | None = None
    period: Literal["day", "month"] | float = "month"  # a number means hours
    max_usd: Decimal = Field(gt=0)


class LedgerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # SQLite file path or SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...).
    database: str | None = "interlock-ledger.sqlite"
    log_payloads: bool = False
    batch_size: int = Field(default=200, ge=1)
    flush_interval: float = Field(default=0.5, gt=0)
    max_buffer: int = Field(default=100_000, ge=100)
