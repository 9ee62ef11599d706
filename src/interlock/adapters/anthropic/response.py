"""Response translation: a Messages API message object as a `ChatResponse`, and
the pieces the stream decoder shares with it (finish reasons, usage, the
served tier, thinking blocks, web search citations, JSON mode's answer).

Imports: the standard library, `types`, `catalog`, `web_search`,
`adapters.anthropic.error_mapping`, `adapters.anthropic.messages_api`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from interlock.adapters.anthropic.error_mapping import malformed
from interlock.adapters.anthropic.messages_api import JSON_ANSWER_TOOL
from interlock.catalog import Deployment
from interlock.types import ChatResponse, FinishReason, ToolCall, Usage
from interlock.web_search import url_citation

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}


# The tiers Anthropic says it served at, by OpenAI's name for each; prices are
# looked up by these names too (a "priority" price applies to either provider).
SERVED_TIERS = {"standard": "default", "priority": "priority"}


def parse_message(data: Any, deployment: Deployment, *,
                  json_answer: bool = False) -> ChatResponse:
    """A Messages API message object -> ChatResponse. With `json_answer` the
    request asked for OpenAI's JSON mode: the `json_answer` tool's input is the
    answer's text, and the call that carried it is not a tool call."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise malformed(deployment, json.dumps(data)[:200].encode())
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    length = 0  # characters of text so far: where the next block starts
    for block in data["content"]:
        kind = block.get("type")
        if kind == "text":
            piece = block.get("text", "")
            text.append(piece)
            annotations += url_citations(block.get("citations"), length, length + len(piece))
            length += len(piece)
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
            thinking.append(thinking_block(block))
        elif kind == "redacted_thinking":
            thinking.append(thinking_block(block))
        elif kind == "tool_use" and json_answer and block.get("name") == JSON_ANSWER_TOOL:
            # Readable as the streamed text is: characters as they are, not \u escapes.
            text.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
            length += len(text[-1])
        elif kind == "tool_use":
            calls.append(ToolCall(id=block.get("id", ""), name=block.get("name", ""),
                                  # json.dumps spacing, as the streamed fragments have it
                                  arguments=json.dumps(block.get("input") or {})))
    return ChatResponse(
        id=data.get("id", ""),
        model=data.get("model", deployment.model),
        content="".join(text) if text or not calls else None,
        tool_calls=calls,
        finish_reason=json_finish(data.get("stop_reason"), json_answer and not calls),
        usage=parse_usage(data.get("usage") or {}),
        reasoning="".join(reasoning) or None,
        thinking_blocks=thinking,
        annotations=annotations or None,
        service_tier=served_tier(data.get("usage")),
    )


def url_citations(citations: Any, start: int, end: int) -> list[dict[str, Any]]:
    """A text block's web search citations as OpenAI's url_citation annotations
    over the block's span of the answer (characters `start` to `end`). Citations
    of documents the caller sent (char, page, block locations) name no URL and
    are left out."""
    return [url_citation(start, end, c.get("url", ""), c.get("title") or "")
            for c in citations or () if c.get("type") == "web_search_result_location"]


def thinking_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A thinking or redacted_thinking block as it must be sent back: exactly
    the fields Anthropic signed (LiteLLM's `thinking_blocks` shape)."""
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data", "")}
    return {"type": "thinking", "thinking": block.get("thinking", ""),
            "signature": block.get("signature", "")}


def json_finish(stop_reason: str | None, json_answer: bool) -> FinishReason | None:
    """A JSON-mode answer ended by its tool call ended as an answer does."""
    if json_answer and stop_reason == "tool_use":
        return "stop"
    return finish_reason(stop_reason)


def finish_reason(stop_reason: str | None) -> FinishReason | None:
    if stop_reason is None:
        return None
    return STOP_REASONS.get(stop_reason, "stop")


def served_tier(usage: Any) -> str | None:
    """The tier Anthropic served the call at (`usage.service_tier`), in OpenAI's
    names (`SERVED_TIERS`): clients validate `service_tier` against OpenAI's enum,
    which has no "standard", so a typed client refused every Claude answer. A tier
    without an OpenAI name (a batch, a future one) is left out."""
    tier = usage.get("service_tier") if isinstance(usage, dict) else None
    return SERVED_TIERS.get(tier) if isinstance(tier, str) else None


def parse_usage(usage: Mapping[str, Any]) -> Usage:
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        web_searches=int((usage.get("server_tool_use") or {}).get("web_search_requests") or 0),
    )
