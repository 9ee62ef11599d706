"""The hook through which other parts (budgets, limits) can refuse an attempt.

The dispatcher asks each gate before calling a deployment. A gate that says
no takes that deployment out of this request's candidates, like a cooldown; it
is not a failure. A gate that says yes hands back a ticket, released after the
attempt with the response, so that reservations can be settled with the real
outcome: None when the attempt failed or was not made; for one cut off midway
(its client left, its stream broke), what it had answered, without usage when
the provider's never came.

Imports: the standard library, `types`, `catalog`.
"""

from __future__ import annotations

from typing import Protocol

from interlock.catalog import Deployment
from interlock.types import ChatRequest, ChatResponse


class Refusal(str):
    """A gate's no: why, as text (it is one), and where known the seconds until
    what refused lets calls through again (a budget's period end), for the
    client's Retry-After; not a wait for the dispatcher, which never sleeps
    through it."""

    resets_in: float | None

    def __new__(cls, why: str, resets_in: float | None = None) -> Refusal:
        refusal = super().__new__(cls, why)
        refusal.resets_in = resets_in
        return refusal


class GateTicket(Protocol):
    async def release(self, response: ChatResponse | None) -> None: ...


class AttemptGate(Protocol):
    # Short name shown in attempts and errors, e.g. "budget" or "rpm".
    name: str

    async def acquire(self, deployment: Deployment,
                      request: ChatRequest) -> GateTicket | str | None:
        """A ticket to go ahead; None, or a text saying why for the client's
        error (a `Refusal` to say when it will pass again), to skip this
        deployment for this request. One that can take no call at all any
        more (a budget gate closed at shutdown) raises `GatewayShuttingDown`:
        the request stops there, with no other candidate tried."""
        ...
