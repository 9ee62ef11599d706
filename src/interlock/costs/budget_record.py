"""The ledger's record of what the budgets' current periods have spent, and the
one read of it at a time that a `budgets.BudgetGate` adds to its counts.

Counted from zero, a budget would allow its period's spend again after every
restart or Redis outage; so the counts begin from what the ledger recorded
(`recorded_spend`, through the `ReadRecord` the gateway gives). A ledger of
millions of rows must not hold every call, so calls wait for the read at most
`SEED_WAIT` (`Seeding`); a read that lands later is still added.

Imports: the standard library, `costs.settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from interlock.costs.settings import Budget

# The gate's logger: operators filter and configure budgets' messages by it.
log = logging.getLogger("interlock.costs.budgets")

# Seconds calls (and the gateway's start) wait for the ledger's record before
# counting without it, and seconds before a record that could not be read is
# asked for again.
SEED_WAIT = 2.0
RECORD_RETRY = 60.0

# One budget's record: (budget, period id, nano-dollars by end user or name).
Recorded = tuple[Budget, str, Mapping[str, int]]
# Each budget with its current period's id and start (`BudgetGate.current_periods`).
Periods = list[tuple[Budget, str, datetime]]
# Reads the ledger's record of those periods up to a time (`recorded_spend`).
ReadRecord = Callable[[Periods, datetime], Awaitable[Sequence[Recorded]]]


class SpendSource(Protocol):
    def spend_since(self, since: datetime, column: str, among: Sequence[str] | None = None,
                    until: datetime | None = None) -> dict[str, int]: ...


# The ledger column a budget's target is recorded in (model groups by deployment).
_COLUMN = {"deployment": "deployment", "provider": "provider", "api_key": "api_key_id",
           "end_user": "end_user", "model_group": "deployment"}


def recorded_spend(ledger: SpendSource, periods: Iterable[tuple[Budget, str, datetime]],
                   group_of: Mapping[str, str],
                   until: datetime) -> list[tuple[Budget, str, dict[str, int]]]:
    """What the ledger (`queries.LedgerReader`) recorded in each budget's current
    period (`BudgetGate.current_periods`) before `until`, the moment this process
    began counting, for `BudgetGate.seed`: nano-dollars by end user for an
    end-user budget, else under the budget's name. `group_of` maps a deployment's
    name to its model group. Each column and period start is read once."""
    read: dict[tuple[str, datetime], dict[str, int]] = {}
    out = []
    for budget, pid, since in periods:
        kind, name = budget.target
        column = _COLUMN[kind]
        if (column, since) not in read:
            read[column, since] = ledger.spend_since(since, column, until=until)
        rows = read[column, since]
        if kind == "model_group":
            amounts = {name: sum(v for d, v in rows.items() if group_of.get(d) == name)}
        elif kind == "end_user" and name == "*":
            amounts = dict(rows)
        else:
            amounts = {name: rows.get(name, 0)}
        out.append((budget, pid, amounts))
    return out


class Seeding:
    """One read of the ledger's record, added to the counts when it lands, however
    late, and the calls that wait for it meanwhile: for at most `SEED_WAIT` from
    its start, since a count begun from zero admits calls a spent budget would
    refuse, and a ledger of millions of rows must not hold every call."""

    def __init__(self, adding: Coroutine[Any, Any, None], *, everything: bool = True) -> None:
        self.task = asyncio.ensure_future(adding)
        self.deadline = time.monotonic() + SEED_WAIT
        # Of every budget (at start, when Redis fails), or of those that appeared
        # at run time (`BudgetGate.set_key_budgets`).
        self.everything = everything

    @property
    def pending(self) -> bool:
        return not self.task.done()

    async def wait(self) -> None:
        """Until the record is in, or what is left of `SEED_WAIT` has passed. Not
        cancelled by a caller that stops waiting: others wait for it too."""
        left = self.deadline - time.monotonic()
        if left > 0 and not self.task.done():
            await asyncio.wait({self.task}, timeout=left)

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def read_record(record: ReadRecord, periods: Periods, until: datetime,
                      otherwise: str) -> Sequence[Recorded] | None:
    """The ledger's record of `periods` up to `until`; None, with a warning saying
    `otherwise`, if it could not be read."""
    started = time.monotonic()
    try:
        read = await record(periods, until)
    except Exception as exc:  # the database away
        log.warning("budgets could not read this period's spend from the ledger (%s); %s",
                    type(exc).__name__, otherwise)
        return None
    took = time.monotonic() - started
    if took > SEED_WAIT:
        log.warning("budgets: this period's spend took %.1f s to read from the ledger; "
                    "calls meanwhile were counted without it, and it is added now", took)
    return read
