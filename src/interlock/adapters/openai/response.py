"""Response translation: a chat.completion object as a `ChatResponse` (its
finish reason and usage too), and a whole answer as one delta for a server
that ignored `stream`.

Imports: orjson, the standard library, `types`, `catalog`, `adapters.base`,
`adapters.openai.error_mapping`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from interlock.adapters.base import answer_shape, checked_response
from interlock.adapters.openai.error_mapping import decode_answer, malformed
from interlock.catalog import Deployment
from interlock.types import ChatResponse, FinishReason, StreamDelta, ToolCall, ToolCallDelta, Usage

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    # Seen from OpenAI-compatible servers that pass their engine's word through.
    "eos": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
}


def parsed_answer(status: int, headers: Mapping[str, str], raw: bytes,
                  deployment: Deployment) -> ChatResponse:
    """A whole answer read, or its error raised, typed either way."""
    with answer_shape(deployment.provider, deployment.name):
        data = decode_answer(status, headers, raw, deployment)
        return checked_response(parse_response(data, deployment))


def parse_response(data: dict[str, Any], deployment: Deployment) -> ChatResponse:
    """A chat.completion object -> ChatResponse (the first choice; n > 1 is not
    represented in the neutral response)."""
    try:
        choice = data["choices"][0]
        msg = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise malformed(deployment, "an answer without choices[0].message") from None
    calls = [_tool_call(c, i) for i, c in enumerate(msg.get("tool_calls") or [])]
    legacy = msg.get("function_call")
    if legacy and not calls:
        calls = [_tool_call({"function": legacy}, 0)]
    content = _text(msg.get("content"))
    refusal = msg.get("refusal")
    if not refusal or refusal.__class__ is not str:
        refusal = None
        if content is None and not calls:
            content = ""
    finish = map_finish(choice.get("finish_reason")) or ("tool_calls" if calls else "stop")
    # (id, model, content) positionally and the rest set: a class call's keyword
    # arguments go through a dict, about 500 instructions each (see
    # `parse_chat_request`); a test pins the field order.
    response = ChatResponse(str(data.get("id") or ""),
                            str(data.get("model") or deployment.model), content)
    response.tool_calls = calls
    response.finish_reason = finish
    response.usage = parse_usage(data.get("usage"))
    response.reasoning = msg.get("reasoning_content") or msg.get("reasoning") or None
    if isinstance(data.get("created"), int):
        response.created = data["created"]
    logprobs = choice.get("logprobs")
    if logprobs and isinstance(logprobs, dict):
        response.logprobs = logprobs
    if refusal is not None:
        response.refusal = refusal
    annotations = msg.get("annotations")
    if annotations and annotations.__class__ is list:
        response.annotations = annotations
    # Checked in place rather than by a helper: this runs on every answer.
    fingerprint, tier = data.get("system_fingerprint"), data.get("service_tier")
    if fingerprint and fingerprint.__class__ is str:
        response.system_fingerprint = fingerprint
    if tier and tier.__class__ is str:
        response.service_tier = tier
    return response


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _tool_call(raw: dict[str, Any], index: int) -> ToolCall:
    fn = raw.get("function") or {}
    args = fn.get("arguments")
    if not isinstance(args, str):
        # Some compatible servers (older Ollama) send the arguments as an object.
        args = orjson.dumps(args if args is not None else {}).decode()
    return ToolCall(id=str(raw.get("id") or f"call_{index}"), name=str(fn.get("name") or ""),
                    arguments=args)


def map_finish(reason: Any) -> FinishReason | None:
    if not reason:
        return None
    return _FINISH.get(str(reason), "stop")


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    # DeepSeek reports its cache hits under its own name.
    cached = prompt_details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens") or 0
    usage = Usage()  # set field by field, as `parse_response` builds its answer
    usage.input_tokens = int(raw.get("prompt_tokens") or 0)
    usage.output_tokens = int(raw.get("completion_tokens") or 0)
    usage.cached_input_tokens = int(cached)
    usage.reasoning_tokens = int(completion_details.get("reasoning_tokens") or 0)
    return usage


def delta_from_response(r: ChatResponse) -> StreamDelta:
    return StreamDelta(
        text=r.content, finish_reason=r.finish_reason, usage=r.usage, id=r.id, model=r.model,
        reasoning=r.reasoning, logprobs=r.logprobs, refusal=r.refusal,
        annotations=r.annotations, system_fingerprint=r.system_fingerprint,
        service_tier=r.service_tier,
        tool_calls=[ToolCallDelta(i, c.id, c.name, c.arguments)
                    for i, c in enumerate(r.tool_calls)],
    )
