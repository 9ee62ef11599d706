"""CooldownTracker as a table with a fake clock, against the memory and Redis backends.

Each row is a sequence of (seconds to advance, event) and the breaker state
expected after it. The Redis backend runs the same table with the same fake
clock as its time source, so both implementations of the rules are checked.
"""

from __future__ import annotations

import logging

import pytest

from interlock.catalog import Deployment
from interlock.dispatch.clock import FakeClock
from interlock.dispatch.health import CooldownTracker
from interlock.dispatch.settings import AllowedFailsPolicySettings, RouterSettings
from interlock.dispatch.state import MemoryStateBackend
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ContextWindowExceeded,
    NotFound,
    Overloaded,
    RateLimited,
    Timeout,
    UpstreamServerError,
)

SETTINGS = RouterSettings(allowed_fails=2, allowed_fails_window=60, cooldown_time=30,
                          auth_cooldown_time=600, probe_timeout=10)

E500 = UpstreamServerError("boom", status=500)

# (name, deployment cooldown override, steps, expected (state, remaining) at the end)
# A step is (advance seconds, "fail" error | "admit" | "success_probe").
TABLE = [
    ("two failures stay closed", None, [(0, E500), (1, E500)], ("closed", 0)),
    ("third failure in window opens", None, [(0, E500), (1, E500), (1, E500)], ("open", 30)),
    ("failures outside the window do not add up", None,
     [(0, E500), (1, E500), (61, E500)], ("closed", 0)),
    ("rate limits and timeouts count", None,
     [(0, RateLimited("x")), (0, Timeout("x")), (0, Overloaded("x"))], ("open", 30)),
    ("400s do not count", None,
     [(0, BadRequest("x")), (0, BadRequest("x")), (0, ContextWindowExceeded("x")),
      (0, BadRequest("x"))], ("closed", 0)),
    ("retry-after cools at once for that long", None,
     [(0, RateLimited("x", retry_after=10))], ("open", 10)),
    ("retry-after longer than the cooldown wins when the count opens", None,
     [(0, E500), (0, E500), (0, RateLimited("x", retry_after=45))], ("open", 45)),
    ("auth failure cools for the auth time", None, [(0, AuthenticationFailed("x"))],
     ("open", 600)),
    ("404 cools for the auth time", None, [(0, NotFound("x"))], ("open", 600)),
    ("per-deployment cooldown overrides", 5.0, [(0, E500)] * 3, ("open", 5)),
    ("cooldown ends in half-open", None, [(0, E500)] * 3 + [(30, "view")],
     ("half_open", 0)),
    ("retry-after during cooldown extends it", None,
     [(0, E500)] * 3 + [(25, RateLimited("x", retry_after=20))], ("open", 20)),
]


async def _run(tracker: CooldownTracker, clock: FakeClock, d: Deployment,
               steps: list) -> tuple[str, float]:
    for advance, event in steps:
        clock.advance(advance)
        if isinstance(event, Exception):
            await tracker.record_failure(d, event)
    view = tracker.view(d)
    return view.state, round(view.remaining, 3)


@pytest.fixture(params=["memory", "redis"])
def backend_factory(request):
    if request.param == "memory":
        return lambda clock: MemoryStateBackend(clock.now)
    factory = request.getfixturevalue("redis_backends")
    # cache_ttl 0: every snapshot reads what Redis said last, nothing older.
    return lambda clock: factory(time_source=clock.now, cache_ttl=0.0)


@pytest.mark.parametrize(("name", "override", "steps", "expected"), TABLE,
                         ids=[row[0] for row in TABLE])
async def test_breaker_table(backend_factory, name, override, steps, expected) -> None:
    clock = FakeClock()
    backend = backend_factory(clock)
    tracker = CooldownTracker(SETTINGS, backend, clock)
    d = Deployment(name=f"d-{abs(hash(name))}", group="g", provider="fake", model="m",
                   cooldown_time=override)
    state, remaining = await _run(tracker, clock, d, steps)
    if state == "open" and hasattr(backend, "refresh"):
        fresh = await backend.refresh(d.name)
        state, remaining = fresh.state, round(fresh.remaining, 3)
    elif hasattr(backend, "refresh"):
        fresh = await backend.refresh(d.name)
        state = fresh.state
    assert (state, remaining) == expected


# LiteLLM's allowed_fails_policy: each class's own limit on the shared count.
POLICY = SETTINGS.model_copy(update={"allowed_fails_policy": AllowedFailsPolicySettings(
    RateLimitErrorAllowedFails=5, TimeoutErrorAllowedFails=0,
    AuthenticationErrorAllowedFails=1)})
POLICY_TABLE = [
    ("rate limits get their own, higher limit",
     [(0, RateLimited("x"))] * 5, ("closed", 0)),
    ("one past it opens", [(0, RateLimited("x"))] * 6, ("open", 30)),
    ("a limit of 0 opens at the first", [(0, Timeout("x"))], ("open", 30)),
    ("classes the policy leaves out keep allowed_fails",
     [(0, E500)] * 2, ("closed", 0)),
    ("and open past it", [(0, E500)] * 3, ("open", 30)),
    ("the count is shared: a 500 after two 429s is the third failure, past 2",
     [(0, RateLimited("x"))] * 2 + [(0, E500)], ("open", 30)),
    ("an auth failure within its limit does not cool down at once",
     [(0, AuthenticationFailed("x"))], ("closed", 0)),
    ("past it, it cools for the auth time", [(0, AuthenticationFailed("x"))] * 2,
     ("open", 600)),
    ("a 404 still cools at once", [(0, NotFound("x"))], ("open", 600)),
    ("retry-after still cools at once", [(0, RateLimited("x", retry_after=10))],
     ("open", 10)),
]


