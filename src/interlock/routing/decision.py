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
    # Which rule or intent decided, as "rule=NAME" or "intent=NAME"; "rule=(none)" or
    # "intent=(none)" when none matched and the default served. Without it a request
    # sent to the default looked the same as one a rule sent to the same group.
    matched: str | None = None
    # The x-interlock-route and -model-group header values as bytes, made on first
    # use: a named group's decision is built once and answers every request to it.
    _route_header: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _group_header: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def header_bytes(self) -> bytes:
        """`header_value()` made header-safe (`header_safe`), as bytes."""
        value = self._route_header
        if value is None:
            value = header_safe(self.header_value()).encode()
            object.__setattr__(self, "_route_header", value)
        return value

    def group_header_bytes(self) -> bytes:
        """`group` made header-safe, as bytes."""
        value = self._group_header
        if value is None:
            value = header_safe(self.group).encode()
            object.__setattr__(self, "_group_header", value)
        return value

    def header_value(self) -> str:
        """Compact form for the x-interlock-route header."""
        parts = [f"router={self.router}", f"group={self.group}"]
        if self.matched is not None:
            parts.append(self.matched)
        if self.score is not None:
            parts.append(f"score={self.score:.4f}")
        if self.threshold is not None:
            parts.append(f"threshold={self.threshold:g}")
        if self.error:
            parts.append("error=1")
        return "; ".join(parts)


# Longer header values are cut: a client's made-up model name is echoed in some.
MAX_HEADER_VALUE = 1000


def header_safe(value: str) -> str:
    """`value` with anything but printable ASCII replaced by "?", cut to
    MAX_HEADER_VALUE characters.

    Headers echo names the client chose (an unknown model's name in the route);
    a control character there made the server drop the connection unanswered."""
    if len(value) > MAX_HEADER_VALUE:
        value = value[:MAX_HEADER_VALUE - 3] + "..."
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if " " <= c <= "~" else "?" for c in value)


def direct(group: str) -> RoutingDecision:
    return RoutingDecision(requested=group, group=group)
