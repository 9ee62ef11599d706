"""Deployment health: the cooldown circuit breaker and the latency/error statistics.

`CooldownTracker` decides what a failure means for a deployment's breaker
(which errors count, how long each cools) and asks the state backend to
apply it atomically; the backend holds the state, so replicas sharing Redis
share cooldowns. `DeploymentStats` keeps this process's EWMA of latency and
errors for latency-based routing and the health page. `DeploymentHealth` is
one row of `GET /health/deployments`.

What counts as a failure: rate limits, overload, timeouts, 5xx and
connection failures. 400-class answers about the request itself (bad
request, context window, content filter) do not: the deployment is fine.
401/403/404 cool the deployment at once for `auth_cooldown_time` and are
logged as warnings (without the key), since they need a human.

A group's only deployment, when the group has no fallback group, is not
cooled by failures (`sole_deployments`): there is nothing to route to
instead, so a cooldown would only replace the provider's own error with a
503 for every caller until it ends. Only a Retry-After (the provider saying
when to come back) opens its breaker, for that long. Every Retry-After
arrives here held to `max_upstream_retry_after` (`Dispatcher._claim`). With a fallback group,
cooling it lets the fallback answer at once, so the usual rules apply.

Imports: the standard library, `errors`, `catalog`, `dispatch.clock`,
`dispatch.settings`, `dispatch.state.base`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass
from typing import Any, Literal

from interlock.catalog import Catalog, Deployment
from interlock.dispatch.clock import Clock
from interlock.dispatch.settings import RouterSettings
from interlock.dispatch.state.base import (
    Admission,
    BreakerView,
    FailureEvent,
    Limits,
    StateBackend,
)
from interlock.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    NotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamServerError,
)

log = logging.getLogger("interlock.dispatch")

COUNTED: tuple[type[ProviderError], ...] = (
    RateLimited, Overloaded, Timeout, UpstreamServerError, ConnectionFailed,
)
NEEDS_A_HUMAN: tuple[type[ProviderError], ...] = (AuthenticationFailed, NotFound)
# The allowed_fails_policy field that sets each error class's own limit.
POLICY_FIELDS: dict[type[ProviderError], str] = {
    RateLimited: "RateLimitErrorAllowedFails",
    Overloaded: "OverloadedErrorAllowedFails",
    Timeout: "TimeoutErrorAllowedFails",
    UpstreamServerError: "InternalServerErrorAllowedFails",
    ConnectionFailed: "ConnectionErrorAllowedFails",
    AuthenticationFailed: "AuthenticationErrorAllowedFails",
}


# A sole deployment's breaker opens only on a Retry-After, never by counting
# failures: its events carry a limit no window of failures reaches.
NEVER_BY_COUNT = 2**31 - 1


def sole_deployments(catalog: Catalog, has_fallbacks: Callable[[str], bool]) -> frozenset[str]:
    """The deployments that are the only available one of their group, in a group
    without a fallback group: those a cooldown would leave nothing to answer for."""
    sole: set[str] = set()
    for name, group in catalog.groups.items():
        available = [d for d in group.deployments if d.available]
        if len(available) == 1 and not has_fallbacks(name):
            sole.add(available[0].name)
    return frozenset(sole)


def allowed_fails_by_class(settings: RouterSettings) -> dict[type[ProviderError], int]:
    """The error classes that `allowed_fails_policy` gives a limit of their own."""
    policy = settings.allowed_fails_policy
    if policy is None:
        return {}
    return {cls: value for cls, name in POLICY_FIELDS.items()
            if (value := getattr(policy, name)) is not None}


class CooldownTracker:
    """The breaker policy over a state backend, on an injected clock."""

    def __init__(self, settings: RouterSettings, backend: StateBackend, clock: Clock, *,
                 sole: Collection[str] = frozenset()) -> None:
        self._settings = settings
        self._sole = frozenset(sole)
        self._backend = backend
        self._clock = clock
        self._allowed_fails = allowed_fails_by_class(settings)
        # Each deployment's rate limits and probe lifetime, which depend only on
        # the deployment and the settings, worked out on its first admission.
        self._admission_terms: dict[Deployment, tuple[Limits, float]] = {}

    def cooldown_time(self, deployment: Deployment) -> float:
        if deployment.cooldown_time is not None:
            return deployment.cooldown_time
        return self._settings.cooldown_time

    def failure_event(self, deployment: Deployment, error: ProviderError, *,
                      probe: bool = False) -> FailureEvent | None:
        """How this error affects the breaker, or None when it does not count."""
        s = self._settings
        if s.disable_cooldowns:
            return None
        name = type(error).__name__
        if deployment.name in self._sole:
            if not isinstance(error, COUNTED) or not error.retry_after:
                return None
            return FailureEvent(name, error.retry_after, NEVER_BY_COUNT, s.allowed_fails_window,
                                immediate=error.retry_after, probe=probe)
        # The count shared by all the deployment's failures is compared with the
        # limit of this failure's class, as LiteLLM's allowed_fails_policy does.
        allowed = next((n for cls, n in self._allowed_fails.items()
                        if isinstance(error, cls)), None)
        if isinstance(error, NEEDS_A_HUMAN):
            if allowed is not None:  # the operator tolerates some (a flaky auth proxy)
                return FailureEvent(name, s.auth_cooldown_time, allowed,
                                    s.allowed_fails_window, probe=probe)
            return FailureEvent(name, s.auth_cooldown_time, s.allowed_fails,
                                s.allowed_fails_window, immediate=s.auth_cooldown_time,
                                probe=probe)
        if not isinstance(error, COUNTED):
            return None
        # A provider that says when to come back is believed at once.
        immediate = error.retry_after if error.retry_after else 0.0
        return FailureEvent(name, self.cooldown_time(deployment),
                            s.allowed_fails if allowed is None else allowed,
                            s.allowed_fails_window, immediate=immediate, probe=probe)

    async def record_failure(self, deployment: Deployment, error: ProviderError, *,
                             probe: bool = False) -> BreakerView | None:
        """Apply the failure to the breaker; None when it does not count (the breaker
        is left alone)."""
        event = self.failure_event(deployment, error, probe=probe)
        view = (None if event is None
                else await self._backend.record_failure(deployment.name, event))
        if isinstance(error, NEEDS_A_HUMAN):
            log.warning(
                "Deployment %r (%s) answered %s (HTTP %s): check its API key, model name "
                "and base URL; %s", deployment.name, deployment.provider,
                type(error).__name__, error.status, self._auth_consequence(deployment, event,
                                                                           view))
        if view is None:
            return None
        if view.state == "open":
            log.info("Deployment %r cools down for %.1fs (%s)", deployment.name,
                     view.remaining, view.reason)
        return view

    def _auth_consequence(self, deployment: Deployment, event: FailureEvent | None,
                          view: BreakerView | None) -> str:
        """The end of the warning about a 401/403/404: what it did to the breaker."""
        if view is not None and event is not None and view.state == "open":
            return f"it is cooled down for {event.cooldown:.0f}s"
        if event is not None:
            return f"allowed_fails_policy tolerates {event.allowed_fails} such failures"
        if deployment.name in self._sole:
            return (f"it is not cooled down, being the only deployment of {deployment.group!r} "
                    "with no fallback group")
        return "it is not cooled down (disable_cooldowns)"

    @staticmethod
    def is_deployment_fault(error: ProviderError) -> bool:
        """Whether the error speaks of the deployment (counted in its error rate),
        rather than of the request."""
        return isinstance(error, COUNTED + NEEDS_A_HUMAN)

    # The pass-through methods below return the backend's awaitable rather than
    # awaiting it in a coroutine of their own: one coroutine less per call, and
    # the dispatcher makes several per request.
    def record_success(self, deployment: Deployment, *, probe: bool) -> Awaitable[None]:
        return self._backend.record_success(deployment.name, probe=probe)

    def admit(self, deployment: Deployment, tokens: int = 0) -> Awaitable[Admission]:
        terms = self._admission_terms.get(deployment)
        if terms is None:
            s = self._settings
            probe_ttl = min(s.probe_timeout,
                            deployment.timeout or s.timeout or s.probe_timeout)
            terms = self._admission_terms[deployment] = (
                Limits(deployment.rpm, deployment.tpm), probe_ttl)
        return self._backend.admit(deployment.name, terms[0], tokens, terms[1])

    def release(self, admission: Admission) -> Awaitable[None]:
        return self._backend.release(admission)

    def settle(self, admission: Admission, tokens: int) -> Awaitable[None]:
        return self._backend.settle(admission, tokens)

    def view(self, deployment: Deployment) -> BreakerView:
        return self._backend.snapshot(deployment.name)

    def recovers_in(self, deployment: Deployment) -> float:
        """Seconds until the deployment may be called again per the last known state."""
        v = self.view(deployment)
        return v.remaining if v.state == "open" else 0.0


@dataclass(slots=True)
class DeploymentStats:
    """This process's running view of one deployment: EWMA latency and error rate."""

    latency_ms: float | None = None
    error_rate: float = 0.0
    requests: int = 0
    failures: int = 0
    in_flight: int = 0

    def observe(self, *, ok: bool, duration_ms: float, alpha: float) -> None:
        self.requests += 1
        if ok:
            self.latency_ms = duration_ms if self.latency_ms is None else (
                alpha * duration_ms + (1 - alpha) * self.latency_ms)
        else:
            self.failures += 1
        self.error_rate = alpha * (0.0 if ok else 1.0) + (1 - alpha) * self.error_rate

    def score(self, penalty_ms: float) -> float:
        """Lower is better: expected latency plus a cost for recent errors. A deployment
        never measured scores 0 so that it gets measured."""
        if self.latency_ms is None:
            return 0.0
        return self.latency_ms * (1 + 4 * self.error_rate) + penalty_ms * self.error_rate


