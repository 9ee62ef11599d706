"""The result of the routing step: which model group answers, and why.

Imports: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Candidate:
    """A group the router considered, with its score (quality, similarity, ...)."""

    group: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Which model group serves a request.

    `requested` is what the caller named; `group` is the chosen model group;
    `router` names the router that decided ("direct" when the caller named a
    plain group). `error` is set when the router failed and the default group
    was used instead (a router never fails a request).
    """

    requested: str
    group: str
    router: str = "direct"
    reason: str = "the request named this model group"
    score: float | None = None
    threshold: float | None = None
    candidates: tuple[Candidate, ...] = field(default=())
    elapsed_ms: float = 0.0
    error: str | None = None

    def header_value(self) -> str:
        """Compact form for the x-interlock-route header."""
        parts = [f"router={self.router}", f"group={self.group}"]
        if self.score is not None:
            parts.append(f"score={self.score:.4f}")
        if self.threshold is not None:
            parts.append(f"threshold={self.threshold:g}")
        if self.error:
            parts.append("error=1")
        return "; ".join(parts)


def direct(group: str) -> RoutingDecision:
    return RoutingDecision(requested=group, group=group)
