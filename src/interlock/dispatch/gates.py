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


class GateTicket(Protocol):
    async def release(self, response: ChatResponse | None) -> None: ...


class AttemptGate(Protocol):
    # Short name shown in attempts and errors, e.g. "budget" or "rpm".
    name: str

    async def acquire(self, deployment: Deployment,
                      request: ChatRequest) -> GateTicket | str | None:
        """A ticket to go ahead; None, or a text saying why for the client's
        error, to skip this deployment for this request."""
        ...
