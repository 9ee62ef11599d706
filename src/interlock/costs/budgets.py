"""Budgets: a spending limit per deployment, provider, model group, client key or end
user, per period.

`BudgetGate` is an `AttemptGate` (`dispatch.gates`). Before each attempt it
reserves the call's expected cost on every budget that covers the deployment;
it refuses (answers a text naming the budget) when any of them has nothing
left, which takes the deployment out of this request's candidates like a
cooldown. After the attempt the ticket settles the reservation with what the
call's ledger row charges: its cost, Interlock's estimate of it when the usage
never came (a stream cut short), nothing when the call failed. Counted in
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
local ones begin from the ledger's record up to the failure too.

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

Imports: the standard library, `catalog`, `dispatch.gates`, `tokens`, `types`,
`costs.budget_memory_counts`, `costs.budget_periods`, `costs.budget_record`,
`costs.budget_refusal`, `costs.budget_scripts`, `costs.prices`, `costs.settings`, `costs.usd`;
`redis.asyncio` lazily.
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
from interlock.costs.budget_memory_counts import Count, MemoryBudgetCounts
from interlock.costs.budget_periods import covers, period_id
from interlock.costs.budget_record import (
    RECORD_RETRY,
    Periods,
    ReadRecord,
    Recorded,
    Seeding,
    SpendSource,
    recorded_spend,
)
from interlock.costs.budget_refusal import Full, refusal
from interlock.costs.budget_scripts import RESERVE, SEED, SETTLE
from interlock.costs.prices import PriceBook
from interlock.costs.settings import Budget
from interlock.costs.usd import plain_usd, to_nano
from interlock.dispatch.gates import Refusal
from interlock.tokens import estimated_usage
from interlock.types import ChatRequest, ChatResponse

log = logging.getLogger(__name__)

# Importable from here, where they were before the gate's parts moved to modules of their own.
__all__ = [
    "BudgetGate", "BudgetTicket", "Periods", "ReadRecord", "Recorded", "SpendSource", "covers",
    "period_id", "plain_usd", "recorded_spend", "to_nano",
]

# Seconds on local counts after a Redis failure, and Redis's time limits: the
# gateway passes router_settings' redis_retry_interval and redis_timeout.
REDIS_RETRY_AFTER = 1.0
REDIS_TIMEOUT = 0.5
# Settles Redis could not be given (it was away), given once it answers again:
# else each reservation would hold its amount until its period ends. Past this
# many, the rest hold until then.
MAX_UNSETTLED = 10_000


@dataclass
class BudgetTicket:
    gate: BudgetGate
    deployment: Deployment
    request: ChatRequest
    keys: list[str]
    reserved: int
    # Seconds each key lives: its period's end, and an hour's grace.
    ttls: list[int]
    on_redis: bool
    # Names the reservation in Redis, so that it is settled exactly once.
    id: str = ""
    settled: bool = field(default=False)

    async def release(self, response: ChatResponse | None) -> None:
        """Settle with what the call's ledger row charges: the cost of its usage,
        or, when the usage never came (a stream its client left, or that broke,
        before the last chunk; a call cut off), of Interlock's estimate of it
        (`tokens.estimated_usage`), since the provider bills what it generated.
        None (the call failed, or was never made) costs nothing; a cost that
        cannot be priced, the reservation."""
        if self.settled:
            return
        self.settled = True
        if response is None:
            actual = 0
        else:
            usage = response.usage or estimated_usage(self.request, response)
            cost = self.gate.prices.cost(self.deployment, usage, response.service_tier)
            actual = self.reserved if cost is None else to_nano(cost)
        await self.gate._settle(self, actual)


class BudgetGate(MemoryBudgetCounts):
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
        super().__init__(budgets, clock=clock, key_prefix=key_prefix, record=record)
        self.prices = prices
        self.redis_url = redis_url
        self._redis: Any = None
        self._reserve: Any = None
        self._settle_script: Any = None
        self._seed_script: Any = None
        self.redis_timeout = redis_timeout
        self.retry_interval = retry_interval
        self._redis_down_until = 0.0
        self._on_redis = True  # until a Redis call fails: one warning an outage
        self._unpriced_warned: set[str] = set()
        # Redis calls left running by a cancelled caller (see `_survive`).
        self._background: set[asyncio.Task[Any]] = set()
        # (keys, ticket id, real cost, ttls) of settles owed to Redis (`MAX_UNSETTLED`).
        self._unsettled: list[tuple[list[str], str, int, list[int]]] = []
        self._redis_seed: Seeding | None = None
        # Marks the hashes this gate creates in Redis while the record it is to
        # add there is not in (`budget_scripts`), and the end of that record.
        self._claim = secrets.token_hex(8)
        self._claiming_until: datetime | None = None
        self._record_off_until = 0.0
        # Counting (`begin`): budgets that appear from then on are seeded on their own.
        self._begun = False
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

    @property
    def shared(self) -> bool:
        """Counted in Redis, which keeps the counts across restarts, not in memory."""
        return self.redis_url is not None


    async def acquire(self, deployment: Deployment,
                      request: ChatRequest) -> BudgetTicket | Refusal:
        applicable = [b for b in self.budgets if covers(b, deployment, request)]
        if self.key_budgets and request.api_key_id is not None:
            own = self.key_budgets.get(request.api_key_id)
            if own is not None:
                applicable.append(own)
        if not applicable:
            return _FREE
        expected = self.prices.expected_cost(deployment, request)
        if expected is None:
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
        ttls = [int(left) + 3600 for _, left in periods]
        ticket_id = secrets.token_hex(8)
        on_redis = await self._use_redis()
        if on_redis and self._unsettled:
            # In the background: a request must not wait for thousands of owed
            # settles, nor drop the rest of them if its client leaves midway.
            self._survive(self._settle_unsettled())
        refused: int | Full | None = None
        if on_redis:
            refused = await self._reserve_shared(applicable, periods, keys, limits, amount,
                                                 ttls, ticket_id)
        if refused is None:  # on local counts, or Redis failed just now
            on_redis = False
            seeding = self._local_seed
            if seeding is not None and seeding.pending:
                await seeding.wait()
            refused = self._reserve_local(keys, limits, amount, ttls)
        if isinstance(refused, Full):
            budget = applicable[refused.index - 1]
            kind, name = budget.target
            counted = (kind, name, str(budget.period))
            self.refusals[counted] = self.refusals.get(counted, 0) + 1
            return refusal(budget, request, refused, None if expected is None
                            else to_nano(expected), periods[refused.index - 1][1])
        return BudgetTicket(self, deployment, request, keys, amount, ttls, on_redis,
                            ticket_id)

    async def start(self) -> None:
        """At the gateway's start: counted in memory, the counts begin from the
        ledger's record of their periods; with Redis, which keeps them, only if it
        does not answer now (`probe`). Waits for the record at most `SEED_WAIT`."""
        if self.shared and not self._begun:
            await self.probe()
        self.begin()
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

    async def probe(self) -> bool:
        """Whether Redis answers now; if not, the counts move to memory as at any
        Redis failure (`_redis_failed`), so a start during an outage counts
        from the ledger's record, not from zero."""
        if not await self._use_redis():
            return False
        try:
            await asyncio.wait_for(self._redis.ping(), self.redis_timeout)
        except Exception as exc:
            self._redis_failed(exc)
            return False
        return True

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
        """Like `status`, read from Redis when it is in use (the count all replicas share)."""
        rows = self.status()
        if not await self._use_redis():
            return rows
        for row, (b, key, _, _) in zip(rows, self._listed(), strict=True):
            try:
                values = await self._redis.hgetall(key)
            except Exception:
                return rows
            spent = int(values.get(b"spent", 0))
            reserved = int(values.get(b"reserved", 0))
            row.update(spent_usd=plain_usd(spent), reserved_usd=plain_usd(reserved),
                       exhausted=spent + reserved >= to_nano(b.max_usd))
        return rows

    async def aclose(self) -> None:
        for seeding in (self._local_seed, self._redis_seed):
            if seeding is not None:
                await seeding.aclose()
        if self._background:  # a settle a cancelled request left behind still counts
            await asyncio.wait(self._background, timeout=2.0)
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
            self._redis = None

    # ------------------------------------------------------------------ internals


    def _warn_unpriced(self, deployment: Deployment) -> None:
        if deployment.name not in self._unpriced_warned:
            self._unpriced_warned.add(deployment.name)
            log.warning("budget covers %s but its price is unknown: its calls cannot be counted",
                        deployment.name)


    async def _reserve_shared(self, budgets: Sequence[Budget],
                              periods: Sequence[tuple[str, float]], keys: list[str],
                              limits: list[int], amount: int, ttls: list[int],
                              ticket_id: str) -> Full | int | None:
        """`_reserve_redis`, for a count Redis lacks (it lost its data) after its
        seeding from the ledger's record has begun (`_seed_redis`). None: Redis
        failed, count in memory."""
        if self._record_owed():
            # Whatever the marks say: another replica's seeding leaves the
            # hashes this gate claimed to this gate's record.
            self._seed_redis()
        seeding = self._redis_seed
        if seeding is not None and seeding.pending:  # wait what is left of its time
            await seeding.wait()
        claim = self._claiming()
        marks = () if claim or self.record is None else [
            self._mark(b, pid) for b, (pid, _) in zip(budgets, periods, strict=True)]
        refused = await self._reserve_redis(keys, limits, amount, ttls, ticket_id, marks,
                                            claim)
        if refused != -2:
            return refused
        seeding = self._seed_redis()
        await seeding.wait()
        if not await self._use_redis():  # the seeding found Redis gone
            return None
        return await self._reserve_redis(keys, limits, amount, ttls, ticket_id,
                                         claim=self._claiming())

    async def _reserve_redis(self, keys: list[str], limits: list[int], amount: int,
                             ttls: list[int], ticket_id: str, marks: Sequence[str] = (),
                             claim: str | None = None) -> Full | int | None:
        args = [amount, ticket_id, len(keys), *limits, *ttls]
        if claim is not None:
            args.append(claim)
        call = self._survive(self._reserve(keys=[*keys, *marks], args=args))
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            # The request was cancelled (its client left) while the script was on
            # its way: Redis may reserve all the same, with no ticket to give it
            # back, holding the amount until the period ends. Undo it once known.
            call.add_done_callback(lambda _: self._survive(
                self._settle_redis(keys, ticket_id, 0, ttls)))
            raise
        except Exception as exc:
            # The script may still run (a stall past the timeout): give it up by
            # its id once Redis answers, which undoes it or keeps it from holding.
            self._redis_failed(exc)
            self._owe(keys, ticket_id, 0, ttls)
            return None
        if not self._on_redis:
            self._on_redis = True
            log.info("budget counts are shared through Redis again")
        if isinstance(result, list):  # refused: which budget, its spent and reserved
            return Full(*(int(v) for v in result))
        return int(result)

    async def _settle_redis(self, keys: list[str], ticket_id: str, actual: int,
                            ttls: list[int]) -> None:
        """Settle a reservation made in Redis there, now or, if Redis is away,
        once it answers again (`_settle_unsettled`)."""
        if not await self._use_redis():
            self._owe(keys, ticket_id, actual, ttls)
            return
        try:
            # Shielded: a request cancelled while settling still gives back
            # what it reserved.
            await asyncio.shield(self._survive(self._settle_script(
                keys=keys, args=[ticket_id, actual, *ttls])))
        except Exception as exc:
            self._redis_failed(exc)
            self._owe(keys, ticket_id, actual, ttls)

    def _owe(self, keys: list[str], ticket_id: str, actual: int, ttls: list[int]) -> None:
        if len(self._unsettled) < MAX_UNSETTLED:
            self._unsettled.append((keys, ticket_id, actual, ttls))

    async def _settle_unsettled(self) -> None:
        waiting, self._unsettled = self._unsettled, []
        try:
            while waiting:
                keys, ticket_id, actual, ttls = waiting[0]
                await self._settle_redis(keys, ticket_id, actual, ttls)  # a failure owes it again
                waiting.pop(0)
        finally:
            # Stopped midway (the gate closing): what was not sent is still owed.
            # A settle sent twice counts once (`budget_scripts.SETTLE`).
            for keys, ticket_id, actual, ttls in waiting:
                self._owe(keys, ticket_id, actual, ttls)

    def _survive(self, call: Any) -> asyncio.Task[Any]:
        """`call` as a task that a cancelled caller does not stop (awaited through
        `asyncio.shield`): a script sent to Redis may run whether or not its
        caller waits, so the count must follow it. Kept until done; a failure
        is noted as any Redis failure."""
        task = asyncio.ensure_future(call)
        self._background.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, Exception):
            self._redis_failed(error)

    async def _settle(self, ticket: BudgetTicket, actual: int) -> None:
        if ticket.on_redis:
            # Where it was reserved, even if Redis is away now (then once it is back).
            await self._settle_redis(ticket.keys, ticket.id, actual, ticket.ttls)
            if self._use_local():
                # While Redis is away this process counts on its own: with the spend.
                for key in ticket.keys:
                    self._local.setdefault(key, Count()).spent += actual
            return
        for key in ticket.keys:
            count = self._local.setdefault(key, Count())
            count.reserved = max(0, count.reserved - ticket.reserved)
            count.spent += actual

    def _mark(self, budget: Budget, pid: str) -> str:
        kind, name = budget.target
        return f"{self.key_prefix}seeded:{kind}:{name}:{pid}"

    def _claiming(self) -> str | None:
        """This gate's claim while a record it is to add to Redis is not in (being
        read, or to be read again after a failure): the hashes it creates take
        it, and the record when it lands. None otherwise: the marks are checked."""
        if self._claiming_until is None:
            return None
        seeding = self._redis_seed
        if (seeding is not None and seeding.pending) or self.clock() < self._record_off_until:
            return self._claim
        return None

    def _record_owed(self) -> bool:
        """A record this gate claimed hashes for is not in, no read of it is
        under way, and `RECORD_RETRY` has passed since the last one failed."""
        seeding = self._redis_seed
        return (self._claiming_until is not None and self.record is not None
                and not (seeding is not None and seeding.pending)
                and self.clock() >= self._record_off_until)

    def _seed_redis(self) -> Seeding:
        """Give Redis each budget's count as the ledger records it (`budget_scripts.SEED`): a
        Redis restarted without its data, or one that never had this period.
        One read at a time, shared by the calls that wait for it; one asked for
        again after a failure ends where the first would have, since the counts
        it claimed began there."""
        seeding = self._redis_seed
        if seeding is None or not seeding.pending:
            if self._claiming_until is None:
                self._claiming_until = datetime.fromtimestamp(self.clock(), UTC)
            seeding = self._redis_seed = Seeding(self._add_to_redis(self._claiming_until))
        return seeding

    async def _add_to_redis(self, until: datetime) -> None:
        record = await self._read(until, (
            f"counting in Redis from what it has; asked again in {RECORD_RETRY:g} s, "
            "and added to the counts begun meanwhile"))
        if record is None:
            self._record_off_until = self.clock() + RECORD_RETRY
            return
        now = self.clock()
        for budget, pid, amounts in record:
            current, left = period_id(budget, now)
            if current != pid:  # the period turned meanwhile: the new one starts empty
                continue
            keys = [self._key(budget, pid, who) for who in amounts]
            try:
                await self._seed_script(keys=[self._mark(budget, pid), *keys],
                                        args=[int(left) + 3600, self._claim, *amounts.values()])
            except Exception as exc:
                self._redis_failed(exc)
                return
        self._claiming_until = None


    def _use_local(self) -> bool:
        return not self.redis_url or self.clock() < self._redis_down_until

    async def _use_redis(self) -> bool:
        url = self.redis_url
        if url is None or self._use_local():
            return False
        if self._redis is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError

            # One retry, at once, on a connection error only: a pooled connection
            # that died while Redis restarted fails once though Redis is back,
            # which must not count as an outage; a stalled Redis (a timeout)
            # still costs one timeout. Blocking pool: a burst of calls waits
            # briefly for a connection (at least a second) instead of failing
            # over to local counts.
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=32, timeout=max(1.0, self.redis_timeout),
                socket_timeout=self.redis_timeout, socket_connect_timeout=self.redis_timeout,
                retry=retry)
            self._redis = aioredis.Redis(connection_pool=pool, retry=retry)
            self._reserve = self._redis.register_script(RESERVE)
            self._settle_script = self._redis.register_script(SETTLE)
            self._seed_script = self._redis.register_script(SEED)
        return True

    def _redis_failed(self, exc: Exception) -> None:
        self._redis_down_until = self.clock() + self.retry_interval
        if not self._on_redis:  # the same outage
            return
        self._on_redis = False
        log.warning("budget counts fall back to this process: Redis failed (%s); trying "
                    "it again every %g s", type(exc).__name__, self.retry_interval)
        self._seed_local(datetime.fromtimestamp(self.clock(), UTC))


class _FreeTicket:
    """For deployments no budget covers: nothing to settle."""

    async def release(self, response: ChatResponse | None) -> None:
        return None


_FREE: Any = _FreeTicket()
