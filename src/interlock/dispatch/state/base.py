"""The state backend interface: breaker state and rpm/tpm counters per deployment.

One backend per process (memory) or shared by many (Redis). Each operation is
atomic inside the backend, so concurrent requests, in one process or in many,
never overshoot a limit or take two half-open probes.

Times: every backend owns its time source (the memory backend the
dispatcher's clock, Redis the wall clock all replicas share) and answers in
*relative* seconds (`remaining`, `retry_after`), which callers add to their
own clock. That keeps fake clocks, monotonic clocks and other hosts apart.

Calls at once (`hold`, `let_go`): a client key's max_parallel_requests, counted
where its rpm/tpm windows are, so that replicas sharing Redis share the cap.

The breaker, per deployment:

    closed --(failures > allowed_fails in window, or an immediate cooldown)--> open
    open --(cooldown over)--> half-open: the next admit takes the one probe lease
    half-open --(probe succeeds)--> closed
    half-open --(probe fails)--> open again

Imports: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

BreakerState = Literal["closed", "open", "half_open"]
# How long rpm/tpm windows are, in seconds, and how fine their buckets.
RATE_WINDOW = 60
# Retry-After values beyond a day are treated as a day (a broken header must
# not disable a deployment forever).
MAX_COOLDOWN = 86_400.0


@dataclass(frozen=True, slots=True)
class BreakerView:
    state: BreakerState = "closed"
    # Seconds until the open breaker turns half-open (0 unless open).
    remaining: float = 0.0
    reason: str = ""
    # Failures counted in the current window (closed state).
    failures: int = 0
    # True in half-open while a probe is out.
    probing: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None

    @property
    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to `admit`. When admitted, hand it back to `release` (the
    attempt did not happen after all) or `settle` (it did)."""

    admitted: bool
    deployment: str
    # "cooldown", "half-open", "rpm" or "tpm" when refused.
    refused_by: str = ""
    retry_after: float | None = None
    # This attempt is the half-open probe.
    probe: bool = False
    # The rate bucket counted in, and the tokens reserved there.
    bucket: int | None = None
    tokens: int = 0
    # Which store holds the reservation (the Redis backend may fall back).
    store: str = "memory"
    # The breaker reason, when refused by a cooldown.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Slot:
    """One call at once held under a name (`hold`); hand it back to `let_go`."""

    name: str
    token: str = ""
    # Which store holds it (the Redis backend may fall back to memory).
    store: str = "memory"


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """One failed attempt, with the breaker parameters that apply to it.

    `immediate` > 0 opens the breaker now for at least that long, whatever the
    count (Retry-After, authentication failures); `cooldown` is how long the
    breaker opens when the count passes `allowed_fails` or a probe fails.
    """

    reason: str
    cooldown: float
    allowed_fails: int
    window: float
    immediate: float = 0.0
    probe: bool = False


class StateBackend(Protocol):
    async def admit(self, deployment: str, limits: Limits, tokens: int,
                    probe_ttl: float) -> Admission:
        """Check the breaker and rpm/tpm, and count this attempt, in one atomic step.
        In half-open, the first caller gets the probe lease for `probe_ttl` seconds."""
        ...

    async def release(self, admission: Admission) -> None:
        """Undo an admission whose attempt was not made (a gate refused it)."""
        ...

    async def settle(self, admission: Admission, tokens: int) -> None:
        """Replace the tpm estimate with the tokens really used."""
        ...

    async def hold(self, name: str, cap: int, lease: float) -> Slot | None:
        """One of `name`'s `cap` calls at once, or None when all are taken. A slot
        never given back (its process died) is free again `lease` seconds after
        its process last renewed it, which it does while it lives (Redis)."""
        ...

    async def let_go(self, slot: Slot) -> None:
        """Give back a slot from `hold`."""
        ...

    async def record_failure(self, deployment: str, event: FailureEvent) -> BreakerView: ...

    async def record_success(self, deployment: str, *, probe: bool) -> None:
        """A probe that succeeded closes the breaker; other successes change nothing."""
        ...

    def snapshot(self, deployment: str) -> BreakerView:
        """The last known breaker state, without I/O (for health pages and routing)."""
        ...

    async def aclose(self) -> None: ...
