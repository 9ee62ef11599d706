"""Whose limit ran out: a request's own `timeout`, or the deployment's.

A request's deadline is the router's `timeout` (`stream_timeout` for streams)
unless the caller gives its own `timeout` (a gateway client may only shorten
it). Each attempt's limit is the deployment's own (`deployment.timeout`, the
router's `timeout`, ...) cut to what is left of that deadline. When the
caller's deadline is what cut it, and it is what ran out, the Timeout says
nothing about the deployment: the caller chose not to wait. Such a Timeout
fails the request at once and leaves the deployment's breaker, cooldown and
statistics alone; counted, any client could cool a whole model group down for
everyone (shared through Redis, on every replica) by sending a tiny `timeout`.
The price, accepted (docs/reliability.md): behind clients' short timeouts a
hanging deployment is caught only by a limit of its own shorter than theirs
(`first_token_timeout`, its `timeout`), since how long is "long enough" to blame
it is a line any client could learn to stand just past.

Imports: the standard library, `errors`, `catalog`, `adapters.http`,
`dispatch.settings`, `dispatch.run`.
"""

from __future__ import annotations

import math

from interlock.adapters.http import seconds
from interlock.catalog import Deployment
from interlock.dispatch.run import Run
from interlock.dispatch.settings import RouterSettings
from interlock.errors import InvalidRequest, ProviderError, Timeout

# The shortest `timeout` a request may give: every attempt gets at least this
# long (the dispatcher's floor), so a shorter deadline has passed before any
# deployment could be called, and was answered with a baffling 503.
MIN_REQUEST_TIMEOUT = 0.001
# Timers fire on the loop's clock, which may run a hair ahead of the dispatcher's.
CLOCK_SLACK = 0.002


def checked_request_timeout(timeout: float) -> float:
    """`timeout` if a request may give it, else InvalidRequest (400) naming it."""
    if not timeout >= MIN_REQUEST_TIMEOUT:  # NaN too
        raise InvalidRequest(
            f"'timeout' must be at least {MIN_REQUEST_TIMEOUT:g} seconds, got {timeout!r}: "
            "it is the whole request's deadline in seconds (leave it out for the router's).",
            param="timeout", code="invalid_value")
    return timeout


def deployment_limit(settings: RouterSettings, d: Deployment, *, stream: bool) -> float | None:
    """The longest one attempt at `d` may take by the deployment's and the router's
    own settings, before any request's deadline cuts it (None: no limit)."""
    if stream:
        return d.stream_timeout or settings.stream_timeout or d.timeout or settings.timeout
    return d.timeout or settings.timeout


def ran_out_for_the_caller(run: Run, error: ProviderError, own_limit: float | None,
                           started: float, now: float) -> bool:
    """Whether `error` is a Timeout of the request's own deadline: the request gave
    a `timeout`, that deadline came before the deployment's and the router's own
    limits would have ended the attempt begun at `started`, and it has passed.
    A limit that ran out earlier (connect, first token, idle, the provider's own
    timeout) is the deployment's."""
    deadline = run.deadline
    if run.request.timeout is None or deadline is None or not isinstance(error, Timeout):
        return False
    own_end = math.inf if own_limit is None else started + own_limit
    if run.router_deadline is not None:
        own_end = min(own_end, run.router_deadline)
    return deadline < own_end and now + CLOCK_SLACK >= deadline


def callers_timeout(error: ProviderError, run: Run) -> Timeout:
    """The Timeout the caller gets when its own deadline ran out, saying so."""
    return Timeout(
        f"The request's own timeout of {seconds(run.request.timeout)} ran out while "
        f"{error.provider} deployment {error.deployment!r} was answering (not counted "
        "against the deployment); give the request a longer `timeout`, or none for the "
        "router's.", provider=error.provider, deployment=error.deployment)
