"""Token estimates for a request before any provider has counted it.

Used where a number is needed ahead of the call: pre-call context checks and
tpm reservations in dispatch, budget reservations in costs; and after a call
the provider's usage never came back from (`estimated_usage`, `billed_usage`),
where the ledger row and the budgets must charge the same estimate. About four
characters a token, a few tokens of framing per message, a flat charge per
image; callers that must err high (budgets) charge images more.

Imports: the standard library, `types`.
"""

from __future__ import annotations

import json
import math

from interlock.types import ChatRequest, ChatResponse, ImagePart, Usage

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
# What a typical image costs at OpenAI's low detail; budgets pass a larger figure.
TOKENS_PER_IMAGE = 85


def estimate_text_tokens(text: str) -> int:
    """Tokens of one plain text (an embeddings input), by the same rule."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_inputs_tokens(texts: list[str]) -> int:
    """Tokens of an embeddings request's inputs, for a provider that counted none."""
    return sum(estimate_text_tokens(t) for t in texts)


def estimate_prompt_tokens(request: ChatRequest, *,
                           tokens_per_image: int = TOKENS_PER_IMAGE) -> int:
    """Input tokens of the whole request: message text, tool calls and tool specs."""
    chars = 0
    images = 0
    for m in request.messages:
        chars += len(m.text)
        images += sum(1 for p in m.parts if isinstance(p, ImagePart))
        for tc in m.tool_calls:
            chars += len(tc.name) + len(tc.arguments)
    if request.tools:
        chars += sum(len(t.name) + len(t.description or "") +
                     len(json.dumps(t.parameters or {})) for t in request.tools)
    return (math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(request.messages)
            + tokens_per_image * images)


def estimated_usage(request: ChatRequest, partial: ChatResponse) -> Usage:
    """What a call that ended without the provider's usage was likely billed
    (a stream its client left, or that broke, before the last chunk; a call cut
    off before any answer): the whole prompt, and the text, reasoning and
    tool-call arguments it had streamed."""
    streamed = ((partial.content or "") + (partial.reasoning or "")
                + "".join(c.arguments for c in partial.tool_calls))
    reasoning = estimate_text_tokens(partial.reasoning or "")
    return Usage(input_tokens=estimate_prompt_tokens(request),
                 output_tokens=estimate_text_tokens(streamed), reasoning_tokens=reasoning)


def billed_usage(request: ChatRequest, response: ChatResponse) -> Usage:
    """What a call is charged for: the provider's usage, or, when it never came,
    `estimated_usage`; one reading, so that every row and ticket of a call
    charge the same."""
    return response.usage or estimated_usage(request, response)
