"""What this process's requests used and cost, per deployment: requests by
outcome, tokens each way, dollars, and the requests whose cost is unknown.

Counted once per request where its ledger row is made (`request_record`),
with or without a ledger, from the usage and cost the row gets anyway (the first
call of a stream continued on another deployment, which has a row of its own,
adds its tokens and dollars to its deployment but no request); read by
`server.metrics` when scraped. The request path pays a dictionary lookup and a
few additions: no lock (one event loop), no labels built, no text rendered.

Imports: the standard library, `types`.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from interlock.types import Usage


class DeploymentUsage:
    """The running totals of the requests that ended on one deployment."""

    __slots__ = ("answered", "cached_input_tokens", "cost_usd", "errors", "input_tokens",
                 "output_tokens", "reasoning_tokens", "unpriced")

    def __init__(self) -> None:
        self.answered = 0
        # By the error's class, as the ledger's `error_class`: a bounded set of names.
        self.errors: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_input_tokens = 0
        self.reasoning_tokens = 0
        self.cost_usd = Decimal(0)
        # Requests (and continued streams' first calls) of unknown cost (no price,
        # or a failure that may have been billed): kept out of `cost_usd` rather
        # than counted as $0 there.
        self.unpriced = 0


class UsageCounters:
    """`DeploymentUsage` by deployment name; None holds the requests that ended
    before any deployment was tried (refused, unknown model, over a limit)."""

    def __init__(self) -> None:
        # A defaultdict: a name seen for the first time costs its entry, and the
        # lookup of a known one is a plain subscript (no .get, no test).
        self.by_deployment: defaultdict[str | None, DeploymentUsage] = defaultdict(
            DeploymentUsage)

    def count(self, deployment: str | None, usage: Usage, cost_usd: Decimal | None,
              error: BaseException | None, outcome: bool = True) -> None:
        """`outcome` False: a call that is not a request's end (the first call of a
        stream continued elsewhere): its tokens and cost count, not as a request."""
        tally = self.by_deployment[deployment]
        if outcome:
            if error is None:
                tally.answered += 1
            else:
                name = type(error).__name__
                tally.errors[name] = tally.errors.get(name, 0) + 1
        tally.input_tokens += usage.input_tokens
        tally.output_tokens += usage.output_tokens
        tally.cached_input_tokens += usage.cached_input_tokens
        tally.reasoning_tokens += usage.reasoning_tokens
        if cost_usd is None:
            tally.unpriced += 1  # a continued stream's first call among them
        else:
            tally.cost_usd += cost_usd

    def outcomes(self) -> dict[str, int]:
        """Requests by outcome ("ok", or the error's class) over all deployments."""
        totals: dict[str, int] = {"ok": 0}
        for tally in list(self.by_deployment.values()):
            totals["ok"] += tally.answered
            for name, n in tally.errors.items():
                totals[name] = totals.get(name, 0) + n
        return totals