HealthState = Literal["healthy", "cooling", "half_open", "unavailable"]


@dataclass(slots=True)
class DeploymentHealth:
    deployment: str
    group: str
    provider: str
    model: str
    state: HealthState
    reason: str | None
    cooldown_remaining_s: float
    cooling_until: dt.datetime | None
    latency_ms: float | None
    error_rate: float
    requests: int
    failures: int
    in_flight: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cooling_until"] = self.cooling_until.isoformat() if self.cooling_until else None
        return out


def health_row(deployment: Deployment, view: BreakerView, stats: DeploymentStats
               ) -> DeploymentHealth:
    state: HealthState
    reason: str | None = view.reason or None
    if not deployment.available:
        state, reason = "unavailable", deployment.unavailable_reason
    elif view.state == "open":
        state = "cooling"
    elif view.state == "half_open":
        state = "half_open"
    else:
        state, reason = "healthy", None
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=view.remaining)
             if state == "cooling" else None)
    return DeploymentHealth(
        deployment=deployment.name, group=deployment.group, provider=deployment.provider,
        model=deployment.model, state=state, reason=reason,
        cooldown_remaining_s=round(view.remaining, 3) if state == "cooling" else 0.0,
        cooling_until=until,
        latency_ms=None if stats.latency_ms is None else round(stats.latency_ms, 2),
        error_rate=round(stats.error_rate, 4), requests=stats.requests,
        failures=stats.failures, in_flight=stats.in_flight,
    )
