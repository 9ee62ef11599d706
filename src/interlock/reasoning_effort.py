"""OpenAI's `reasoning_effort`, for the providers that set thinking otherwise.

An OpenAI client asks a reasoning model to think more or less with
`reasoning_effort`. A router may send that request to Claude or Gemini, which
take a thinking budget in tokens (Anthropic's `thinking.budget_tokens`, Gemini
2.5's `thinkingBudget`) or a level (Gemini 3's `thinkingLevel`). The adapters
translate with the budgets here, the ones Google's own OpenAI-compatible
endpoint uses for low, medium and high, so that one effort means about the same
thinking whichever provider answers; budget reservations (`costs.prices`) count
the same budgets as output the call may bill.

Imports: `errors`, `types`.
"""

from __future__ import annotations

from interlock.errors import InvalidRequest
from interlock.types import ChatRequest

# OpenAI's values, least thinking first.
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# Thinking tokens for an effort, where a provider takes a budget. "minimal" gets
# the smallest budget Anthropic accepts (1,024); "none" means no thinking.
BUDGETS = {"minimal": 1_024, "low": 1_024, "medium": 8_192, "high": 24_576,
           "xhigh": 32_768}


def requested_effort(request: ChatRequest) -> str | None:
    """The request's `reasoning_effort`, None when it has none; a value OpenAI
    does not define is refused (HTTP 400) rather than guessed at."""
    effort = request.extra.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort must be one of {', '.join(EFFORTS)}; got {effort!r}.",
            param="reasoning_effort", code="invalid_value")
    return str(effort)
