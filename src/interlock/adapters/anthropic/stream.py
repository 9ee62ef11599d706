"""Stream decoding: Anthropic's server-sent events (`message_start` ...
`message_stop`) folded into neutral `StreamDelta`s, one event at a time.

Imports: orjson, the standard library, `types`, `catalog`, `adapters.base`,
`adapters.anthropic.*`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import orjson

from interlock.adapters.anthropic.error_mapping import error_from_body, malformed
from interlock.adapters.anthropic.messages_api import JSON_ANSWER_TOOL
from interlock.adapters.anthropic.response import (
    json_finish,
    parse_usage,
    served_tier,
    thinking_block,
    url_citations,
)
from interlock.adapters.base import ServerSentEvent
from interlock.catalog import Deployment
from interlock.types import StreamDelta, ToolCallDelta


class StreamState:
    """Folds Anthropic's stream events into neutral deltas, one event at a time."""

    def __init__(self, deployment: Deployment, *, json_answer: bool = False) -> None:
        self.deployment = deployment
        # JSON mode through the `json_answer` tool: its input streams as text.
        self.json_answer = json_answer
        self._json_blocks: dict[int, bool] = {}  # block index -> any text came
        self.done = False
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        # content block index -> (tool call index, whether any argument text came)
        self._tools: dict[int, list[Any]] = {}
        # content block index -> the thinking block being streamed (text, signature)
        self._thinking: dict[int, dict[str, Any]] = {}
        # Text blocks that cite web search results: index -> [where the block's
        # text starts in the answer, its citations]; `_length` counts the
        # answer's characters so far, so a block's span is known at its end.
        self._cited: dict[int, list[Any]] = {}
        self._length = 0
        # Blocks of Anthropic's own tools (web search): their input is not a call
        # for the client to make.
        self._server_tools: set[int] = set()

    def feed(self, event: ServerSentEvent) -> StreamDelta | None:
        try:
            data = orjson.loads(event.data)
        except ValueError:
            raise malformed(self.deployment, event.data.encode()) from None
        if not isinstance(data, dict):
            raise malformed(self.deployment, event.data.encode())
        kind = event.event or data.get("type")
        handler = self._handlers.get(kind or "")
        # Anthropic may add event types; unknown ones are skipped, as its docs ask.
        return handler(self, data) if handler else None

    def _message_start(self, data: dict[str, Any]) -> StreamDelta:
        message = data.get("message") or {}
        self.usage.update(message.get("usage") or {})
        return StreamDelta(id=message.get("id"), model=message.get("model"),
                           service_tier=served_tier(message.get("usage")))

    def _block_start(self, data: dict[str, Any]) -> StreamDelta | None:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use" and self.json_answer and block.get("name") == JSON_ANSWER_TOOL:
            self._json_blocks[int(data.get("index", -1))] = False
            return None
        if kind == "tool_use":
            tool_index = len(self._tools)
            self._tools[int(data.get("index", tool_index))] = [tool_index, False]
            call = ToolCallDelta(index=tool_index, id=block.get("id"), name=block.get("name"))
            return StreamDelta(tool_calls=[call])
        if kind == "text":
            self._cited[int(data.get("index", -1))] = [self._length, []]
            if block.get("text"):
                self._length += len(block["text"])
                return StreamDelta(text=block["text"])
            return None
        if kind == "server_tool_use":
            self._server_tools.add(int(data.get("index", -1)))
            return None
        if kind == "thinking":
            self._thinking[int(data.get("index", -1))] = thinking_block(block)
            return StreamDelta(reasoning=block["thinking"]) if block.get("thinking") else None
        if kind == "redacted_thinking":
            return StreamDelta(thinking_blocks=[thinking_block(block)])
        return None

    def _block_delta(self, data: dict[str, Any]) -> StreamDelta | None:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            piece = delta.get("text", "")
            self._length += len(piece)
            return StreamDelta(text=piece)
        if kind == "citations_delta":
            cited = self._cited.get(int(data.get("index", -1)))
            if cited is not None:
                cited[1].append(delta.get("citation") or {})
            return None
        if kind == "thinking_delta":
            piece = delta.get("thinking", "")
            block = self._thinking.get(int(data.get("index", -1)))
            if block is not None:
                block["thinking"] += piece
            return StreamDelta(reasoning=piece)
        if kind == "signature_delta":
            block = self._thinking.get(int(data.get("index", -1)))
            if block is not None:
                block["signature"] += delta.get("signature", "")
            return None
        if kind == "input_json_delta":
            return self._input_json(data, delta)
        return None

    def _input_json(self, data: dict[str, Any], delta: dict[str, Any]) -> StreamDelta | None:
        """A fragment of a tool call's input: a call's arguments, JSON mode's
        answer text, or a server tool's input (not shown)."""
        index = int(data.get("index", -1))
        if index in self._server_tools:
            return None
        fragment = delta.get("partial_json", "")
        if index in self._json_blocks:
            if not fragment:
                return None
            self._json_blocks[index] = True
            self._length += len(fragment)
            return StreamDelta(text=fragment)
        tool = self._tools.get(index)
        if tool is None:
            raise malformed(self.deployment, json.dumps(data).encode())
        if not fragment:
            return None
        tool[1] = True
        return StreamDelta(tool_calls=[ToolCallDelta(index=tool[0], arguments=fragment)])

    def _block_stop(self, data: dict[str, Any]) -> StreamDelta | None:
        if self._json_blocks.get(int(data.get("index", -1))) is False:
            self._length += 2
            return StreamDelta(text="{}")  # an empty input streams no JSON
        cited = self._cited.pop(int(data.get("index", -1)), None)
        if cited is not None:
            found = url_citations(cited[1], cited[0], self._length)
            return StreamDelta(annotations=found) if found else None
        thinking = self._thinking.pop(int(data.get("index", -1)), None)
        if thinking is not None:
            # Whole and signed only now: the client needs it to continue a tool loop.
            return StreamDelta(thinking_blocks=[thinking])
        tool = self._tools.get(int(data.get("index", -1)))
        if tool is not None and not tool[1]:
            # A call without arguments streams no JSON; "{}" keeps it equal to
            # the non-streamed answer, which always has an input object.
            return StreamDelta(tool_calls=[ToolCallDelta(index=tool[0], arguments="{}")])
        return None

    def _message_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta") or {}
        self.stop_reason = delta.get("stop_reason") or self.stop_reason
        # message_delta usage is cumulative; it may repeat the input counts.
        self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})

    def _message_stop(self, data: dict[str, Any]) -> StreamDelta:
        self.done = True
        json_answer = bool(self._json_blocks) and not self._tools
        return StreamDelta(finish_reason=json_finish(self.stop_reason, json_answer) or "stop",
                           usage=parse_usage(self.usage))

    def _error(self, data: dict[str, Any]) -> None:
        raise error_from_body(None, {}, data, self.deployment)

    def _ignore(self, data: dict[str, Any]) -> None:
        return None

    _handlers: ClassVar[dict[str, Any]] = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "error": _error,
        "ping": _ignore,
    }