@pytest.mark.parametrize(("name", "steps", "expected"), POLICY_TABLE,
                         ids=[row[0] for row in POLICY_TABLE])
async def test_allowed_fails_policy_table(backend_factory, name, steps, expected) -> None:
    clock = FakeClock()
    backend = backend_factory(clock)
    tracker = CooldownTracker(POLICY, backend, clock)
    d = Deployment(name=f"p-{abs(hash(name))}", group="g", provider="fake", model="m")
    state, remaining = await _run(tracker, clock, d, steps)
    if hasattr(backend, "refresh"):
        fresh = await backend.refresh(d.name)
        state = fresh.state
        if state == "open":
            remaining = round(fresh.remaining, 3)
    assert (state, remaining) == expected


async def test_half_open_lets_one_probe_through_then_closes(backend_factory) -> None:
    clock = FakeClock()
    tracker = CooldownTracker(SETTINGS, backend_factory(clock), clock)
    d = Deployment(name="probe-ok", group="g", provider="fake", model="m")
    for _ in range(3):
        await tracker.record_failure(d, E500)
    assert not (await tracker.admit(d)).admitted
    clock.advance(30)
    probe = await tracker.admit(d)
    assert probe.admitted and probe.probe
    # While the probe is out, everyone else is held back.
    second = await tracker.admit(d)
    assert not second.admitted and second.refused_by == "half-open"
    await tracker.record_success(d, probe=True)
    again = await tracker.admit(d)
    assert again.admitted and not again.probe


async def test_failed_probe_reopens_and_expired_probe_lease_frees(backend_factory) -> None:
    clock = FakeClock()
    tracker = CooldownTracker(SETTINGS, backend_factory(clock), clock)
    d = Deployment(name="probe-bad", group="g", provider="fake", model="m", timeout=600)
    for _ in range(3):
        await tracker.record_failure(d, E500)
    clock.advance(30)
    probe = await tracker.admit(d)
    assert probe.probe
    # A late failure from a call admitted before the breaker opened is ignored...
    await tracker.record_failure(d, E500, probe=False)
    assert not (await tracker.admit(d)).admitted
    # ...the probe's own failure reopens for the full cooldown.
    await tracker.record_failure(d, E500, probe=True)
    refused = await tracker.admit(d)
    assert refused.refused_by == "cooldown" and refused.retry_after == pytest.approx(30)
    clock.advance(30)
    assert (await tracker.admit(d)).probe
    # A probe that never reports back frees its lease after probe_timeout.
    clock.advance(10.5)
    assert (await tracker.admit(d)).probe


async def test_auth_failure_is_logged_loudly_without_the_key(caplog) -> None:
    from interlock.catalog import Secret

    clock = FakeClock()
    tracker = CooldownTracker(SETTINGS, MemoryStateBackend(clock.now), clock)
    d = Deployment(name="claude", group="g", provider="anthropic", model="m",
                   api_key=Secret("sk-ant-supersecretvalue123"))
    with caplog.at_level(logging.WARNING, logger="interlock.dispatch"):
        await tracker.record_failure(d, AuthenticationFailed("bad key", status=401))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "claude" in warnings[0].getMessage()
    assert "supersecret" not in caplog.text


# A group's only deployment (with no fallback group) is cooled only by a Retry-After.
SOLE_TABLE = [
    ("5xx never open it", [(0, E500)] * 6, ("closed", 0)),
    ("rate limits, timeouts, overload never open it",
     [(0, RateLimited("x")), (0, Timeout("x")), (0, Overloaded("x"))] * 2, ("closed", 0)),
    ("401 does not cool it", [(0, AuthenticationFailed("x", status=401))], ("closed", 0)),
    ("404 does not cool it", [(0, NotFound("x", status=404))], ("closed", 0)),
    ("a retry-after cools it for that long", [(0, RateLimited("x", retry_after=7))],
     ("open", 7)),
    ("a 503 with retry-after too", [(0, Overloaded("x", retry_after=4))], ("open", 4)),
]


@pytest.mark.parametrize(("name", "steps", "expected"), SOLE_TABLE,
                         ids=[row[0] for row in SOLE_TABLE])
async def test_sole_deployment_breaker_table(backend_factory, name, steps, expected) -> None:
    clock = FakeClock()
    d = Deployment(name=f"sole-{abs(hash(name))}", group="g", provider="fake", model="m")
    tracker = CooldownTracker(SETTINGS, backend_factory(clock), clock, sole={d.name})
    assert await _run(tracker, clock, d, steps) == expected


async def test_sole_deployment_auth_failure_says_it_is_not_cooled(caplog) -> None:
    clock = FakeClock()
    d = Deployment(name="only", group="g", provider="openai", model="m")
    tracker = CooldownTracker(SETTINGS, MemoryStateBackend(clock.now), clock, sole={"only"})
    with caplog.at_level(logging.WARNING, logger="interlock.dispatch"):
        assert await tracker.record_failure(d, NotFound("no such model", status=404)) is None
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "check its API key" in warning and "not cooled down" in warning
    assert "only deployment of 'g'" in warning
