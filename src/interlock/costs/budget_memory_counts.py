"""A budget gate's counts kept in this process' memory: spent and reserved
nano-dollars per budget and period, begun from the ledger's record of the
period (`budget_record`) so that a restart does not give a budget its period
again. `budget_redis_counts` shares them through Redis and falls back to these.

The check and the reservation have no await between them, so within one event
loop they are atomic. Counts of periods that have ended are let go now and
then, so that a process serving many end users does not keep them all.

Imports: the standard library, `costs.budget_periods`, `costs.budget_record`,
`costs.budget_refusal`, `costs.settings`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from interlock.costs.budget_periods import GRACE, period_bounds
from interlock.costs.budget_record import ReadRecord, Recorded, Seeding, read_record
from interlock.costs.budget_refusal import Full
from interlock.costs.settings import Budget

# Reservations between two passes that let the counts of ended periods go.
PRUNE_EVERY = 1024


def _digest(user: str) -> str:
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class Count:
    spent: int = 0
    reserved: int = 0
    # When the period it counts has ended (with an hour's grace, as Redis' TTL).
    expires: float = 0.0
    # The spent a Redis outage began this count from (`budget_redis_counts`):
    # the ledger's record, when it lands, raises the count to itself instead
    # of adding to it, since both hold the period's spend up to the outage.
    began: int = 0
    # Kept only for counts made during an outage, never on a healthy Redis:
    # the largest spent Redis reported for the count since, and the cost of
    # this process' calls counted here that Redis has not taken yet.
    shared: int | None = None
    owed: int = 0


class MemoryBudgetCounts:
    """The counts in memory, keyed as in Redis (`_key`), and their seeding."""

    def __init__(self, budgets: Sequence[Budget], *, clock: Callable[[], float] | None,
                 key_prefix: str, record: ReadRecord | None) -> None:
        self.budgets = list(budgets)
        # Budgets of client keys made at run time, by key name (`set_key_budgets`).
        self.key_budgets: dict[str, Budget] = {}
        self.clock = clock or time.time
        self.key_prefix = key_prefix
        self._local: dict[str, Count] = {}
        # Local counts given the ledger's record of their period (`seed`).
        self._seeded: set[str] = set()
        self._reservations = 0  # for letting ended periods go (`_let_ended_go`)
        # Reads the ledger's record of the current periods up to a time, for the
        # counts that begin without it: in memory at start or when Redis fails
        # (else a restart or an outage gives every budget its period again), and
        # in Redis when it lost its data. None: no ledger database, no record.
        self.record = record
        self._local_seed: Seeding | None = None

    def current_periods(self, budgets: Iterable[Budget] | None = None
                        ) -> list[tuple[Budget, str, datetime]]:
        """Each budget (by default all) with its current period's id and start
        (UTC): what `seed` needs read from the ledger."""
        now = self.clock()
        out = []
        chosen = (*self.budgets, *self.key_budgets.values()) if budgets is None else budgets
        for budget in chosen:
            pid, start, _ = period_bounds(budget, now)
            out.append((budget, pid, datetime.fromtimestamp(start, UTC)))
        return out

    def seed(self, spent: Iterable[tuple[Budget, str, Mapping[str, int]]]) -> None:
        """Add to this process' counts what the ledger recorded in each budget's
        current period before the process began counting (`recorded_spend`:
        budget, period id, nano-dollars by end user or under the budget's name).
        Counted in memory (without Redis, or while Redis is down), a budget would
        otherwise begin its period again at every restart. What was counted
        since is kept (the rows read end where it began); a count is seeded
        once an outage (`Count.began`: no lower than the outage began it)."""
        now = self.clock()
        for budget, pid, amounts in spent:
            current, _, end = period_bounds(budget, now)
            if current != pid:  # the period turned meanwhile: the new one starts empty
                continue
            for user, nano in amounts.items():
                key = self._key(budget, pid, user)
                if key in self._seeded:
                    continue
                self._seeded.add(key)
                count = self._local.setdefault(key, Count())
                count.spent += max(0, nano - count.began)
                count.expires = max(count.expires, end + GRACE)

    def _key(self, budget: Budget, pid: str, user: str | None) -> str:
        kind, name = budget.target
        if kind == "end_user":  # the caller checked `covers`: `user` is set
            return f"{self.key_prefix}{kind}:{name}:{_digest(user or '')}:{pid}"
        return f"{self.key_prefix}{kind}:{name}:{pid}"

    def _reserve_local(self, keys: list[str], limits: list[int], amount: int,
                       ends: list[float]) -> Full | int:
        """Reserve `amount` on every count of `keys`, each kept until its
        period's end (`ends`, Unix seconds) and the grace; or, if one has no
        room, which (`Full`)."""
        # No await between the check and the increment: atomic within the loop.
        now = self.clock()
        self._let_ended_go(now)
        counts = [self._local.setdefault(k, Count()) for k in keys]
        for index, (count, limit) in enumerate(zip(counts, limits, strict=True), start=1):
            if count.spent + count.reserved >= limit:
                return Full(index, count.spent, count.reserved)
        for count, end in zip(counts, ends, strict=True):
            count.reserved += amount
            count.expires = end + GRACE
        return 0

    def _let_ended_go(self, now: float) -> None:
        """Now and then (a reservation in `PRUNE_EVERY`), the counts of ended
        periods are let go."""
        self._reservations += 1
        if self._reservations % PRUNE_EVERY == 0:
            self._local = {k: c for k, c in self._local.items() if c.expires > now}

    def _seed_local(self, until: datetime, budgets: Sequence[Budget] | None = None) -> None:
        """Add the ledger's record up to `until` of `budgets` (by default all) to
        the counts in memory (`seed`); calls counted there wait for it
        (`Seeding`). One read after another: the latest waits for those before."""
        previous = self._local_seed
        if self.record is None or (budgets is None and previous is not None
                                   and previous.pending and previous.everything):
            return
        self._local_seed = Seeding(self._add_to_local(until, budgets, previous),
                                    everything=budgets is None)

    async def _add_to_local(self, until: datetime, budgets: Sequence[Budget] | None,
                            previous: Seeding | None) -> None:
        if previous is not None and previous.pending:
            try:
                await asyncio.wait({previous.task})
            except asyncio.CancelledError:  # the gate closing: that read too
                previous.task.cancel()
                raise
        record = await self._read(until, "counting from zero", budgets)
        if record is not None:
            self.seed(record)

    async def _read(self, until: datetime, otherwise: str,
                    budgets: Sequence[Budget] | None = None) -> Sequence[Recorded] | None:
        """The ledger's record of the current periods (of `budgets`, by default
        all) up to `until` (`read_record`)."""
        if self.record is None:
            return []
        return await read_record(self.record, self.current_periods(budgets), until, otherwise)
