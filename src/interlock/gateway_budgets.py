"""How a gateway wires its budgets: the budget gate made from the config, the
reader of the ledger's record it counts from, and the budgets of client keys
made at run time.

Imports: the standard library, `catalog`, `config`, `key_names`, `costs` (`costs.budgets`,
`costs.budget_record` and `costs.queries` lazily: a config without budgets
never loads them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from interlock.catalog import Catalog
from interlock.config import InterlockConfig
from interlock.costs.prices import PriceBook
from interlock.costs.settings import Budget, LedgerSettings
from interlock.key_names import shown_name

if TYPE_CHECKING:
    from interlock.costs.budget_record import Periods, ReadRecord
    from interlock.costs.budgets import BudgetGate

# The gateway's: its warnings were said under that name before they moved here.
log = logging.getLogger("interlock.gateway")


def new_budget_gate(config: InterlockConfig, catalog: Catalog, prices: PriceBook) -> BudgetGate:
    """The gate over the config's budgets, shared through Redis when the router
    settings name one, counting from the ledger's record when there is a ledger."""
    from interlock.costs.budgets import BudgetGate

    settings = config.router_settings
    return BudgetGate(config.budgets, prices,
                      redis_url=settings.redis_connection_url(),
                      key_prefix=f"{settings.redis_prefix}:budget:",
                      redis_timeout=settings.redis_timeout,
                      retry_interval=settings.redis_retry_interval,
                      record=_ledger_record(config.ledger, catalog))


def _ledger_record(settings: LedgerSettings | None, catalog: Catalog) -> ReadRecord | None:
    """Reads the ledger's record of the budgets' current periods up to a time
    (`recorded_spend`), off the event loop; None without a ledger database."""
    if settings is None or not settings.database:
        return None
    database, table_prefix = str(settings.database), settings.table_prefix

    async def record(periods: Periods, until: datetime) -> list[Any]:
        from interlock.costs.budget_record import recorded_spend
        from interlock.costs.queries import LedgerReader

        group_of = {d.name: d.group for d in catalog.deployments()}

        def read() -> list[Any]:
            with LedgerReader(database, table_prefix=table_prefix) as reader:
                return (recorded_spend(reader, periods, group_of, until)
                        if reader.exists() else [])

        return await asyncio.to_thread(read)

    return record


def run_time_key_budgets(keys: Iterable[Any], warned: set[str | tuple[str, str]]) -> list[Budget]:
    """The budgets the run-time keys carry; a key whose budget row is not one (changed
    by hand) is left out, with one warning (noted in `warned`): the others still count."""
    budgets = []
    for key in keys:
        try:
            budget = key.budget()
        except ValueError as exc:
            if ("budget", key.name) not in warned:
                warned.add(("budget", key.name))
                log.warning("client key %s: its budget in the database is not one (%s); "
                            "not counted", shown_name(key.name), type(exc).__name__)
            continue
        if budget is not None:
            budgets.append(budget)
    return budgets
