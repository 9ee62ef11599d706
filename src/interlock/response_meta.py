"""What Interlock knows about one request (`ResponseMeta`: the decision, who
answered, the attempts, the cost and timings, as response headers and as a
stream's summary), and what the gateway hands back with the answer
(`Completion`, `Embeddings`).

Imports: the standard library, `costs.usd`, `dispatch.dispatcher`, `key_limits`,
`routing.decision`, `types`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from interlock.costs.usd import header_usd
from interlock.dispatch.dispatcher import Attempt
from interlock.key_limits import KeyTicket
from interlock.routing.decision import RoutingDecision, header_safe
from interlock.types import ChatResponse, EmbeddingResult


@dataclass(slots=True)
class ResponseMeta:
    """What Interlock knows about one answered (or failed) request."""

    request_id: str
    decision: RoutingDecision
    group: str | None = None
    deployment: str | None = None
    provider: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # Seconds the dispatcher waited on purpose (backoff, cooldowns, slots): like
    # the upstream calls, not Interlock's overhead.
    waits: list[float] = field(default_factory=list)
    cost_usd: Decimal | None = None
    # A failed request none of whose calls a provider bills (none made, or each
    # answered with an error status): its cost is $0 for the ledger and budgets,
    # but no price was at work, so the x-interlock-cost-usd header is left out.
    nothing_billed: bool = False
    latency_ms: float = 0.0
    overhead_ms: float = 0.0
    ttft_ms: float | None = None
    # The service tier the provider reported serving the call at (for the ledger).
    service_tier: str | None = None
    # The provider reported no usage; the tokens recorded and the cost are estimates.
    usage_estimated: bool = False
    # A limited client key's hold on its limits, let go with the ledger row.
    key_ticket: KeyTicket | None = None

    @property
    def upstream_calls(self) -> int:
        """Calls really made; `attempts` also lists deployments skipped without a call."""
        attempts = self.attempts
        if len(attempts) == 1:  # the usual case, counted without a generator
            return 1 if attempts[0].called else 0
        return sum(1 for a in attempts if a.called)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The x-interlock-* response headers, as the server sends them. The two
        that can echo a name the client chose go through `header_safe`, which
        leaves only printable ASCII; the rest are Interlock's own names and
        numbers. Deployment names come from the config, which may hold any
        character, so they are encoded leniently."""
        decision = self.decision
        group = self.group
        out = [(b"x-request-id", self.request_id.encode()),
               (b"x-interlock-model-group",
                header_safe(group).encode() if group and group != decision.group
                else decision.group_header_bytes()),
               (b"x-interlock-route", decision.header_bytes()),
               (b"x-interlock-attempts", b"%d" % self.upstream_calls),
               (b"x-interlock-overhead-ms", b"%.3f" % self.overhead_ms)]
        if self.deployment:
            out.append((b"x-interlock-deployment", _latin1(self.deployment)))
        if self.provider:
            out.append((b"x-interlock-provider", _latin1(self.provider)))
        attempts = self.attempts
        if attempts:  # the usual single attempt without a join
            log = (_logged(attempts[0]) if len(attempts) == 1
                   else ", ".join(map(_logged, attempts)))
            out.append((b"x-interlock-attempt-log", _latin1(log)))
        # What the request's billed calls cost as priced; absent when unknown (no
        # price, or a call that may be billed) and when nothing was billed.
        if self.cost_usd is not None and not self.nothing_billed:
            out.append((b"x-interlock-cost-usd", header_usd(self.cost_usd).encode()))
        return out

    def stream_summary(self) -> dict[str, Any]:
        """What a stream's final usage chunk carries: the cost and who answered."""
        # `:f`, not str(): a Decimal under a millionth printed as '2E-8'.
        summary = {"cost_usd": f"{self.cost_usd:f}" if self.cost_usd is not None else None,
                   "model_group": self.group, "deployment": self.deployment,
                   "provider": self.provider, "attempts": self.upstream_calls}
        if self.usage_estimated:
            summary["usage_estimated"] = True
        return summary

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "route": {"requested": self.decision.requested, "group": self.decision.group,
                      "router": self.decision.router, "reason": self.decision.reason,
                      "score": self.decision.score, "threshold": self.decision.threshold,
                      "elapsed_ms": self.decision.elapsed_ms, "error": self.decision.error},
            "model_group": self.group, "deployment": self.deployment, "provider": self.provider,
            "attempts": [{"deployment": a.deployment, "provider": a.provider, "group": a.group,
                          "outcome": a.outcome, "status": a.status,
                          "duration_ms": round(a.duration_ms, 3)} for a in self.attempts],
            "cost_usd": f"{self.cost_usd:f}" if self.cost_usd is not None else None,
            "latency_ms": round(self.latency_ms, 3),
            "overhead_ms": round(self.overhead_ms, 3),
            "ttft_ms": round(self.ttft_ms, 3) if self.ttft_ms is not None else None,
        }


@dataclass(slots=True)
class Completion:
    response: ChatResponse
    meta: ResponseMeta
    # The ledger row, when `Gateway.complete` was asked to leave it to `settle`.
    _unsettled: Callable[[], None] | None = None

    def settle(self) -> None:
        """Write the ledger row that `complete(settle_later=True)` left (once)."""
        unsettled, self._unsettled = self._unsettled, None
        if unsettled is not None:
            unsettled()


@dataclass(slots=True)
class Embeddings:
    result: EmbeddingResult
    # The upstream model id of the deployment that answered.
    model: str
    meta: ResponseMeta


def _logged(attempt: Attempt) -> str:
    """One attempt as x-interlock-attempt-log lists it."""
    return f"{attempt.deployment}={attempt.outcome}/{attempt.duration_ms:.0f}ms"


def _latin1(value: str) -> bytes:
    # As the server wrote every header value before: a character latin-1 lacks
    # becomes "?" rather than failing the answer.
    return value.encode("latin-1", "replace")


def new_request_id(prefix: str = "chatcmpl-") -> str:
    # 32 random hex digits, as uuid4().hex, from the random module's generator:
    # an id only has to be unique, not secret, and os.urandom's system call showed
    # as 2 % of a streamed call's samples in a py-spy profile on a virtual machine.
    return f"{prefix}{random.getrandbits(128):032x}"
