"""Neutral responses, stream deltas and errors rendered as OpenAI JSON.

What clients see is the OpenAI chat-completions shape, through the gateway
and the library alike.

Imports: orjson, the standard library, `types`, `errors`, `adapters.base`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from interlock.adapters.base import decode_texts
from interlock.errors import ContextWindowExceeded, InterlockError, InvalidRequest, RateLimited
from interlock.types import ChatResponse, StreamDelta, ToolCall, Usage

# What follows a chunk's `delta` object, as `ChunkRenderer.sse` writes it.
_NONE: Mapping[str, str] = MappingProxyType({})
_FINISH = b',"logprobs":null,"finish_reason":'
_CHUNK_END = b"}]}\n\n"
# A chunk's end under stream_options.include_usage, where OpenAI gives every chunk
# but the last a null `usage`. JSON never holds a raw line break, so `_CHUNK_END`
# occurs in a rendered batch only where a chunk ends.
_CHUNK_END_NULL_USAGE = b'}],"usage":null}\n\n'
_NO_FINISH = _FINISH + b"null" + _CHUNK_END
# A text-only delta, around its serialised text: `{"content":...}` and the rest.
_CONTENT = b'{"content":'
_TEXT_END = b"}" + _NO_FINISH


def usage_dict(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        call: dict[str, Any] = {"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}}
        if c.thought_signature:
            call["extra_content"] = _signature_field(c.thought_signature)
        out.append(call)
    return out


def _signature_field(signature: str) -> dict[str, Any]:
    # Where Google's own OpenAI-compatible endpoint puts a Gemini thought
    # signature; a client that sends the tool call back as it got it keeps it.
    return {"google": {"thought_signature": signature}}


def completion_dict(response: ChatResponse, *, request_id: str,
                    legacy_functions: bool = False) -> dict[str, Any]:
    """`legacy_functions`: the request used the deprecated `functions`, whose
    callers read `message.function_call` and finish_reason "function_call"."""
    # `refusal` and `annotations` always, as OpenAI sends them (null and []):
    # strict clients' schemas require them.
    message: dict[str, Any] = {"role": "assistant", "content": response.content,
                               "refusal": response.refusal,
                               "annotations": response.annotations or []}
    finish: str | None = response.finish_reason
    if response.tool_calls and legacy_functions:
        # The legacy API has one call per answer (it predates parallel calls).
        first = response.tool_calls[0]
        message["function_call"] = {"name": first.name, "arguments": first.arguments}
        finish = _legacy_finish(finish)
    elif response.tool_calls:
        message["tool_calls"] = _tool_calls(response.tool_calls)
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    if response.thinking_blocks:
        # LiteLLM's field: the client sends it back with the assistant turn.
        message["thinking_blocks"] = response.thinking_blocks
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": [{"index": 0, "message": message, "logprobs": response.logprobs,
                     "finish_reason": finish}],
        "usage": usage_dict(response.usage),
        **backend_fields(response),
    }


def _legacy_finish(finish: str | None) -> str | None:
    return "function_call" if finish == "tool_calls" else finish


def backend_fields(delta: StreamDelta | ChatResponse) -> dict[str, str]:
    """`service_tier` and `system_fingerprint`, where the deployment gave them,
    in the order OpenAI writes them (a chunk's after `model`, an answer's last)."""
    out = {}
    if delta.service_tier is not None:
        out["service_tier"] = delta.service_tier
    if delta.system_fingerprint is not None:
        out["system_fingerprint"] = delta.system_fingerprint
    return out


def shows_anything(delta: StreamDelta) -> bool:
    """False for a delta a client would see as an empty chunk (say, one that only
    carries the provider's usage): OpenAI sends none of those."""
    return bool(delta.text or delta.reasoning or delta.tool_calls or delta.finish_reason
                or delta.thinking_blocks or delta.logprobs or delta.refusal
                or delta.annotations)


def delta_dict(delta: StreamDelta, *, first: bool) -> dict[str, Any]:
    """The `delta` object of a chunk."""
    out: dict[str, Any] = {}
    if first:
        out["role"] = "assistant"
    if delta.text:
        out["content"] = delta.text
    if delta.refusal:
        out["refusal"] = delta.refusal
    if delta.annotations:
        out["annotations"] = delta.annotations
    if delta.reasoning:
        out["reasoning_content"] = delta.reasoning
    if delta.thinking_blocks:
        out["thinking_blocks"] = delta.thinking_blocks
    if delta.tool_calls:
        out["tool_calls"] = _call_deltas(delta)
    return out


def _call_deltas(delta: StreamDelta) -> list[dict[str, Any]]:
    calls = []
    for tc in delta.tool_calls:
        call: dict[str, Any] = {"index": tc.index, "function": {"arguments": tc.arguments}}
        if tc.id:
            call["id"] = tc.id
            call["type"] = "function"
        if tc.name:
            call["function"]["name"] = tc.name
        if tc.thought_signature:
            call["extra_content"] = _signature_field(tc.thought_signature)
        calls.append(call)
    return calls


def _as_function_call(out: dict[str, Any], delta: StreamDelta) -> dict[str, Any]:
    """`out`, a `delta_dict` of `delta`, in the legacy shape: the first call's
    name, then its argument pieces, as `function_call`. Later calls are left
    out, as `completion_dict` leaves them out of a whole answer."""
    if out.pop("tool_calls", None) is not None:
        for tc in delta.tool_calls:
            if tc.index == 0:
                call = {"name": tc.name} if tc.name else {}
                call["arguments"] = tc.arguments
                out["function_call"] = call
    return out


def _legacy_delta_dict(delta: StreamDelta, *, first: bool) -> dict[str, Any]:
    return _as_function_call(delta_dict(delta, first=first), delta)


def chunk_dict(delta: StreamDelta, *, request_id: str, model: str, created: int,
               first: bool, backend: Mapping[str, str] = _NONE) -> dict[str, Any]:
    """`backend`: the stream's `backend_fields`, on every chunk as OpenAI sends them."""
    return {
        "id": request_id, "object": "chat.completion.chunk", "created": created,
        "model": model, **backend,
        "choices": [{"index": 0, "delta": delta_dict(delta, first=first),
                     "logprobs": delta.logprobs, "finish_reason": delta.finish_reason}],
    }


def usage_chunk_dict(usage: Usage | None, *, request_id: str, model: str,
                     created: int, backend: Mapping[str, str] = _NONE) -> dict[str, Any]:
    """The final chunk OpenAI sends when stream_options.include_usage is set."""
    return {"id": request_id, "object": "chat.completion.chunk", "created": created,
            "model": model, **backend, "choices": [], "usage": usage_dict(usage)}


def _chunk_tail(delta: StreamDelta) -> bytes:
    """What follows a chunk's `delta` object: its logprobs, its finish reason and
    the chunk's end (constant bytes for the usual chunk, which has neither)."""
    finish = delta.finish_reason
    if delta.logprobs is not None:
        return (b',"logprobs":' + orjson.dumps(delta.logprobs) + b',"finish_reason":'
                + orjson.dumps(finish) + _CHUNK_END)
    return _NO_FINISH if finish is None else _FINISH + orjson.dumps(finish) + _CHUNK_END


def _legacy_chunk_tail(delta: StreamDelta) -> bytes:
    if delta.finish_reason != "tool_calls":
        return _chunk_tail(delta)
    return (b',"logprobs":' + orjson.dumps(delta.logprobs)
            + b',"finish_reason":"function_call"' + _CHUNK_END)


class ChunkRenderer:
    """One stream's deltas as OpenAI chunks, for the gateway's SSE and the
    library alike: the role on the first chunk, one `created` and the latest
    model name on every chunk, and no empty chunks after the first.

    `legacy_functions` (as `completion_dict`'s) makes a `_LegacyChunkRenderer`:
    the shape is chosen once a stream, so that the usual stream, on the hot
    path, tests nothing per chunk for the legacy one. `include_usage` (the
    request's stream_options) gives each chunk a null `usage`, as OpenAI's
    have when the stream ends with a usage chunk."""

    # How a delta's object and a chunk's end are written (the legacy class's differ).
    _delta_dict = staticmethod(delta_dict)
    _tail = staticmethod(_chunk_tail)

    def __new__(cls, request_id: str, legacy_functions: bool = False,
                include_usage: bool = False) -> ChunkRenderer:
        return super().__new__(_LegacyChunkRenderer if legacy_functions else cls)

    def __init__(self, request_id: str, legacy_functions: bool = False,
                 include_usage: bool = False) -> None:
        self.request_id = request_id
        self.include_usage = include_usage
        self.model = ""
        self.created = int(time.time())
        self._first = True
        # `data: {"id":...,"model":...,"choices":[{"index":0,"delta":` for
        # self.model, so that `sse` serialises only what changes per chunk.
        self._head = b""
        self._head_model: str | None = None
        # `backend_fields` of the stream's first delta, on every chunk.
        self.backend: dict[str, str] = {}

    def _shown(self, delta: StreamDelta) -> bool:
        """Take the delta's model name (and, from the first, what it says of the
        backend); whether a client would see anything in it."""
        self.model = delta.model or self.model
        if self._first:
            self.backend = backend_fields(delta)
            return True
        return shows_anything(delta)

    def chunk(self, delta: StreamDelta) -> dict[str, Any] | None:
        """The chunk for this delta, or None when a client would see nothing in it."""
        if not self._shown(delta):
            return None
        out = chunk_dict(delta, request_id=self.request_id, model=self.model,
                         created=self.created, first=self._first, backend=self.backend)
        if self.include_usage:
            out["usage"] = None
        self._first = False
        return out

    def sse(self, deltas: list[StreamDelta], texts: Sequence[bytes] = ()) -> bytes:
        """The SSE events of a batch's chunks (`texts`, then `deltas`, as in
        `DeltaBatch`), built around a serialised head that is the same for every
        chunk of the stream. A delta's event is byte for byte `data: ` +
        orjson.dumps(self.chunk(delta)) + a blank line. A text literal goes out
        as it came, between that head and the fixed end of a text chunk, all of
        them in one join: the same JSON, though its escapes may be the
        provider's rather than orjson's."""
        out = self._batch_sse(deltas, texts)
        return out.replace(_CHUNK_END, _CHUNK_END_NULL_USAGE) if self.include_usage else out

    def _batch_sse(self, deltas: list[StreamDelta], texts: Sequence[bytes]) -> bytes:
        if not texts:
            return self._sse(deltas)
        if self._first or self._head_model != self.model:
            return self._sse([StreamDelta(text) for text in decode_texts(texts)] + deltas)
        head = self._head + _CONTENT
        text = head + (_TEXT_END + head).join(texts) + _TEXT_END
        return text + self._sse(deltas) if deltas else text

    def _sse(self, deltas: list[StreamDelta]) -> bytes:
        out = []
        render, tail = self._delta_dict, self._tail
        for delta in deltas:
            if not self._shown(delta):
                continue
            if self._head_model != self.model:
                self._head = self._head_for(self.model)
                self._head_model = self.model
            body = orjson.dumps(render(delta, first=self._first))
            self._first = False
            out.append(self._head + body + tail(delta))
        return b"".join(out)

    def _head_for(self, model: str) -> bytes:
        fields = orjson.dumps({"id": self.request_id, "object": "chat.completion.chunk",
                               "created": self.created, "model": model, **self.backend})
        return b"data: " + fields[:-1] + b',"choices":[{"index":0,"delta":'

    def usage_chunk(self, usage: Usage | None,
                    interlock: dict[str, Any] | None = None) -> dict[str, Any]:
        """The usage chunk; `interlock` adds what the stream cost and where it ran,
        known only now that the stream has ended (its headers went out first)."""
        out = usage_chunk_dict(usage, request_id=self.request_id, model=self.model,
                               created=self.created, backend=self.backend)
        if interlock is not None:
            out["interlock"] = interlock
        return out


class _LegacyChunkRenderer(ChunkRenderer):
    """A stream asked with the deprecated `functions`: `function_call` deltas
    for the first call only (the legacy API predates parallel calls) and
    finish_reason "function_call"."""

    _delta_dict = staticmethod(_legacy_delta_dict)
    _tail = staticmethod(_legacy_chunk_tail)

    def _shown(self, delta: StreamDelta) -> bool:
        if delta.tool_calls and all(tc.index for tc in delta.tool_calls):
            # Only pieces of later calls, which this shape leaves out.
            delta = dataclasses.replace(delta, tool_calls=[])
        return super()._shown(delta)

    def chunk(self, delta: StreamDelta) -> dict[str, Any] | None:
        out = super().chunk(delta)
        if out is not None:
            choice = out["choices"][0]
            _as_function_call(choice["delta"], delta)
            choice["finish_reason"] = _legacy_finish(choice["finish_reason"])
        return out


# OpenAI's own codes for the errors client code most often tells apart by code
# (`err.code == "context_length_exceeded"` to trim a conversation, say); the
# other errors carry their class's name.
_OPENAI_CODES: tuple[tuple[type[InterlockError], str, str | None], ...] = (
    (ContextWindowExceeded, "context_length_exceeded", "messages"),
    (RateLimited, "rate_limit_exceeded", None),
)


def error_dict(error: InterlockError) -> dict[str, Any]:
    """The OpenAI error body for any Interlock error, as a client of the gateway
    may read it: with `client_message` in place of the message when it has one."""
    param = getattr(error, "param", None)
    code = getattr(error, "code", None)
    if code is None and not isinstance(error, InvalidRequest):
        code = type(error).__name__
        for kind, openai_code, openai_param in _OPENAI_CODES:
            if isinstance(error, kind):
                code, param = openai_code, param or openai_param
                break
    return {"error": {"message": error.client_message or error.message,
                      "type": error.error_type, "param": param, "code": code}}


def plain_error_dict(message: str, *, type_: str, code: str | None = None,
                     param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
