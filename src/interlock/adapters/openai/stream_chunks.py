"""One chat.completion.chunk as a `StreamDelta` (`chunk_delta`), and the short
way for the usual chunk that holds only text (`plain_text`).

Imports: orjson, the standard library, `types`, `adapters.openai.response`.
"""

from __future__ import annotations

from typing import Any

import orjson

from interlock.adapters.openai.response import map_finish, parse_usage
from interlock.types import StreamDelta, ToolCallDelta


def plain_text(chunk: Any) -> str | None:
    """The text of a chunk that holds text and nothing else (one choice, index 0,
    a delta of only `content`, no finish reason, logprobs, usage or error), else None.
    Nearly every event of a stream after the first is one: this is the short
    way `chunk_delta` would take, with nothing built on the way."""
    if chunk.__class__ is not dict:
        return None
    choices = chunk.get("choices")
    if (choices.__class__ is not list or len(choices) != 1 or chunk.get("usage")
            or "x_groq" in chunk or "error" in chunk):
        return None
    choice = choices[0]
    if choice.__class__ is not dict:
        return None
    delta = choice.get("delta")
    if (delta.__class__ is not dict or len(delta) != 1 or choice.get("finish_reason")
            or choice.get("index", 0) != 0 or choice.get("logprobs") or "annotations" in choice):
        return None
    text = delta.get("content")
    return text if text and text.__class__ is str else None


def chunk_delta(chunk: dict[str, Any], *, first: bool) -> StreamDelta | None:
    """One chat.completion.chunk -> StreamDelta; None when it says nothing new.
    Runs for every streamed event, so the usual chunk (one choice whose delta
    holds only content) takes a short path, and the delta is built in one call."""
    choices = chunk.get("choices")
    choice = None
    if choices:
        choice = choices[0]
        if choice.get("index", 0) != 0:
            choice = next((c for c in choices if c.get("index", 0) == 0), None)
    raw_usage = chunk.get("usage") or (_groq_usage(chunk) if "x_groq" in chunk else None)
    usage = parse_usage(raw_usage) if raw_usage is not None else None
    text = reasoning = finish = logprobs = refusal = annotations = None
    calls: list[ToolCallDelta] = []
    if choice is not None:
        delta = choice.get("delta") or {}
        text = delta.get("content") or None
        if len(delta) > 1 or text is None:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or None
            refusal = delta.get("refusal") or None
            if "tool_calls" in delta or "function_call" in delta:  # no call for most events
                calls = _delta_calls(delta)
        if "annotations" in delta or "annotations" in choice:
            annotations = _annotations(delta, choice)
        reason = choice.get("finish_reason")
        if reason:
            finish = map_finish(reason)
        raw_logprobs = choice.get("logprobs")
        if raw_logprobs and isinstance(raw_logprobs, dict):
            logprobs = raw_logprobs
    if (first or reasoning is not None or text or calls or finish or usage is not None
            or logprobs is not None or refusal is not None or annotations is not None):
        # Positional (text, tool_calls, finish_reason, usage) and the rest set: a
        # class call's keyword arguments go through a dict, on nearly every event;
        # a test pins the field order.
        out = StreamDelta(text, calls, finish, usage)
        out.reasoning = reasoning
        out.logprobs = logprobs
        out.annotations = annotations
        if refusal is not None:
            out.refusal = str(refusal)
        if first:
            _identify(out, chunk)
        return out
    return None


def _annotations(delta: dict[str, Any], choice: dict[str, Any]) -> list[Any] | None:
    """A chunk's URL citations: on its delta, or on its choice (OpenRouter's place)."""
    found = delta.get("annotations") or choice.get("annotations")
    return found if found and found.__class__ is list else None


def _identify(first: StreamDelta, chunk: dict[str, Any]) -> None:
    """What the stream's first chunk says of the answer: its id and model, and of
    the backend that gives it."""
    first.id = chunk.get("id") or None
    first.model = chunk.get("model") or None
    fingerprint, tier = chunk.get("system_fingerprint"), chunk.get("service_tier")
    if fingerprint and fingerprint.__class__ is str:
        first.system_fingerprint = fingerprint
    if tier and tier.__class__ is str:
        first.service_tier = tier


def _delta_calls(delta: dict[str, Any]) -> list[ToolCallDelta]:
    raw_calls = delta.get("tool_calls")
    if raw_calls:
        return [_tool_call_delta(tc, i) for i, tc in enumerate(raw_calls)]
    legacy = delta.get("function_call")
    if legacy:
        return [ToolCallDelta(0, None, legacy.get("name"), legacy.get("arguments") or "")]
    return []


def _groq_usage(chunk: dict[str, Any]) -> Any:
    # Groq puts stream usage under x_groq instead of the top level.
    extra = chunk.get("x_groq")
    return extra.get("usage") if isinstance(extra, dict) else None


def _tool_call_delta(raw: dict[str, Any], position: int) -> ToolCallDelta:
    fn = raw.get("function") or {}
    args = fn.get("arguments")
    if args is not None and not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return ToolCallDelta(index=int(raw.get("index", position)), id=raw.get("id") or None,
                         name=fn.get("name") or None, arguments=args or "")
