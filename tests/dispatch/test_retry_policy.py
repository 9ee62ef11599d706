"""RetryPolicy as a table: error class x retries used -> decision."""

from __future__ import annotations

import random

import pytest

from interlock.dispatch.retry import Action, FallbackKind, RetryPolicy
from interlock.dispatch.settings import RetryPolicySettings, RouterSettings
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    Timeout,
    UpstreamServerError,
)

POLICY = RetryPolicy.from_settings(RouterSettings(
    num_retries=2, retry_policy=RetryPolicySettings(RateLimitErrorRetries=4,
                                                    TimeoutErrorRetries=0),
    backoff_base=0.5, backoff_max=8.0, retry_after_cap=30.0))


@pytest.mark.parametrize(("error", "used", "action", "fallback"), [
    (RateLimited("x"), 0, Action.RETRY, None),
    (RateLimited("x"), 3, Action.RETRY, None),
    (RateLimited("x"), 4, Action.FALLBACK, FallbackKind.GENERAL),
    (Overloaded("x"), 1, Action.RETRY, None),
    (Overloaded("x"), 2, Action.FALLBACK, FallbackKind.GENERAL),
    (Timeout("x"), 0, Action.FALLBACK, FallbackKind.GENERAL),
    (UpstreamServerError("x"), 0, Action.RETRY, None),
    (ConnectionFailed("x"), 1, Action.RETRY, None),
    (ConnectionFailed("x"), 2, Action.FALLBACK, FallbackKind.GENERAL),
    (AuthenticationFailed("x"), 0, Action.NEXT, None),
    (NotFound("x"), 0, Action.NEXT, None),
    (BadRequest("x"), 0, Action.NEXT, None),
    (ContextWindowExceeded("x"), 0, Action.FALLBACK, FallbackKind.CONTEXT_WINDOW),
    (ContentFiltered("x"), 0, Action.FALLBACK, FallbackKind.CONTENT_POLICY),
    (InvalidRequest("x"), 0, Action.RAISE, None),
    (RateLimited("x", retry_after=31), 0, Action.NEXT, None),
])
def test_decision_table(error, used, action, fallback) -> None:
    decision = POLICY.decide(error, retries_used=used, rng=random.Random(0))
    assert decision.action is action
    if fallback is not None:
        assert decision.fallback is fallback


def test_backoff_is_full_jitter_within_exponential_ceiling() -> None:
    rng = random.Random(3)
    for used, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [POLICY.backoff(used, None, rng) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter: spread over the whole range, not clustered at the ceiling.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    rng = random.Random(0)
    assert POLICY.backoff(0, RateLimited("x", retry_after=7.0), rng) == 7.0
    assert POLICY.backoff(0, RateLimited("x", retry_after=99.0), rng) == 30.0
    decision = POLICY.decide(RateLimited("x", retry_after=7.0), retries_used=0, rng=rng)
    assert decision.action is Action.RETRY and decision.delay == 7.0


def test_max_retries_is_the_largest_class_count() -> None:
    assert POLICY.max_retries == 4
    assert RetryPolicy.from_settings(RouterSettings(num_retries=1)).max_retries == 1
