"""What a budget's refusal says: whether the budget is spent, or held by calls
in flight, and so whether a lower max_tokens would have let the call through.

Imports: `costs.settings`, `costs.usd`, `dispatch.gates`, `types`.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.costs.settings import Budget
from interlock.costs.usd import plain_usd, to_nano
from interlock.dispatch.gates import Refusal
from interlock.types import ChatRequest


@dataclass(frozen=True, slots=True)
class Full:
    """A refusal: which of a call's budgets (1-based) had no room, and its counts then."""

    index: int
    spent: int
    reserved: int


def refusal(budget: Budget, request: ChatRequest, full: Full, could_cost: int | None,
            resets_in: float) -> Refusal:
    """What a refusal says of the budget that had no room: spent, or held by
    calls in flight (whose holds a lower max_tokens makes smaller)."""
    kind, name = budget.target
    if kind == "end_user" and name == "*":
        name = request.user or ""
    limit = budget.limit
    if full.reserved == 0 or full.spent >= to_nano(budget.max_usd):
        return Refusal(f"{kind} {name!r} has spent its {limit}", resets_in)
    cost = "" if could_cost is None else (
        f"; this call could cost up to ${plain_usd(could_cost)}")
    return Refusal(
        f"{kind} {name!r} has ${plain_usd(full.spent)} spent and "
        f"${plain_usd(full.reserved)} held by calls in flight of its {limit}{cost} (a call "
        "holds what its max_tokens could cost until it ends: a lower max_tokens holds less)",
        resets_in)
