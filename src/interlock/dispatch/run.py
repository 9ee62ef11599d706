"""The bookkeeping of one dispatch: deadline, attempts, skips, retries spent.

A `Run` lives for one request; the dispatcher reads and writes it while it
walks the groups. `Picked` is a deployment that passed admission (breaker,
rpm/tpm, gates) and `Success` an attempt that answered.

Imports: the standard library, `types`, `tokens`, `errors`, `catalog`, `dispatch.*`
(state.base, gates, fallbacks, outcome).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from interlock.catalog import Deployment
from interlock.dispatch.fallbacks import FallbackPlan
from interlock.dispatch.gates import GateTicket
from interlock.dispatch.outcome import SKIPPED, Attempt
from interlock.dispatch.state.base import Admission
from interlock.errors import ProviderError, UnsupportedParameter
from interlock.tokens import estimate_prompt_tokens
from interlock.types import ChatRequest

T = TypeVar("T")


@dataclass(slots=True)
class Skip:
    group: str
    deployment: str
    why: str
    detail: str
    retry_after: float | None


@dataclass(slots=True)
class Run:
    request: ChatRequest
    origin: str
    stream: bool
    deadline: float | None
    plan: FallbackPlan
    # The prompt's size in tokens when the caller knows it; else estimated when
    # first asked for (`prompt_tokens`): with the default settings only a tpm
    # limit or an error message needs it, and most requests never ask.
    known_prompt_tokens: int | None = None
    # The router's own deadline, kept when the request gives its own `timeout`
    # (`deadline` is then the caller's): `dispatch.deadlines` tells by it whose
    # limit a Timeout was.
    router_deadline: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # Deployments that failed in this request (retried only when nothing else is left).
    failed: set[str] = field(default_factory=set)
    # Deployments never to be called again in this request (401, 400, ...).
    excluded: set[str] = field(default_factory=set)
    # Retries spent per error class in the current group.
    retries: dict[type[ProviderError], int] = field(default_factory=dict)
    # Backoff owed before calling a failed deployment again.
    delays: dict[str, float] = field(default_factory=dict)
    # (group, deployment) -> the latest reason it was skipped.
    skips: dict[tuple[str, str], Skip] = field(default_factory=dict)
    last_error: ProviderError | None = None
    # The first parameter a candidate's provider could not take, said if none could.
    unsupported: UnsupportedParameter | None = None
    recovery_waits: int = 0
    continuations: int = 0
    # Seconds spent waiting on purpose (a backoff, a cooling deployment, a free
    # slot); the caller may pass its own list, as for `attempts`, to tell them
    # from its own overhead.
    waits: list[float] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        if self.known_prompt_tokens is None:
            self.known_prompt_tokens = estimate_prompt_tokens(self.request)
        return self.known_prompt_tokens

    def remaining(self, now: float) -> float | None:
        return None if self.deadline is None else self.deadline - now

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def skip(self, group: str, d: Deployment, why: str, detail: str = "",
             retry_after: float | None = None) -> None:
        key = (group, d.name)
        seen = self.skips.get(key)
        self.skips[key] = Skip(group, d.name, why, detail, retry_after)
        if seen is None or seen.why != why:
            self.attempts.append(Attempt(d.name, d.provider, group, SKIPPED + why, None, 0.0))

    def earliest_recovery(self) -> float | None:
        waits = [s.retry_after for s in self.skips.values() if s.retry_after is not None]
        return min(waits) if waits else None

    def upstream_calls(self) -> int:
        return sum(1 for a in self.attempts if a.called)


@dataclass(slots=True)
class Picked:
    deployment: Deployment
    admission: Admission
    tickets: list[GateTicket]


@dataclass(slots=True)
class Success(Generic[T]):
    value: T
    picked: Picked
    group: str
    attempt: Attempt
    started: float
    extra: dict[str, Any] = field(default_factory=dict)
