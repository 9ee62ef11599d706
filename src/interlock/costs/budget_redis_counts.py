"""A budget gate's counts shared through Redis, so that replicas count one
spend: the check and the reservation are one Lua script over all the budgets a
call involves (`budget_scripts`), and together the replicas overshoot a limit
by at most one in-flight call each.

When Redis fails (an error, or no answer within `redis_timeout`), the counts
fall back to this process' memory (`budget_memory_counts`); an outage is logged
once and Redis is tried again every `retry_interval`. Each outage begins its
counts from the most this process knows the period has spent: the ledger's
record up to the failure, or, if higher, the count it had (an earlier outage's,
or Redis's last reply for it plus what it still owes Redis). Settles Redis
could not be given are kept and given once it answers, and so is the cost of
each call counted in memory, with when it ended (`budget_scripts.SPEND`): the
outage's spend joins the shared count, except where the ledger's record Redis
was seeded with already holds the call. Until they are in, a reservation in
Redis counts them against the limits, and so does what the outage's calls
still running hold. Each budget's count takes a call's cost on its own, and a
period that has ended takes nothing more (its seeding mark may never come
back): what was owed to it is let go. A Redis that lacks a period's count (it
lost its data) is given the ledger's record of it; the hashes created while
that record is being read are claimed, so the record lands in them however late.

Imports: the standard library, `costs.budget_closing`, `costs.budget_memory_counts`,
`costs.budget_owed_settle`, `costs.budget_periods`, `costs.budget_record`,
`costs.budget_redis_client`, `costs.budget_refusal`, `costs.settings`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from interlock.costs.budget_closing import Closing
from interlock.costs.budget_memory_counts import MemoryBudgetCounts
from interlock.costs.budget_owed_settle import OwedSettle
from interlock.costs.budget_periods import period_id, ttl_until
from interlock.costs.budget_record import RECORD_RETRY, ReadRecord, Seeding
from interlock.costs.budget_redis_client import connect
from interlock.costs.budget_refusal import Full
from interlock.costs.settings import Budget

# The gate's logger: operators filter and configure budgets' messages by it.
log = logging.getLogger("interlock.costs.budgets")

# Seconds on local counts after a Redis failure, and Redis's time limits: the
# gateway passes router_settings' redis_retry_interval and redis_timeout.
REDIS_RETRY_AFTER = 1.0
REDIS_TIMEOUT = 0.5
# Settles Redis could not be given (it was away), given once it answers again:
# else each reservation would hold its amount until its period ends, and the
# spend counted in memory would be spent again. Past this many, a reservation
# holds until then, and a call counted in memory stays out of the shared count.
MAX_UNSETTLED = 10_000
# SPEND's answer for a key whose seeding mark Redis lacks (`budget_scripts`).
MARK_MISSING = -2


class RedisBudgetCounts(MemoryBudgetCounts, Closing):
    """The counts in Redis when `redis_url` is set, in memory when it is not,
    while Redis is away, or once the gate has closed (`_use_local`)."""

    def __init__(self, budgets: Sequence[Budget], *, clock: Callable[[], float] | None,
                 key_prefix: str, record: ReadRecord | None, redis_url: str | None,
                 redis_timeout: float, retry_interval: float) -> None:
        super().__init__(budgets, clock=clock, key_prefix=key_prefix, record=record)
        self.redis_url = redis_url
        self._redis: Any = None
        self._reserve: Any = None
        self._settle_script: Any = None
        self._seed_script: Any = None
        self.redis_timeout = redis_timeout
        self.retry_interval = retry_interval
        self._redis_down_until = 0.0
        self._on_redis = True  # until a Redis call fails: one warning an outage
        # Redis calls left running by a cancelled caller (see `_survive`).
        self._background: set[asyncio.Task[Any]] = set()
        # Settles owed to Redis (`MAX_UNSETTLED` in all), sent by one task at a
        # time, and those that wait for a seeding of Redis from the ledger's
        # record (Redis lacked their seeding marks: sent again once one lands,
        # not at every call), with the seedings done, to tell one that landed
        # while a settle was on its way.
        self._unsettled: list[OwedSettle] = []
        self._unseeded: list[OwedSettle] = []
        self._sender: asyncio.Task[Any] | None = None
        self._overflow_told = False
        self._seedings = 0
        # The soonest a period of a settle owed ends (`_let_ended_settles_go`),
        # and when the settles that wait for a seeding are tried again anyway.
        self._next_end = float("inf")
        self._unseeded_retry_at = 0.0
        self._unseeded_backoff = retry_interval
        self._spend_script: Any = None
        self._redis_seed: Seeding | None = None
        # Marks the hashes this gate creates in Redis while the record it is to
        # add there is not in (`budget_scripts`), and the end of that record.
        self._claim = secrets.token_hex(8)
        self._claiming_until: datetime | None = None
        self._record_off_until = 0.0

    @property
    def shared(self) -> bool:
        """Counted in Redis, which keeps the counts across restarts, not in memory."""
        return self.redis_url is not None

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

    async def _reserve_shared(self, budgets: Sequence[Budget],
                              periods: Sequence[tuple[str, float]], keys: list[str],
                              limits: list[int], amount: int,
                              ends: list[float], ticket_id: str) -> Full | int | None:
        """`_reserve_redis`, for a count Redis lacks (it lost its data) after its
        seeding from the ledger's record has begun (`_seed_redis`). None: Redis
        failed, count in memory. What this process counted in memory and Redis
        has not taken yet is counted against the limits too (`_held_on`): the
        cost it owes Redis of calls that ended, and what the calls still
        running hold; else the first calls back would pass on a count without
        them."""
        held = None
        if self._local:  # an outage's counts, kept for the next one until their period ends
            self._let_ended_go(self.clock())
            held = self._held_on(keys)
        if held is not None:
            limits = [limit - owed - reserved
                      for limit, (owed, reserved) in zip(limits, held, strict=True)]
        refused = await self._reserve_seeded(budgets, periods, keys, limits, amount, ends,
                                             ticket_id)
        if held is not None and isinstance(refused, Full):  # told with what is held here
            owed, reserved = held[refused.index - 1]
            return Full(refused.index, refused.spent + owed, refused.reserved + reserved)
        return refused

    async def _reserve_seeded(self, budgets: Sequence[Budget],
                              periods: Sequence[tuple[str, float]], keys: list[str],
                              limits: list[int], amount: int,
                              ends: list[float], ticket_id: str) -> Full | int | None:
        if self._record_owed() and not self._shutting:
            # Whatever the marks say: another replica's seeding leaves the
            # hashes this gate claimed to this gate's record.
            self._seed_redis()
        if (seeding := self._seeding_under_way()) is not None:  # wait what is left of it
            await seeding.wait()
            if not await self._use_redis():  # the gate closed meanwhile, or Redis failed
                return None
        claim = self._claiming()
        marks = () if claim or self.record is None else [
            self._mark(b, pid) for b, (pid, _) in zip(budgets, periods, strict=True)]
        refused = await self._reserve_redis(keys, limits, amount, ends, ticket_id,
                                            marks, claim)
        if refused != MARK_MISSING:
            return refused
        if self._shutting:  # no seeding now: counted in memory
            return None
        seeding = self._seed_redis()
        await seeding.wait()
        if not await self._use_redis():  # the seeding found Redis gone
            return None
        return await self._reserve_redis(keys, limits, amount, ends, ticket_id,
                                         claim=self._claiming())

    async def _seeded_for_reading(self, marks: Sequence[str]) -> None:
        """Before a status read of the budgets with these seeding marks: the
        seeding a call would start when Redis lacks their counts (it lost its
        data), started by the read, so that it does not report the period unspent
        until the next call; waited for at most what is left of `SEED_WAIT`, as
        calls wait, never for a slow ledger. A read that fails is retried as the
        calls' is: after `RECORD_RETRY`, not at every status read."""
        if self.record is None:
            return
        # As `_reserve_shared`: a record owed is read again; while one is being
        # read (or waits out its retry), the marks are not asked for.
        # EXISTS counts a key once for each time it is named: each mark once.
        distinct = set(marks)
        lost = self._record_owed() or (distinct and self._claiming() is None and (
            await self._redis.exists(*distinct) < len(distinct)))
        if lost and not self._shutting:
            self._seed_redis()
        if (seeding := self._seeding_under_way()) is not None:
            await seeding.wait()

    async def _reserve_redis(self, keys: list[str], limits: list[int], amount: int,
                             ends: list[float], ticket_id: str,
                             marks: Sequence[str] = (),
                             claim: str | None = None) -> Full | int | None:
        now = self.clock()  # each expiry from its period's end, at the send (`ttl_until`)
        args = [amount, ticket_id, len(keys), *limits, *(ttl_until(end, now) for end in ends)]
        if claim is not None:
            args.append(claim)
        undo = OwedSettle(keys, ticket_id, 0, ends)
        call = self._survive(self._reserve(keys=[*keys, *marks], args=args))
        # Cut by the gate's close (nothing else cancels it), the script may have
        # reserved all the same: its undo is owed, and counted as given up.
        call.add_done_callback(lambda task: self._owe(undo) if task.cancelled() else None)
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            if self._cut_by_close(call):  # counted in memory: the gate is closing
                return None
            # The request was cancelled (its client left) while the script was on
            # its way: Redis may reserve all the same, with no ticket to give it
            # back, holding the amount until the period ends. Undo it once known.
            call.add_done_callback(lambda task: None if task.cancelled() else self._undo(undo))
            raise
        except Exception as exc:
            # The script may still run (a stall past the timeout): give it up by
            # its id once Redis answers, which undoes it or keeps it from holding.
            self._redis_failed(exc)
            self._owe(OwedSettle(keys, ticket_id, 0, ends))
            return None
        if not self._on_redis:
            self._on_redis = True
            log.info("budget counts are shared through Redis again")
        if not isinstance(result, list):  # -1, -2, or a resend's 0: no counts
            return int(result)
        if int(result[0]) == 0:  # reserved: 0, then each hash's spent
            self._heard(keys, result[1:])
            return 0
        return Full(*(int(v) for v in result))  # refused: which budget, its spent and reserved

    def _heard(self, keys: Sequence[str], spent: Sequence[Any]) -> None:
        """Note the spent Redis reported for `keys` in the counts this process
        keeps in memory (from an outage), for the next outage to begin from
        (`_count_on`); no count is made for it: a healthy Redis keeps none.
        Within a period Redis's count only grows (replies may cross)."""
        for key, value in zip(keys, spent, strict=True):
            count = self._local.get(key)
            if count is not None:
                count.shared = max(count.shared or 0, int(value))

    def _held_on(self, keys: Sequence[str]) -> list[tuple[int, int]] | None:
        """For each of `keys`, what this process counted in memory that Redis
        has not taken yet: the cost it still owes Redis of the calls that
        ended, and what the calls still running hold (their cost goes to Redis
        when they end); None if nothing."""
        held = [(count.owed, count.reserved) if (count := self._local.get(key)) is not None
                else (0, 0) for key in keys]
        return held if any(owed or reserved for owed, reserved in held) else None

    async def _settle_redis(self, keys: list[str], ticket_id: str, actual: int,
                            ends: list[float]) -> None:
        """Settle a reservation made in Redis there, now or, if Redis is away,
        once it answers again (`_settle_unsettled`)."""
        await self._settle_now_or_owe(OwedSettle(keys, ticket_id, actual, ends))

    def _undo(self, settle: OwedSettle) -> None:
        """Give back a reservation whose caller left: as any settle, or, the
        gate closed, owed (for `start` to send), not told as a call's end."""
        if self._closed:
            self._owe(settle)
        else:
            self._survive(self._settle_now_or_owe(settle))

    async def _spend_redis(self, keys: list[str], ticket_id: str, actual: int,
                           ends: list[float], marks: Sequence[str]) -> None:
        """Add the cost of a call counted in memory (it ended now) to Redis's
        counts, now or once it answers again (`budget_scripts.SPEND`)."""
        if actual > 0:
            await self._settle_now_or_owe(OwedSettle(
                keys, ticket_id, actual, ends, self.clock(), tuple(marks)))

    async def _settle_now_or_owe(self, settle: OwedSettle) -> None:
        # One task from the send to the queueing of what Redis did not take: a
        # caller cancelled meanwhile (its client left) loses none of it.
        if self._closed:
            self._tell_closed()
            return
        task = self._survive(self._send_or_owe(settle))
        try:
            lost_data = await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._cut_by_close(task):  # given up by `aclose`, which tells it
                return
            raise
        if lost_data and self._claiming() is None and not self._shutting:
            # Redis lost its data: seeded as a call would. Begun here, once the
            # caller is back, not in the task: the record read then holds what
            # the caller does before its next await (the call's ledger row). A
            # cancelled caller leaves it to the settle, tried again later.
            self._seed_redis()

    async def _send_or_owe(self, settle: OwedSettle) -> bool:
        """Send `settle` and queue what Redis did not take; whether Redis
        lacked a seeding mark."""
        live = self._unended(settle, owed=False)
        if live is None:
            return False
        seedings = self._seedings
        if live.marks and self._claiming() is not None:
            # This gate's record is on its way to Redis: the marks and the
            # record ends SPEND reads are not there yet. Sent once it lands.
            self._owe(live, seedings=seedings)
            return False
        try:
            codes = await self._sent(live) if await self._use_redis() else None
        except asyncio.CancelledError:  # by the gate's close: owed, which it counts
            self._owe(live)
            raise
        if codes is None:
            self._owe(live)
            return False
        waiting = self._took(live, codes, owed=False)
        if waiting is not None:
            self._owe(waiting, seedings=seedings)
        return MARK_MISSING in codes

    async def _sent(self, settle: OwedSettle) -> list[int] | None:
        """What Redis answered for each key of `settle` (`SPEND`: a key's
        spent, or why it waits; `SETTLE`: a key's spent, or 0); None: Redis
        failed. Run in a task of its own (`_survive`): a cancelled caller
        leaves it to end and to queue what is left."""
        # Worked out now, not when the call was admitted (`ttl_until`): a settle
        # owed through an outage would keep its count that long past its period.
        now = self.clock()
        ttls = [ttl_until(end, now) for end in settle.ends]
        if settle.ended is None:
            script, keys = self._settle_script, settle.keys
            args: list[Any] = [settle.ticket_id, settle.actual, *ttls]
        else:
            script, keys = self._spend_script, [*settle.keys, *settle.marks]
            args = [settle.ticket_id, settle.actual, repr(settle.ended), *ttls]
        try:
            result = await script(keys=keys, args=args)
        except Exception as exc:
            self._redis_failed(exc)
            return None
        if not isinstance(result, list):  # not a script's counts: nothing to hear
            return [0] * len(settle.keys)
        return [int(v) for v in result]

    def _took(self, settle: OwedSettle, codes: Sequence[int], *,
              owed: bool) -> OwedSettle | None:
        """Note what Redis took of `settle` (its counts heard, and, if it was
        `owed`, paid off); the part that waits (`SPEND`'s codes below 0), or
        None."""
        took = [i for i, code in enumerate(codes) if code >= 0]
        done = settle.only(took) if len(took) < len(codes) else settle
        self._heard(done.keys, [codes[i] for i in took])
        if owed and settle.ended is not None:
            self._owed_paid(done)
        if len(took) == len(codes):
            return None
        return settle.only([i for i, code in enumerate(codes) if code < 0])

    def _unended(self, settle: OwedSettle, *, owed: bool) -> OwedSettle | None:
        """`settle` for the keys whose period has not ended (None if none); what
        was `owed` on the others is paid off: no call counts on them any more."""
        now = self.clock()
        live = [i for i, end in enumerate(settle.ends) if end > now]
        if len(live) == len(settle.keys):
            return settle
        if owed and settle.ended is not None:
            self._owed_paid(settle.only([i for i, end in enumerate(settle.ends) if end <= now]))
        return settle.only(live) if live else None

    def _owe(self, settle: OwedSettle, *, seedings: int | None = None) -> None:
        """Keep `settle` to send once Redis answers; with `seedings` (those done
        when Redis lacked its seeding mark), once a seeding has landed since,
        or, if none does, after `_unseeded_retry_at`."""
        if len(self._unsettled) + len(self._unseeded) >= MAX_UNSETTLED:
            if not self._overflow_told:
                self._overflow_told = True
                log.warning("budgets: %d settles are owed to Redis already; those past them "
                            "are not kept, and their calls' cost stays out of the shared count",
                            MAX_UNSETTLED)
            return
        if settle.ended is not None:
            for key in settle.keys:
                if (count := self._local.get(key)) is not None:
                    count.owed += settle.actual
        self._queue(settle, seedings)

    def _queue(self, settle: OwedSettle, seedings: int | None = None) -> None:
        self._next_end = min([self._next_end, *settle.ends])
        if seedings is None or seedings != self._seedings:
            self._unsettled.append(settle)
            return
        if not self._unseeded:
            # A hash another gate claimed takes its record when that gate's
            # read lands, which this gate is not told of: tried again then.
            self._unseeded_retry_at = self.clock() + self._unseeded_backoff
        self._unseeded.append(settle)

    def _owed_paid(self, settle: OwedSettle) -> None:
        for key in settle.keys:
            if (count := self._local.get(key)) is not None:
                count.owed = max(0, count.owed - settle.actual)

    def _send_owed(self) -> None:
        """Send the settles owed to Redis in the background: a request must not
        wait for thousands of them, nor drop the rest if its client leaves
        midway. One sender at a time. Those of periods that have ended are let
        go first; those waiting for a seeding, if it is time to try them again."""
        now = self.clock()
        if now >= self._next_end:
            self._let_ended_settles_go()
        if self._unseeded and now >= self._unseeded_retry_at:
            # Again later if they still wait: less often each time, up to RECORD_RETRY.
            self._unseeded_backoff = min(RECORD_RETRY, 2 * self._unseeded_backoff)
            self._unsettled += self._unseeded
            self._unseeded = []
        if self._unsettled and (self._sender is None or self._sender.done()):
            self._sender = self._survive(self._settle_unsettled())

    def _let_ended_settles_go(self) -> None:
        """Drop the keys of ended periods from the settles owed (`_unended`),
        and the settles left with none; the next end is looked for again."""
        self._next_end = float("inf")
        for name in ("_unsettled", "_unseeded"):
            kept = []
            for settle in getattr(self, name):
                live = self._unended(settle, owed=True)
                if live is not None:
                    kept.append(live)
                    self._next_end = min([self._next_end, *live.ends])
            setattr(self, name, kept)
        if not self._unsettled and not self._unseeded:
            self._overflow_told = False

    async def _settle_unsettled(self) -> None:
        waiting, self._unsettled = self._unsettled, []
        seeded_here = False
        try:
            while waiting and await self._use_redis():
                settle = self._unended(waiting[0], owed=True)
                if settle is None:
                    waiting.pop(0)
                    continue
                waiting[0] = settle
                if settle.marks and self._claiming() is not None:
                    # The record Redis is to be seeded with is being read (or is
                    # to be read again): its marks are not there yet.
                    self._queue(waiting.pop(0), self._seedings)
                    continue
                seedings = self._seedings
                codes = await self._sent(settle)
                if (codes is not None and MARK_MISSING in codes and not seeded_here
                        and self._claiming() is None and not self._shutting):
                    seeded_here = True  # Redis lost its data: seed it, as a call would
                    await self._seed_redis().wait()
                    seedings = self._seedings
                    codes = await self._sent(settle)  # a key that took it counts it once
                if codes is None:  # Redis failed again
                    break
                waiting.pop(0)
                if (rest := self._took(settle, codes, owed=True)) is not None:
                    self._queue(rest, seedings)
        finally:
            # Redis failed again, or the gate is closing: what was not sent is
            # still owed (and still held against the limits). A settle sent
            # twice counts once (`budget_scripts.SETTLE`, `SPEND`).
            room = max(0, MAX_UNSETTLED - len(self._unsettled) - len(self._unseeded))
            for settle in waiting[room:]:
                if settle.ended is not None:
                    self._owed_paid(settle)
            for settle in waiting[:room]:
                self._next_end = min([self._next_end, *settle.ends])
            self._unsettled[:0] = waiting[:room]
            if not self._unsettled and not self._unseeded:
                self._overflow_told = False

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

    def _mark(self, budget: Budget, pid: str) -> str:
        kind, name = budget.target
        return f"{self.key_prefix}seeded:{kind}:{name}:{pid}"

    def _claiming(self) -> str | None:
        """This gate's claim while a record it is to add to Redis is not in (being
        read, or to be read again after a failure): the hashes it creates take
        it, and the record when it lands. None otherwise: the marks are checked."""
        if self._claiming_until is None:
            return None
        if self._seeding_under_way() is not None or self.clock() < self._record_off_until:
            return self._claim
        return None

    def _record_owed(self) -> bool:
        """A record this gate claimed hashes for is not in, no read of it is
        under way, and `RECORD_RETRY` has passed since the last one failed."""
        return (self._claiming_until is not None and self.record is not None
                and self._seeding_under_way() is None
                and self.clock() >= self._record_off_until)

    def _seed_redis(self) -> Seeding:
        """Give Redis each budget's count as the ledger records it (`budget_scripts.SEED`): a
        Redis restarted without its data, or one that never had this period.
        One read at a time, shared by the calls that wait for it; one asked for
        again after a failure ends where the first would have, since the counts
        it claimed began there."""
        seeding = self._seeding_under_way()
        if seeding is None:
            if self._claiming_until is None:
                self._claiming_until = datetime.fromtimestamp(self.clock(), UTC)
            seeding = self._redis_seed = Seeding(self._add_to_redis(self._claiming_until))
        return seeding

    def _seeding_under_way(self) -> Seeding | None:
        """The seeding of Redis from the ledger's record still pending, if any."""
        seeding = self._redis_seed
        return seeding if seeding is not None and seeding.pending else None

    async def _add_to_redis(self, until: datetime) -> None:
        if self._shutting:  # asked for just before the close, which cancels the seeding
            return
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
                                        args=[ttl_until(now + left, now), self._claim,
                                              repr(until.timestamp()), *amounts.values()])
            except Exception as exc:
                self._redis_failed(exc)
                return
        self._claiming_until = None
        self._seedings += 1
        self._unseeded_backoff = self.retry_interval
        # The settles that waited for a seeding, sent now rather than at a call.
        self._unsettled += self._unseeded
        self._unseeded = []
        self._send_owed()

    def _use_local(self) -> bool:
        return not self.redis_url or self._closed or self.clock() < self._redis_down_until

    async def _use_redis(self) -> bool:
        url = self.redis_url
        if url is None or self._use_local():
            return False
        if self._redis is None:
            if self._closing:  # no new client: the close would not close it
                return False
            (self._redis, self._reserve, self._settle_script, self._seed_script,
             self._spend_script) = connect(url, self.redis_timeout)
        return True

    def _redis_failed(self, exc: Exception) -> None:
        self._redis_down_until = self.clock() + self.retry_interval
        if not self._on_redis or self._shutting:  # the same outage, or commands cut by the close
            return
        self._on_redis = False
        log.warning("budget counts fall back to this process: Redis failed (%s); trying "
                    "it again every %g s", type(exc).__name__, self.retry_interval)
        self._count_on()
        self._seed_local(datetime.fromtimestamp(self.clock(), UTC))

    def _count_on(self) -> None:
        """At an outage's start, each count this process keeps (from an earlier
        outage) begins from the most it knows: its own spent, or Redis's last
        reply plus what is still owed to Redis, whichever is more; the ledger's
        record up to now, read next, raises it further if higher (`Count.began`),
        and is read for every count again: what Redis counted since the last
        outage is in it."""
        for count in self._local.values():
            count.spent = count.began = max(count.spent, (count.shared or 0) + count.owed)
        self._seeded.clear()
