"""Limits per client key: requests and tokens a minute, calls at once.

`general_settings.api_keys[].rpm_limit`, `tpm_limit` and `max_parallel_requests`
(LiteLLM's names for a key's limits) bound what one client application may take
of the gateway, whichever deployments its requests go to, so that one team's
batch job cannot use up the deployments' own rpm/tpm for everyone else.

The minute windows and the calls at once are kept by the dispatcher's state
backend, the one that holds the deployments' rpm/tpm windows (one-second
buckets over a minute): in this process, or in Redis and shared by every
replica when router_settings names one. A call at once held in Redis is a
slot with a short lease (`SLOT_LEASE`), renewed by the backend while the
request runs: given back when the request ends, and freed by the lease if its
process dies first. Keys made at run time (`key_store`)
carry the same three limits and are added and taken away here as they come
and go.

A request over a limit is refused before routing with a 429 (`KeyRateLimited`,
with Retry-After for the minute windows) and costs nothing upstream. tpm is
reserved with the prompt's estimate plus max_tokens and settled with the
answer's usage when the request's ledger row is made (`KeyTicket.done`), which
every request reaches exactly once, answered, failed or cancelled.

Imports: the standard library, `errors`, `types`, `tokens`,
`dispatch.selection`, `dispatch.state.base` (`config` for a type).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from interlock.dispatch.selection import estimate_request_tokens
from interlock.dispatch.state.base import Admission, Limits, Slot, StateBackend
from interlock.errors import KeyRateLimited
from interlock.tokens import estimate_prompt_tokens
from interlock.types import ChatRequest, Usage

if TYPE_CHECKING:
    from interlock.config.schema import ClientKey

log = logging.getLogger(__name__)

# The state backend keys its windows by name: a key's are kept apart from the
# deployments' (which would have to be named "client-key:..." to share one).
WINDOW_PREFIX = "client-key:"
# Seconds a call at once held in Redis stays held once nobody renews it (its
# process died): how long a crash costs the key part of its cap. The backend
# renews it every third of that while the request runs (a stream for as long
# as it streams), as Redisson's lock watchdog renews its 30 s locks every 10 s.
SLOT_LEASE = 30.0
# Retry-After of a refusal for max_parallel_requests: a hint, since nobody
# knows when a call ends; short, since most do soon. Without one, a client had
# no hint at all, nor (after a replica died holding slots) any end in sight.
PARALLEL_RETRY_AFTER = 1.0


class KeyLimits:
    """The limits of the client keys that have any, for one gateway."""

    def __init__(self, keys: Sequence[ClientKey], backend: StateBackend) -> None:
        self._backend = backend
        # key name -> (rpm/tpm, max calls at once)
        self._terms: dict[str, tuple[Limits, int | None]] = {
            k.name: _terms(k.rpm_limit, k.tpm_limit, k.max_parallel_requests)
            for k in keys if _limited(k.rpm_limit, k.tpm_limit, k.max_parallel_requests)}
        self._config_keys = frozenset(self._terms)
        # The names, for the gateway's one check a request; changed in place when
        # run-time keys come and go (`set_run_time_keys`).
        self.limited: set[str] = set(self._terms)
        self._in_flight: dict[str, int] = dict.fromkeys(self._terms, 0)
        self._settling: set[asyncio.Task[Any]] = set()
        # (key, limit) -> requests this process refused for it, for /metrics.
        self.refusals: dict[tuple[str, str], int] = {}

    async def admit(self, key: str | None, request: ChatRequest) -> KeyTicket:
        """A ticket for one request of `key`, or KeyRateLimited. The caller asks
        only for a name in `limited` (a KeyError otherwise)."""
        key = key or ""  # "" names no key (names are never empty): a KeyError below
        limits, cap = self._terms[key]
        slot = None
        if cap is not None:
            slot = await self._hold(key, cap)
            if slot is None:
                # With Redis, a slot outlives a replica that died holding it, for its lease.
                shared = getattr(self._backend, "using_redis", False)
                raise self._refused(key, "max_parallel_requests", cap, PARALLEL_RETRY_AFTER,
                                    lease=SLOT_LEASE if shared else None)
        self._in_flight[key] += 1
        admission = None
        try:
            if limits.any:
                tokens = (estimate_request_tokens(request, estimate_prompt_tokens(request))
                          if limits.tpm is not None else 0)
                admission = await self._backend.admit(WINDOW_PREFIX + key, limits, tokens, 0.0)
                if not admission.admitted:
                    limit = admission.refused_by  # "rpm" or "tpm"
                    value = limits.rpm if limit == "rpm" else limits.tpm
                    raise self._refused(key, f"{limit}_limit", value or 0,
                                        admission.retry_after)
        except BaseException:
            self._in_flight[key] -= 1
            if slot is not None:
                self._in_background(self._backend.let_go(slot))
            raise
        return KeyTicket(self, key, admission if limits.tpm is not None else None, slot)

    async def _hold(self, key: str, cap: int) -> Slot | None:
        # Shielded: a request cancelled (its client gone) while Redis takes the
        # slot would leave it held, with no ticket to give it back, for a lease.
        call = asyncio.ensure_future(self._backend.hold(WINDOW_PREFIX + key, cap, SLOT_LEASE))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(self._let_go_unused)
            raise

    def _let_go_unused(self, call: asyncio.Future[Slot | None]) -> None:
        slot = None if call.cancelled() or call.exception() else call.result()
        if slot is not None:
            self._in_background(self._backend.let_go(slot))

    def set_run_time_keys(self, keys: Iterable[Any]) -> None:
        """The limits of the keys made at run time (`key_store.StoredKey`s), in
        place of those set before; the config's keys keep theirs."""
        terms = {k.name: _terms(k.rpm_limit, k.tpm_limit, k.max_parallel_requests)
                 for k in keys if _limited(k.rpm_limit, k.tpm_limit, k.max_parallel_requests)}
        for name in [n for n in self._terms if n not in self._config_keys and n not in terms]:
            del self._terms[name]
        self._terms.update(terms)
        self.limited.clear()
        self.limited.update(self._terms)
        for name in self._terms:
            self._in_flight.setdefault(name, 0)

    def in_flight(self) -> dict[str, int]:
        """Requests of each limited key this process has admitted and not finished."""
        return {key: n for key, n in self._in_flight.items() if key in self._terms}

    def _refused(self, key: str, limit: str, value: int, retry_after: float | None, *,
                 lease: float | None = None) -> KeyRateLimited:
        self.refusals[key, limit] = self.refusals.get((key, limit), 0) + 1
        return KeyRateLimited(key, limit, value, retry_after, lease=lease)

    def _done(self, key: str, admission: Admission | None, slot: Slot | None,
              usage: Usage | None) -> None:
        self._in_flight[key] -= 1  # kept for a key revoked meanwhile: it may come back
        # On the backend's own terms, which may be Redis calls, so as tasks; one
        # `hold` after this one is a task too, and runs after it.
        if slot is not None:
            self._in_background(self._backend.let_go(slot))
        if admission is not None:
            # The reservation settled with what was used (nothing, for a failure).
            self._in_background(self._backend.settle(
                admission, usage.total_tokens if usage is not None else 0))

    def _in_background(self, call: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(call)
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._settling.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.warning("a client key's count could not be settled (%s)",
                        type(error).__name__)


def _limited(rpm: int | None, tpm: int | None, cap: int | None) -> bool:
    return rpm is not None or tpm is not None or cap is not None


def _terms(rpm: int | None, tpm: int | None, cap: int | None) -> tuple[Limits, int | None]:
    return Limits(rpm, tpm), cap


class KeyTicket:
    """One admitted request of a limited key; `done` exactly once, when its
    ledger row is made."""

    __slots__ = ("_admission", "_key", "_limits", "_slot")

    def __init__(self, limits: KeyLimits, key: str, admission: Admission | None,
                 slot: Slot | None) -> None:
        self._limits = limits
        self._key = key
        self._admission = admission
        self._slot = slot

    def done(self, usage: Usage | None) -> None:
        self._limits._done(self._key, self._admission, self._slot, usage)
