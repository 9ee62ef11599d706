"""What a dispatch produced: the attempts made and the final result.

Imports: the standard library, `catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from interlock.catalog import Deployment

T = TypeVar("T")

SKIPPED = "skipped:"


@dataclass(slots=True)
class Attempt:
    """One upstream call, or one deployment skipped without a call.

    `outcome` is "ok", the error class name ("RateLimited", ...), "Cancelled"
    (the caller left while the call was under way), or "skipped:<why>"
    (cooldown, half-open, rpm, tpm, unavailable, context_window, or the name of
    the gate that refused). `duration_ms` is the call's duration
    (for a stream: until its end, or until the first delta while it runs).
    """

    deployment: str
    provider: str
    group: str
    outcome: str
    status: int | None
    duration_ms: float
    # This call was the half-open probe of its deployment.
    probe: bool = False

    @property
    def called(self) -> bool:
        """True when this was a real upstream call (not a skip)."""
        return not self.outcome.startswith(SKIPPED)


@dataclass(slots=True)
class DispatchResult(Generic[T]):
    """A finished dispatch: the answer (a ChatResponse, an EmbeddingResult), who gave it."""

    response: T
    deployment: Deployment
    group: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def upstream_calls(self) -> int:
        return sum(1 for a in self.attempts if a.called)
