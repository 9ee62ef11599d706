"""Budgets: a spending limit per deployment, provider, model group, client key or end
user, per period.

`BudgetGate` is an `AttemptGate` (`dispatch.gates`). Before each attempt it
reserves the call's expected cost on every budget that covers the deployment;
it refuses (answers a text naming the budget) when any of them has nothing
left, which takes the deployment out of this request's candidates like a
cooldown. After the attempt the ticket settles the reservation with what the
call's ledger row charges: its cost, Interlock's estimate of it when the usage
never came (a stream cut short), nothing when the call failed or its answer was
mocked (`mock_response`: a mocked call reserves nothing either). Counted in
memory (no Redis), the counts start from the ledger's record of the period
(`recorded_spend`, `seed`), so a restart does not reset them.

A budget admits a call while spent + reserved is below its limit, so the
overspend is bounded by the calls in flight when the limit is crossed: with
Redis (`redis_url`) the check and the reservation are one Lua script over all
the budgets involved, so replicas share one count and together overshoot by
at most one in-flight call each. Without Redis each process keeps its own
count. When Redis fails (an error, or no answer within `redis_timeout`), the
gate falls back to its own memory, logs once an outage, and tries Redis again
every `retry_interval`. Redis's counts are out of reach meanwhile, so the
local ones begin from the ledger's record up to the failure too (or from what
this process counted or last heard from Redis, if more), and the cost of each
call counted there joins Redis's count once it answers, unless the ledger's
record Redis was seeded with holds it already (`budget_redis_counts`).

The ledger's record is read on one path (`Seeding`, through `record`, which
the gateway gives): at start without Redis, when Redis fails, and when Redis
lacks a period's count (it lost its data). Calls wait for it at most
`SEED_WAIT`; a read that lands later is still added, when it lands, to the
counts begun meanwhile (in memory, or in Redis to the hashes this gate created
meanwhile, which it marks with its claim), so a slow ledger delays the record
but loses none of it.

A client key's budget (`api_key`, a name from general_settings.api_keys) counts
the calls of that key's requests through the gateway, on any deployment. Keys
made at run time carry their budgets with them (`set_key_budgets`): the gateway
hands this gate every one it reads, and they count as config budgets do.
An end user's budget (`end_user`: one user, or "*" for each) counts the calls
of requests whose `user` names them, on any deployment; "*" keeps one count per
end user, keyed by a digest of the id so a key stays short whatever a client
sends. Local counts of periods that have ended are let go now and then, so that
a process serving many end users does not keep them all.

Amounts are whole nano-dollars (integers) in the counters; Redis' Lua numbers
are doubles, exact up to 2**53 nano-dollars (about $9 million per period).

Where each part lives: the counts in memory (`budget_memory_counts`) and in
Redis (`budget_redis_counts`, which builds on them and the gate on it), the
gate's close (`budget_closing`), the ledger's record (`budget_record`),
periods and coverage (`budget_periods`), and what a refusal says
(`budget_refusal`).

Imports: the standard library, `errors`, `mocked`, `catalog`, `dispatch.gates`, `tokens`,
`types`,
`costs.budget_memory_counts`, `costs.budget_periods`, `costs.budget_record`,
`costs.budget_redis_counts`, `costs.budget_refusal`, `costs.prices`, `costs.settings`,
`costs.usd`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from interlock.catalog import Deployment
from interlock.costs.budget_memory_counts import Count
from interlock.costs.budget_periods import covers, period_id
from interlock.costs.budget_record import (
    Periods,
    ReadRecord,
    Recorded,
    SpendSource,
    recorded_spend,
)
from interlock.costs.budget_redis_counts import REDIS_RETRY_AFTER, REDIS_TIMEOUT, RedisBudgetCounts
from interlock.costs.budget_refusal import Full, refusal
from interlock.costs.prices import PriceBook
from interlock.costs.settings import Budget
from interlock.costs.usd import plain_usd, to_nano
from interlock.dispatch.gates import Refusal
from interlock.errors import GatewayShuttingDown
from interlock.mocked import mock_text
from interlock.tokens import billed_usage
from interlock.types import ChatRequest, ChatResponse

log = logging.getLogger(__name__)

# Seconds `aclose` gives the settles under way to reach Redis; those left then
# are given up: a stalled Redis must not hold a shutdown for its own timeout.
CLOSE_WAIT = 2.0

# Importable from here, where they were before the gate's parts moved to modules of their own.
__all__ = [
    "BudgetGate", "BudgetTicket", "Periods", "ReadRecord", "Recorded", "SpendSource", "covers",
    "period_id", "plain_usd", "recorded_spend", "to_nano",
]


@dataclass
class BudgetTicket:
    gate: BudgetGate
    deployment: Deployment
    request: ChatRequest
    keys: list[str]
    reserved: int
    on_redis: bool
    # Names the reservation in Redis, so that it is settled exactly once.
    id: str = ""
    settled: bool = field(default=False)
    # A mocked answer (`mock_response`): billed by no one, its row charges nothing.
    mocked: bool = False
    # Counted in memory while Redis was away, with a ledger: its budgets'
    # seeding marks, which its cost's way to Redis heeds (`budget_scripts.SPEND`).
    marks: list[str] = field(default_factory=list)
    # When each key's period ends (Unix seconds): each count's expiry is worked
    # out from it whenever it is sent, and a settle owed to Redis past it is let
    # go (`budget_owed_settle.OwedSettle`).
    ends: list[float] = field(default_factory=list)

    async def release(self, response: ChatResponse | None) -> None:
        """Settle with what the call's ledger row charges: the cost of its usage,
        or, when the usage never came (a stream its client left, or that broke,
        before the last chunk; a call cut off), of Interlock's estimate of it
        (`tokens.estimated_usage`), since the provider bills what it generated.
        None (the call failed, or was never made) costs nothing; a cost that
        cannot be priced, the reservation. A mocked answer costs nothing, as
        its row says, whatever its estimated usage."""
        if self.settled:
            return
        self.settled = True
        if response is None or self.mocked:
            actual = 0
        else:
            usage = billed_usage(self.request, response)
            cost = self.gate.prices.cost(self.deployment, usage, response.service_tier)
            actual = self.reserved if cost is None else to_nano(cost)
        await self.gate._settle(self, actual)


class BudgetGate(RedisBudgetCounts):
    name = "budget"

    def __init__(
        self,
        budgets: Sequence[Budget],
        prices: PriceBook,
        *,
        redis_url: str | None = None,
        clock: Callable[[], float] | None = None,
        key_prefix: str = "interlock:budget:",
        redis_timeout: float = REDIS_TIMEOUT,
        retry_interval: float = REDIS_RETRY_AFTER,
        record: ReadRecord | None = None,
    ) -> None:
        super().__init__(budgets, clock=clock, key_prefix=key_prefix, record=record,
                         redis_url=redis_url, redis_timeout=redis_timeout,
                         retry_interval=retry_interval)
        self.prices = prices
        self._unpriced_warned: set[str] = set()
        # Counting (`begin`): budgets that appear from then on are seeded on their own.
        self._begun = False
        # The key budgets as they were when the first change came while the gate
        # was closing or closed: `start` seeds those that appeared since.
        self._keys_at_close: dict[str, Budget] | None = None
        # Refusals by budget: (target, name, period), as /metrics labels them.
        self.refusals: dict[tuple[str, str, str], int] = {}

    # ------------------------------------------------------------------ gate

    def set_key_budgets(self, budgets: Iterable[Budget]) -> None:
        """The budgets of the client keys made at run time, all of them, each
        naming its key (`Budget.api_key`): a key left out has none from now on.
        A budget keeps its count across changes to its limit. One that appears
        once counting has begun (a key's first budget, or a changed period)
        begins, counted in memory, from the ledger's record of its period, as
        the others did at start: else it would allow the period's spend again
        (Redis seeds a count it lacks by itself: `_reserve_shared`)."""
        before = self.key_budgets
        self.key_budgets = {b.target[1]: b for b in budgets}
        if self._shutting:
            # No new reads (nothing would end them): `start` reads those that
            # appeared since the first change made while closed.
            if self._keys_at_close is None:
                self._keys_at_close = before
            return
        self._seed_appeared(before)

    def _seed_appeared(self, before: dict[str, Budget]) -> None:
        """Read the ledger's record of the key budgets not in `before` (or of
        another period), when counting in memory (`set_key_budgets`)."""
        if not self._begun or not self._use_local():
            return
        now = self.clock()
        appeared = [b for name, b in self.key_budgets.items()
                    if (name not in before or before[name].period != b.period)
                    and self._key(b, period_id(b, now)[0], None) not in self._local]
        if appeared:
            self._seed_local(datetime.fromtimestamp(now, UTC), appeared)

    @property
    def refused(self) -> int:
        """Calls refused, by any budget."""
        return sum(self.refusals.values())


    async def acquire(self, deployment: Deployment,
                      request: ChatRequest) -> BudgetTicket | Refusal:
        """A ticket, or a refusal by the first budget with no room; once the
        gate closes, a call a shared budget covers raises `GatewayShuttingDown`."""
        applicable = [b for b in self.budgets if covers(b, deployment, request)]
        if self.key_budgets and request.api_key_id is not None:
            own = self.key_budgets.get(request.api_key_id)
            if own is not None:
                applicable.append(own)
        if not applicable:
            return _FREE
        if self.shared and (self._closed or (self._closing and self._redis is None)):
            # Its counts are Redis's, out of reach now (closing, no client is
            # made): one in memory would begin from nothing and admit a call
            # on a spent budget.
            raise _closed()
        # A mocked answer holds nothing and costs nothing (its ledger row charges
        # $0), but is still refused by a spent budget, as a real call would be.
        mocked = mock_text(request, deployment) is not None
        expected = None if mocked else self.prices.expected_cost(deployment, request)
        if expected is None and not mocked:
            self._warn_unpriced(deployment)
        amount = 0 if expected is None else to_nano(expected)
        now = self.clock()
        periods = [period_id(b, now) for b in applicable]
        keys = [self._key(b, pid, request.user)
                for b, (pid, _) in zip(applicable, periods, strict=True)]
        limits = [to_nano(b.max_usd) for b in applicable]
        # A reservation past the largest limit holds no more back than the limit
        # does, and a client's max_tokens can make it any size: past Redis's
        # 64-bit counters it failed the script, which put every replica on local
        # counts for a while (a way around a shared budget).
        amount = min(amount, max(limits))
        # Each count lives as long as its own period: a minute's budget beside
        # a month's would otherwise keep a month of dead minutes.
        ends = [now + left for _, left in periods]
        ticket_id = secrets.token_hex(8)
        on_redis = await self._use_redis()
        if on_redis:
            self._send_owed()
        refused: int | Full | None = None
        if on_redis:
            refused = await self._reserve_shared(applicable, periods, keys, limits, amount,
                                                 ends, ticket_id)
            if refused is None and self._shutting:  # cut by the close, or no seeding now
                raise _closed()
        if refused is None:  # on local counts, or Redis failed just now
            on_redis = False
            seeding = self._local_seed
            if seeding is not None and seeding.pending:
                await seeding.wait()
            refused = self._reserve_local(keys, limits, amount, ends)
        if isinstance(refused, Full):
            budget = applicable[refused.index - 1]
            kind, name = budget.target
            counted = (kind, name, str(budget.period))
            self.refusals[counted] = self.refusals.get(counted, 0) + 1
            return refusal(budget, request, refused, None if expected is None
                            else to_nano(expected), periods[refused.index - 1][1])
        marks = [] if on_redis or not self.shared or self.record is None else [
            self._mark(b, pid) for b, (pid, _) in zip(applicable, periods, strict=True)]
        return BudgetTicket(self, deployment, request, keys, amount, on_redis,
                            ticket_id, mocked=mocked, marks=marks, ends=ends)

    async def start(self) -> None:
        """At the gateway's start: counted in memory, the counts begin from the
        ledger's record of their periods; with Redis, which keeps them, only if it
        does not answer now (`probe`). Waits for the record at most `SEED_WAIT`."""
        self._opened()
        if self.shared and not self._begun:
            await self.probe()
        self.begin()
        # The gateway hands over its keys' budgets before this start (review):
        # those that appeared while closed begin from the ledger too.
        before, self._keys_at_close = self._keys_at_close, None
        if before is not None:
            self._seed_appeared(before)
        if self._local_seed is not None:
            await self._local_seed.wait()

    def begin(self) -> None:
        """Begin counting (`start`, or the gateway for a gate it makes once
        started): in memory, from the ledger's record of each budget's period,
        read in the background; budgets that appear later are read then."""
        if self._begun:
            return
        self._begun = True
        if not self.shared:
            self._seed_local(datetime.fromtimestamp(self.clock(), UTC))


    def _listed(self) -> list[tuple[Budget, str, str, float]]:
        """(budget, key, period id, seconds left) of each budget with one count:
        all but the per-end-user ("*") ones, which have a count per end user."""
        now = self.clock()
        out = []
        for b in (*self.budgets, *self.key_budgets.values()):
            kind, name = b.target
            if kind == "end_user" and name == "*":
                continue
            pid, left = period_id(b, now)
            out.append((b, self._key(b, pid, name), pid, left))
        return out

    def status(self) -> list[dict[str, Any]]:
        """Spent, reserved and limit per budget for the current period (this process'
        view); a per-end-user budget ("*") is not listed: it has a count per end user."""
        out = []
        for b, key, pid, left in self._listed():
            count = self._local.get(key, Count())
            kind, name = b.target
            out.append({
                "target": kind, "name": name, "period": b.period, "period_id": pid,
                "limit_usd": str(b.max_usd), "spent_usd": plain_usd(count.spent),
                "reserved_usd": plain_usd(count.reserved),
                "exhausted": count.spent + count.reserved >= to_nano(b.max_usd),
                "resets_in_s": round(left, 1),
            })
        return out

    async def astatus(self) -> list[dict[str, Any]]:
        """Like `status`, read from Redis when it is in use (the count all replicas
        share). Counts Redis lost (its data gone) are seeded from the ledger's
        record first, as the next call would (`_seeded_for_reading`)."""
        rows = self.status()
        if not await self._use_redis():
            return rows
        listed = self._listed()
        try:
            await self._seeded_for_reading([self._mark(b, pid) for b, _, pid, _ in listed])
        except Exception:
            return rows
        for row, (b, key, _, _) in zip(rows, listed, strict=True):
            try:
                # Two fields, not the whole hash: it also holds a field per
                # reservation and per outage call, and /metrics reads it often.
                spent_field, reserved_field = await self._redis.hmget(key, "spent", "reserved")
            except Exception:
                return rows
            spent = int(spent_field or 0)
            reserved = int(reserved_field or 0)
            row.update(spent_usd=plain_usd(spent), reserved_usd=plain_usd(reserved),
                       exhausted=spent + reserved >= to_nano(b.max_usd))
        return rows

    async def aclose(self) -> None:
        """Stop counting through Redis: the settles under way (a cancelled
        request's among them) and those owed from an outage, if Redis answers,
        get `CLOSE_WAIT` to reach it on the client there is; those left are
        given up (`_end_background`). Closed, the gate refuses the calls a
        shared budget covers, and counts those that end in memory only,
        opening no Redis connection. Cancelled midway, it still closes what it
        opened. `start` opens the gate again."""
        self._closing = True
        try:
            for seeding in (self._local_seed, self._redis_seed):
                if seeding is not None:
                    await seeding.aclose()
            if not self._use_local():  # Redis answers: what is owed goes now
                self._send_owed()
            await self._end_background()
        finally:
            # Closed before the client is: no command can open it again.
            self._closed, self._closing = True, False
            for task in self._background:  # only if cancelled midway
                task.cancel()
            redis, self._redis = self._redis, None
            if redis is not None:
                await redis.aclose(close_connection_pool=True)

    # ------------------------------------------------------------------ internals

    async def _end_background(self) -> None:
        """Wait `CLOSE_WAIT` for the Redis calls under way, then cancel those
        left (a cancelled settle is kept as owed), and give up, in one warning,
        the settles still owed. What a cancel sets off (a reservation's undo)
        sends nothing now that the gate is closed: ended in a turn or two."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=CLOSE_WAIT)
        for _ in range(3):
            left = set(self._background)
            if not left:
                break
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=CLOSE_WAIT)
        given_up = len(self._unsettled) + len(self._unseeded)
        for settle in (*self._unsettled, *self._unseeded):
            if settle.ended is not None:
                # Its amount is no longer owed (as when too many are: `_owe`):
                # held on in the counts, it would hold a reopened gate back.
                self._owed_paid(settle)
        if given_up:
            log.warning("budgets: closing, %d settle(s) owed to Redis were given up (not "
                        "taken within %g s): their calls' cost is missing from the shared "
                        "count (the ledger has it), and a reservation among them holds until "
                        "its period ends", given_up, CLOSE_WAIT)
        self._unsettled, self._unseeded = [], []


    def _warn_unpriced(self, deployment: Deployment) -> None:
        if deployment.name not in self._unpriced_warned:
            self._unpriced_warned.add(deployment.name)
            log.warning("budget covers %s but its price is unknown: its calls cannot be counted",
                        deployment.name)



    async def _settle(self, ticket: BudgetTicket, actual: int) -> None:
        if ticket.on_redis:
            # Where it was reserved, even if Redis is away now (then once it is back).
            await self._settle_redis(ticket.keys, ticket.id, actual, ticket.ends)
            if self._use_local():
                # While Redis is away this process counts on its own: with the spend.
                for key in ticket.keys:
                    self._local.setdefault(key, Count()).spent += actual
            return
        counts = [self._local.setdefault(key, Count()) for key in ticket.keys]
        for count in counts:
            count.spent += actual
        try:
            if self.shared:
                # Counted in memory while Redis was away: the shared count must
                # have it too, or once Redis is back every replica admits it again.
                await self._spend_redis(ticket.keys, ticket.id, actual, ticket.ends,
                                        ticket.marks)
        finally:
            # The hold goes only now: given back before the send, the cost was
            # held against Redis's limits by neither for its round trip, and
            # calls arriving meanwhile passed on a count without it (review).
            for count in counts:
                count.reserved = max(0, count.reserved - ticket.reserved)


def _closed() -> GatewayShuttingDown:
    """What a call a shared budget covers gets once the gate closes (`aclose`):
    not a refusal (a 429 its SDK would not retry, and the dispatcher would try
    the next candidate, as closed), but the gateway's 503 at shutdown, which a
    client's retry sends to another replica. A new one each time: the
    dispatcher puts the request's attempts on it."""
    return GatewayShuttingDown(
        "The gateway is shutting down: its budgets are closed, so a call a shared (Redis) "
        "budget covers is not admitted here; send it again (another replica takes it).")


class _FreeTicket:
    """For deployments no budget covers: nothing to settle."""

    async def release(self, response: ChatResponse | None) -> None:
        return None


_FREE: Any = _FreeTicket()
