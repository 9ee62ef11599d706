"""The Redis state backend: breakers, rpm/tpm counters and slots shared by every replica.

Every write is one Lua script (`redis_lua`), so it is atomic across
processes. Reads of the breaker go through a local cache that lives
`cache_ttl` seconds (50 ms by default), which is how a cooldown opened by one
replica reaches the others within 100 ms without a round trip per attempt;
deployments with rpm/tpm limits always go to Redis, since counting must be exact.

Redis must never fail a request: every operation has a short timeout, and on
any Redis error the backend switches to its own `MemoryStateBackend`, logs one
warning for the outage, and tries Redis again every `retry_interval` seconds
(redis-py reconnects on the next command). Reservations and slots remember
which store took them, so a release, settle or let-go goes to the same place.

A slot (`hold`) is a lease in Redis, renewed every third of the lease while
this process holds it: a replica that dies stops renewing, and its slots are
free again when their leases end, however long a live call (a stream) runs.

Imports: redis (lazily, in the constructor), the standard library,
`dispatch.state.*`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from interlock.dispatch.state import redis_lua
from interlock.dispatch.state.base import (
    MAX_COOLDOWN,
    RATE_WINDOW,
    Admission,
    BreakerView,
    FailureEvent,
    Limits,
    Slot,
)
from interlock.dispatch.state.memory import MemoryStateBackend

log = logging.getLogger("interlock.dispatch.state")
# Calls owed to Redis (made while it was away), kept to send when it is back.
MAX_OWED = 10_000
# Seconds a slot's lease is renewed at most: longer than any call should run
# (a router's timeout bounds one); past it the slot is taken for one whose
# ticket was dropped without giving it back.
MAX_HOLD = 4 * 3600.0
# Of those, the ones safe to send again after a failed try, which Redis may
# have run: giving back the same slot twice is giving it back once.
SAFE_TWICE = frozenset({"LET_GO"})
T = TypeVar("T")


class RedisStateBackend:
    def __init__(
        self,
        url: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        password: str | None = None,
        prefix: str = "interlock",
        op_timeout: float = 0.5,
        max_connections: int = 32,
        retry_interval: float = 1.0,
        cache_ttl: float = 0.05,
        time_source: Callable[[], float] | None = None,
        client: Any = None,
    ) -> None:
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        if client is None:
            # One redis-py retry, on a connection error only: a pooled connection
            # that died while Redis restarted fails once even though Redis is
            # back, and must not count as a new outage; a slow Redis (a timeout)
            # still costs one short timeout, after which memory takes over. A
            # bounded pool keeps a burst of requests from opening a connection each.
            # redis-py sends the same command again on a new connection, also when
            # the error came after Redis ran it (the answer was lost on the way):
            # the scripts that count recognise a call they ran (`_call_key`).
            common: dict[str, Any] = dict(
                socket_timeout=op_timeout, socket_connect_timeout=op_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                decode_responses=True,
                max_connections=max_connections, timeout=op_timeout,
            )
            if url:
                pool = aredis.BlockingConnectionPool.from_url(url, **common)
            else:
                pool = aredis.BlockingConnectionPool(host=host or "127.0.0.1", port=port or 6379,
                                                     password=password, **common)
            client = aredis.Redis(connection_pool=pool)
        self._redis = client
        self._prefix = prefix
        self._op_timeout = op_timeout
        self._retry_interval = retry_interval
        self._cache_ttl = cache_ttl
        self._time = time_source or time.time
        # Names one counting call, unique across processes: this backend's random
        # part, then a count. Its answer is kept in Redis for as long as redis-py
        # may send it again: within this call's op timeout, plus a second of slack.
        self._caller = secrets.token_hex(6)
        self._calls = itertools.count()
        self._answer_ttl = math.ceil(op_timeout) + 1
        self._memory = MemoryStateBackend(self._time)
        self._down_until = 0.0
        self._outage = False
        # deployment -> (view, monotonic time it was read)
        self._cache: dict[str, tuple[BreakerView, float]] = {}
        # Calls that could not reach Redis (it was away when they came), sent in
        # order once it answers, unless they have become pointless by then:
        # (wall time they stop mattering, script, keys, args). A give-back or a
        # settle of rpm/tpm counts matters while its bucket is in the window
        # (else a failed call counted as a request, and a settle's unused tokens
        # as used, for up to a minute); a slot let go, until its lease would end
        # (else it held a call at once until then).
        self._owed: list[tuple[float, str, list[str], list[Any]]] = []
        # name -> (lease, {token: when taken}) of the slots this process holds in Redis, whose
        # leases `_renew_leases` renews while any is held.
        self._leases: dict[str, tuple[float, dict[str, float]]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._scripts = {name: client.register_script(getattr(redis_lua, name)) for name in
                         ("ADMIT", "RELEASE", "SETTLE", "RECORD_FAILURE", "RECORD_SUCCESS",
                          "VIEW", "HOLD", "RENEW", "LET_GO")}

    # -- plumbing -----------------------------------------------------------
    def _keys(self, deployment: str) -> list[str]:
        tag = f"{{{self._prefix}:{deployment}}}"
        return [tag + ":br", tag + ":rq", tag + ":tk"]

    def _call_key(self, deployment: str) -> str:
        """The key of one counting call (`redis_lua`: sent twice, counted once)."""
        return f"{{{self._prefix}:{deployment}}}:op:{self._caller}:{next(self._calls)}"

    @property
    def using_redis(self) -> bool:
        """False while Redis is considered down and memory serves instead."""
        return time.monotonic() >= self._down_until

    async def _try(self, op: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        if not self.using_redis:
            return False, None
        try:
            result = await asyncio.wait_for(op(), self._op_timeout)
        except asyncio.CancelledError:
            raise
        except self._errors as exc:
            self._went_down(exc)
            return False, None
        if self._outage:
            self._outage = False
            log.info("Redis is reachable again; shared dispatch state resumes")
        return True, result

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_interval
        if not self._outage:
            self._outage = True
            # Only the exception type: redis URLs in messages could carry a password.
            log.warning("Redis is unreachable or slow (%s); using this process's own memory "
                        "for cooldowns and rate limits until it is back", type(exc).__name__)

    def _cache_put(self, deployment: str, view: BreakerView) -> None:
        self._cache[deployment] = (view, time.monotonic())

    def _cached(self, deployment: str) -> BreakerView | None:
        hit = self._cache.get(deployment)
        if hit is None or time.monotonic() - hit[1] > self._cache_ttl:
            return None
        return hit[0]

    # -- admission ----------------------------------------------------------
    async def admit(self, deployment: str, limits: Limits, tokens: int,
                    probe_ttl: float) -> Admission:
        if self._owed and self.using_redis:
            await self._catch_up()
        if not limits.any:
            local = self._admit_from_cache(deployment)
            if local is not None:
                return local
        keys = [*self._keys(deployment), self._call_key(deployment)]
        args = [self._time(), -1 if limits.rpm is None else limits.rpm,
                -1 if limits.tpm is None else limits.tpm, tokens, probe_ttl, RATE_WINDOW,
                self._answer_ttl]
        ok, raw = await self._try(lambda: self._scripts["ADMIT"](keys=keys, args=args))
        if not ok or raw is None:
            return self._memory.admit_now(deployment, limits, tokens, probe_ttl)
        return self._admission(deployment, raw, tokens)

    def _admit_from_cache(self, deployment: str) -> Admission | None:
        if not self.using_redis:
            return None
        view = self._cached(deployment)
        if view is None:
            return None
        if view.state == "closed":
            return Admission(True, deployment, store="redis")
        if view.state == "open" and view.remaining > self._cache_ttl:
            # The cached remaining time is a little stale; the cache TTL bounds by how much.
            return Admission(False, deployment, "cooldown", view.remaining, reason=view.reason)
        return None

    def _admission(self, deployment: str, raw: list[Any], tokens: int) -> Admission:
        admitted, refused_by, wait, reason, bucket, probe = raw
        if admitted:
            self._cache_put(deployment, BreakerView("half_open", probing=True) if probe
                            else BreakerView())
            counted = int(bucket) >= 0
            return Admission(True, deployment, probe=bool(probe),
                             bucket=int(bucket) if counted else None,
                             tokens=tokens if counted else 0, store="redis")
        if refused_by == "cooldown":
            self._cache_put(deployment, BreakerView("open", float(wait), reason))
        return Admission(False, deployment, refused_by, float(wait), reason=reason,
                         store="redis")

    async def release(self, admission: Admission) -> None:
        if admission.store != "redis":
            self._memory.release_now(admission)
            return
        if not admission.probe and admission.bucket is None:
            return
        keys = [*self._keys(admission.deployment), self._call_key(admission.deployment)]
        args = ["1" if admission.probe else "0",
                -1 if admission.bucket is None else admission.bucket, admission.tokens,
                self._answer_ttl]
        if not self.using_redis and admission.bucket is not None:
            # Never sent, so safe to send later; not the probe flag, which its
            # lease ends and which may be another call's by then.
            self._owe(admission.bucket + RATE_WINDOW, "RELEASE", keys, ["0", *args[1:]])
            return
        await self._try(lambda: self._scripts["RELEASE"](keys=keys, args=args))

    async def settle(self, admission: Admission, tokens: int) -> None:
        if admission.store != "redis":
            self._memory.settle_now(admission, tokens)
            return
        if admission.bucket is None or tokens == admission.tokens:
            return
        keys = [self._keys(admission.deployment)[2], self._call_key(admission.deployment)]
        args = [admission.bucket, tokens - admission.tokens, self._answer_ttl]
        if not self.using_redis:
            self._owe(admission.bucket + RATE_WINDOW, "SETTLE", keys, args)
            return
        await self._try(lambda: self._scripts["SETTLE"](keys=keys, args=args))

    def _owe(self, until: float, script: str, keys: list[str], args: list[Any]) -> None:
        # Past that many, the oldest stop mattering on their own (window, lease).
        if len(self._owed) < MAX_OWED:
            self._owed.append((until, script, keys, args))

    async def _catch_up(self) -> None:
        """Tell Redis, back after an outage, what it missed meanwhile. On the
        request's path (admit, hold), before its own call, so that the call
        finds the counts and slots given back. Only the request that finds them
        owed waits: one arriving meanwhile goes ahead and may find a cap a
        little stricter than it is until the catch-up lands."""
        owed, self._owed = self._owed, []
        now = self._time()
        for entry in owed:
            until, script, keys, args = entry
            if until <= now:
                continue  # it changes nothing any more
            if not self.using_redis:
                self._owed.append(entry)
                continue
            ok, _ = await self._try(partial(self._scripts[script], keys=keys, args=args))
            if not ok and script in SAFE_TWICE:
                self._owed.append(entry)

    # -- calls at once --------------------------------------------------------
    async def hold(self, name: str, cap: int, lease: float) -> Slot | None:
        if self._owed and self.using_redis:
            await self._catch_up()
        keys = [self._slot_key(name)]
        token = secrets.token_hex(8)
        ok, raw = await self._try(
            lambda: self._scripts["HOLD"](keys=keys, args=[self._time(), cap, lease, token]))
        if not ok or raw is None:
            return self._memory.hold_now(name, cap)
        if not int(raw):
            return None
        held_for, tokens = self._leases.get(name, (lease, {}))
        tokens[token] = self._time()
        self._leases[name] = (min(lease, held_for), tokens)
        # A renewer that ended on an error it did not expect is started again,
        # or every long call would lose its slot one lease later.
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_leases())
        return Slot(name, token, "redis")

    def _slot_key(self, name: str) -> str:
        return f"{{{self._prefix}:{name}}}:sl"

    async def _renew_leases(self) -> None:
        # A third of the lease: two renewals may fail (Redis slow or away a few
        # seconds) before a live call loses its slot.
        while self._leases:
            await asyncio.sleep(min(lease for lease, _ in self._leases.values()) / 3)
            now = self._time()
            for name, (lease, tokens) in list(self._leases.items()):
                # A slot held past MAX_HOLD was never given back (a call whose
                # ticket was dropped): its lease ends, as leases did before
                # renewal, instead of keeping a replica-wide slot for ever.
                for token in [t for t, since in tokens.items() if now - since > MAX_HOLD]:
                    del tokens[token]
                if not tokens:
                    self._leases.pop(name, None)
                    continue
                await self._try(partial(self._scripts["RENEW"], keys=[self._slot_key(name)],
                                        args=[now, lease, *tokens]))
        self._renewer = None  # no await since the loop's test: a new hold starts another

    async def let_go(self, slot: Slot) -> None:
        if slot.store != "redis":
            self._memory.let_go_now(slot)
            return
        lease, tokens = self._leases.get(slot.name, (0.0, {}))
        tokens.pop(slot.token, None)
        if not tokens:
            self._leases.pop(slot.name, None)
        keys, args = [self._slot_key(slot.name)], [slot.token]
        ok, _ = await self._try(lambda: self._scripts["LET_GO"](keys=keys, args=args))
        if not ok:  # a let-go is safe to send twice: also when Redis may have run it
            self._owe(self._time() + lease, "LET_GO", keys, args)

    # -- breaker ------------------------------------------------------------
    async def record_failure(self, deployment: str, event: FailureEvent) -> BreakerView:
        keys = [self._keys(deployment)[0], self._call_key(deployment)]
        args = [self._time(), event.reason, event.cooldown, event.allowed_fails, event.window,
                min(event.immediate, MAX_COOLDOWN), "1" if event.probe else "0",
                self._answer_ttl]
        ok, raw = await self._try(lambda: self._scripts["RECORD_FAILURE"](keys=keys, args=args))
        if not ok or raw is None:
            return self._memory.record_failure_now(deployment, event)
        view = _view(raw)
        self._cache_put(deployment, view)
        return view

    async def record_success(self, deployment: str, *, probe: bool) -> None:
        if not probe:
            return
        keys = self._keys(deployment)[:1]
        ok, _ = await self._try(
            lambda: self._scripts["RECORD_SUCCESS"](keys=keys, args=[self._time()]))
        if ok:
            self._cache_put(deployment, BreakerView())
        else:
            self._memory.record_success_now(deployment, probe=probe)

    async def refresh(self, deployment: str) -> BreakerView:
        """Read the breaker from Redis now (the memory view while Redis is down)."""
        keys = self._keys(deployment)[:1]
        ok, raw = await self._try(lambda: self._scripts["VIEW"](keys=keys, args=[self._time()]))
        if not ok or raw is None:
            return self._memory.snapshot(deployment)
        view = _view(raw)
        self._cache_put(deployment, view)
        return view

    def snapshot(self, deployment: str) -> BreakerView:
        if not self.using_redis:
            return self._memory.snapshot(deployment)
        hit = self._cache.get(deployment)
        if hit is None:
            return BreakerView()
        view, read_at = hit
        if view.state != "open":
            return view
        left = view.remaining - (time.monotonic() - read_at)
        if left > 0:
            return BreakerView("open", left, view.reason)
        return BreakerView("half_open", 0.0, view.reason)

    async def clear(self) -> None:
        """Delete this prefix's keys (tests and `interlock` admin tools)."""
        async for key in self._redis.scan_iter(match=f"{{{self._prefix}:*"):
            await self._redis.delete(key)
        self._cache.clear()

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        with contextlib.suppress(*self._errors):
            await self._redis.aclose()


def _view(raw: list[Any]) -> BreakerView:
    state, remaining, reason, failures, probing = raw
    return BreakerView(state, float(remaining), reason or "", int(failures), bool(probing))
