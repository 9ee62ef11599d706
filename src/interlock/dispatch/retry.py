"""The retry policy: what to do after an upstream attempt failed.

`RetryPolicy.decide` returns a `RetryDecision` value (house rule 4: "don't
retry" is a return value, never an exception). The dispatcher carries it out:

    RAISE       give the error to the caller now (the request itself is wrong)
    RETRY       another attempt in the same group; the same deployment may be
                called again after `delay` when no other one is available
    NEXT        another deployment of the same group, never the one that failed
    FALLBACK    leave the group; try the fallback chain of kind `fallback`

Backoff is exponential with full jitter: uniform(0, min(max, base * 2**n)),
unless the provider sent Retry-After, which is honoured up to `retry_after_cap`
(a longer Retry-After means: do not wait for this deployment, move on).

Imports: the standard library, `errors`, `dispatch.settings`.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from dataclasses import dataclass, field

from interlock.dispatch.settings import RouterSettings
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InterlockError,
    NotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamServerError,
)


class Action(enum.Enum):
    RAISE = "raise"
    RETRY = "retry"
    NEXT = "next"
    FALLBACK = "fallback"


class FallbackKind(enum.Enum):
    GENERAL = "fallbacks"
    CONTEXT_WINDOW = "context_window_fallbacks"
    CONTENT_POLICY = "content_policy_fallbacks"


@dataclass(frozen=True, slots=True)
class RetryDecision:
    action: Action
    delay: float = 0.0
    fallback: FallbackKind = FallbackKind.GENERAL
    reason: str = ""


# The error classes retried on the same deployment, and the retry_policy
# field that sets each one's count.
RETRYABLE: dict[type[ProviderError], str] = {
    RateLimited: "RateLimitErrorRetries",
    Overloaded: "OverloadedErrorRetries",
    Timeout: "TimeoutErrorRetries",
    UpstreamServerError: "InternalServerErrorRetries",
    ConnectionFailed: "ConnectionErrorRetries",
}
# Never retried on the same deployment, but another deployment (another key,
# another provider) may well succeed.
NOT_ON_SAME_DEPLOYMENT: tuple[type[ProviderError], ...] = (
    AuthenticationFailed, NotFound, BadRequest,
)


def retry_class(error: ProviderError) -> type[ProviderError]:
    """The RETRYABLE key an error counts under (unknown ProviderErrors are 5xx-like)."""
    for cls in RETRYABLE:
        if isinstance(error, cls):
            return cls
    return UpstreamServerError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry counts per error class plus backoff parameters; immutable."""

    retries: dict[type[ProviderError], int] = field(default_factory=dict)
    default_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 60.0

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> RetryPolicy:
        overrides = settings.retry_policy
        retries: dict[type[ProviderError], int] = {}
        for err_cls, field_name in RETRYABLE.items():
            value = getattr(overrides, field_name) if overrides is not None else None
            retries[err_cls] = settings.num_retries if value is None else value
        return cls(retries=retries, default_retries=settings.num_retries,
                   backoff_base=settings.backoff_base, backoff_max=settings.backoff_max,
                   retry_after_cap=settings.retry_after_cap)

    def with_retries(self, count: int) -> RetryPolicy:
        """This policy with every error class retried `count` times: a caller's
        per-request `num_retries`, which means the same for every failure."""
        return dataclasses.replace(self, retries=dict.fromkeys(self.retries, count),
                                   default_retries=count)

    def at_most(self, count: int) -> RetryPolicy:
        """This policy with no error class retried more than `count` times: a
        gateway client's `num_retries`, which may lower the operator's, not raise it."""
        return dataclasses.replace(
            self, retries={cls: min(n, count) for cls, n in self.retries.items()},
            default_retries=min(self.default_retries, count))

    @property
    def max_retries(self) -> int:
        """The most retries any class gets: a group gets at most 1 + this many attempts."""
        return max([self.default_retries, *self.retries.values()])

    def retries_for(self, cls: type[ProviderError]) -> int:
        return self.retries.get(cls, self.default_retries)

    def decide(self, error: InterlockError, *, retries_used: int, rng: random.Random
               ) -> RetryDecision:
        """What to do after `error`; `retries_used` counts earlier retries of its class."""
        if not isinstance(error, ProviderError):
            return RetryDecision(Action.RAISE, reason="not an upstream failure")
        if isinstance(error, ContextWindowExceeded):
            return RetryDecision(Action.FALLBACK, fallback=FallbackKind.CONTEXT_WINDOW,
                                 reason="prompt too long for this model")
        if isinstance(error, ContentFiltered):
            return RetryDecision(Action.FALLBACK, fallback=FallbackKind.CONTENT_POLICY,
                                 reason="refused by the provider's content filter")
        if isinstance(error, NOT_ON_SAME_DEPLOYMENT):
            return RetryDecision(Action.NEXT, reason=f"{type(error).__name__} is not retried")
        cls = retry_class(error)
        if retries_used >= self.retries_for(cls):
            return RetryDecision(Action.FALLBACK, reason=f"{cls.__name__} retries used up")
        if error.retry_after is not None and error.retry_after > self.retry_after_cap:
            return RetryDecision(Action.NEXT, reason="Retry-After is longer than the cap")
        return RetryDecision(Action.RETRY, delay=self.backoff(retries_used, error, rng),
                             reason=f"retry {retries_used + 1} of {self.retries_for(cls)}")

    def backoff(self, retries_used: int, error: ProviderError | None, rng: random.Random
                ) -> float:
        """Seconds to wait before calling the same deployment again."""
        if error is not None and error.retry_after is not None:
            return min(error.retry_after, self.retry_after_cap)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** retries_used))
        return rng.uniform(0.0, ceiling)
