"""The in-process state backend (the default): breakers, rpm/tpm counters, slots.

Single-threaded asyncio makes each method atomic as long as it does not await
in the middle, and none does. The Redis backend's Lua scripts implement the
same rules; tests run one table against both.

Imports: the standard library, `dispatch.state.base`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from interlock.dispatch.state.base import (
    MAX_COOLDOWN,
    RATE_WINDOW,
    Admission,
    BreakerView,
    FailureEvent,
    Limits,
    Slot,
)


@dataclass(slots=True)
class _Breaker:
    open: bool = False
    until: float = 0.0
    reason: str = ""
    failures: int = 0
    window_start: float = 0.0
    probe_until: float = 0.0


@dataclass(slots=True)
class _Rate:
    # bucket second -> count / tokens
    requests: dict[int, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)

    def prune(self, now_sec: int) -> None:
        oldest = now_sec - RATE_WINDOW + 1
        for store in (self.requests, self.tokens):
            for sec in [s for s in store if s < oldest]:
                del store[sec]

    def retry_after(self, now: float) -> float:
        if not self.requests and not self.tokens:
            return 1.0
        oldest = min([*self.requests, *self.tokens])
        return max(0.001, oldest + RATE_WINDOW - now)


class MemoryStateBackend:
    """Breakers and rate counters in this process's memory."""

    def __init__(self, time_source: Callable[[], float] | None = None) -> None:
        self._time = time_source or time.monotonic
        self._breakers: dict[str, _Breaker] = {}
        self._rates: dict[str, _Rate] = {}
        # The usual answer, admitted with nothing reserved, made once per deployment:
        # Admission is frozen, so one instance serves every such request.
        self._plain: dict[str, Admission] = {}
        self._held: dict[str, int] = {}  # name -> calls at once (`hold`)

    # -- admission ----------------------------------------------------------
    async def admit(self, deployment: str, limits: Limits, tokens: int,
                    probe_ttl: float) -> Admission:
        return self.admit_now(deployment, limits, tokens, probe_ttl)

    def admit_now(self, deployment: str, limits: Limits, tokens: int,
                  probe_ttl: float) -> Admission:
        now = self._time()
        b = self._breakers.get(deployment)
        probe = False
        if b is not None and b.open:
            if now < b.until:
                return Admission(False, deployment, "cooldown", b.until - now, reason=b.reason)
            if b.probe_until > now:
                return Admission(False, deployment, "half-open", b.probe_until - now,
                                 reason=b.reason)
            probe = True
        bucket: int | None = None
        if limits.any:
            refused = self._take_rate(deployment, limits, tokens, now)
            if isinstance(refused, Admission):
                return refused
            bucket = refused
        if probe and b is not None:
            b.probe_until = now + probe_ttl
        if not probe and bucket is None:
            plain = self._plain.get(deployment)
            if plain is None:
                plain = self._plain[deployment] = Admission(True, deployment)
            return plain
        return Admission(True, deployment, probe=probe, bucket=bucket,
                         tokens=tokens if bucket is not None else 0)

    def _take_rate(self, deployment: str, limits: Limits, tokens: int,
                   now: float) -> Admission | int:
        sec = math.floor(now)
        rate = self._rates.setdefault(deployment, _Rate())
        rate.prune(sec)
        if limits.rpm is not None and sum(rate.requests.values()) + 1 > limits.rpm:
            return Admission(False, deployment, "rpm", rate.retry_after(now))
        used = sum(rate.tokens.values())
        # An empty window admits even a request larger than tpm, or it never could run.
        if limits.tpm is not None and used > 0 and used + tokens > limits.tpm:
            return Admission(False, deployment, "tpm", rate.retry_after(now))
        rate.requests[sec] = rate.requests.get(sec, 0) + 1
        rate.tokens[sec] = rate.tokens.get(sec, 0) + tokens
        return sec

    async def release(self, admission: Admission) -> None:
        self.release_now(admission)

    def release_now(self, admission: Admission) -> None:
        if admission.probe:
            b = self._breakers.get(admission.deployment)
            if b is not None:
                b.probe_until = 0.0
        rate = self._rates.get(admission.deployment)
        if admission.bucket is not None and rate is not None:
            if admission.bucket in rate.requests:
                rate.requests[admission.bucket] -= 1
            if admission.bucket in rate.tokens:
                rate.tokens[admission.bucket] -= admission.tokens

    async def settle(self, admission: Admission, tokens: int) -> None:
        self.settle_now(admission, tokens)

    def settle_now(self, admission: Admission, tokens: int) -> None:
        rate = self._rates.get(admission.deployment)
        if admission.bucket is not None and rate is not None and admission.bucket in rate.tokens:
            rate.tokens[admission.bucket] += tokens - admission.tokens

    # -- calls at once --------------------------------------------------------
    async def hold(self, name: str, cap: int, lease: float) -> Slot | None:
        return self.hold_now(name, cap)

    def hold_now(self, name: str, cap: int) -> Slot | None:
        # No lease: a slot dies with the process that holds it, and so does this count.
        held = self._held.get(name, 0)
        if held >= cap:
            return None
        self._held[name] = held + 1
        return Slot(name)

    async def let_go(self, slot: Slot) -> None:
        self.let_go_now(slot)

    def let_go_now(self, slot: Slot) -> None:
        left = self._held.get(slot.name, 0) - 1
        if left > 0:
            self._held[slot.name] = left
        else:
            self._held.pop(slot.name, None)

    # -- breaker ------------------------------------------------------------
    async def record_failure(self, deployment: str, event: FailureEvent) -> BreakerView:
        return self.record_failure_now(deployment, event)

    def record_failure_now(self, deployment: str, event: FailureEvent) -> BreakerView:
        now = self._time()
        b = self._breakers.setdefault(deployment, _Breaker())
        immediate = min(event.immediate, MAX_COOLDOWN)
        if b.open and now < b.until:
            if immediate > 0:
                b.until = max(b.until, now + immediate)
        elif b.open:
            # Half-open: only the probe's verdict counts; late failures of calls
            # admitted before the breaker opened say nothing new.
            if event.probe:
                self._open(b, now, max(event.cooldown, immediate), event.reason)
        else:
            if now - b.window_start > event.window:
                b.failures, b.window_start = 0, now
            b.failures += 1
            if b.failures > event.allowed_fails:
                self._open(b, now, max(event.cooldown, immediate), event.reason)
            elif immediate > 0:
                self._open(b, now, immediate, event.reason)
        return self._view(b, now)

    @staticmethod
    def _open(b: _Breaker, now: float, duration: float, reason: str) -> None:
        b.open, b.until, b.reason = True, now + duration, reason
        b.failures, b.probe_until = 0, 0.0

    async def record_success(self, deployment: str, *, probe: bool) -> None:
        self.record_success_now(deployment, probe=probe)

    def record_success_now(self, deployment: str, *, probe: bool) -> None:
        b = self._breakers.get(deployment)
        if probe and b is not None and b.open and self._time() >= b.until:
            self._breakers[deployment] = _Breaker(window_start=self._time())

    def snapshot(self, deployment: str) -> BreakerView:
        b = self._breakers.get(deployment)
        return BreakerView() if b is None else self._view(b, self._time())

    @staticmethod
    def _view(b: _Breaker, now: float) -> BreakerView:
        if not b.open:
            return BreakerView("closed", failures=b.failures)
        if now < b.until:
            return BreakerView("open", b.until - now, b.reason)
        return BreakerView("half_open", 0.0, b.reason, probing=b.probe_until > now)

    async def aclose(self) -> None:
        return None
