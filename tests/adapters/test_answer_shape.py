"""A provider answer that is not the shape its API documents is an
UpstreamServerError (a 502 the dispatcher may retry elsewhere), whole or
streamed, for every adapter: never an AttributeError or TypeError that the
gateway would report as its own internal error. Each answer here was a 500
when the gateway was fed mutated provider answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.adapters.raw_upstream import raw_server

from interlock.adapters.anthropic import AnthropicAdapter
from interlock.adapters.base import Adapter, checked_delta
from interlock.adapters.gemini import GeminiAdapter
from interlock.adapters.http import HttpClient, Timeouts
from interlock.adapters.openai import OpenAIAdapter
from interlock.catalog import Deployment, Secret
from interlock.errors import UpstreamServerError
from interlock.types import ChatRequest, Message, StreamDelta, TextPart, ToolCallDelta, Usage

FAST = Timeouts(connect=2, total=10)
ADAPTERS: dict[str, type[Any]] = {"openai": OpenAIAdapter, "anthropic": AnthropicAdapter,
                                  "gemini": GeminiAdapter}
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-20250514",
          "gemini": "gemini-2.5-pro"}


def _deployment(provider: str, base: str) -> Deployment:
    return Deployment(name=f"{provider}-1", group="g", provider=provider,
                      model=MODELS[provider], api_base=base + ("/v1" if provider == "openai"
                                                               else ""),
                      api_key=Secret("test-key"))


def _request(stream: bool = False) -> ChatRequest:
    return ChatRequest(model="g", messages=[Message("user", [TextPart("hi")])], stream=stream)


def _sse(*events: tuple[str | None, dict[str, Any]]) -> bytes:
    return b"".join(((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                     ).encode() for name, data in events)


WHOLE = {
    "openai": {"id": "c", "object": "chat.completion", "model": "gpt-4o",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "hi",
                                        "tool_calls": [5]}}]},
    "anthropic": {"id": "m", "type": "message", "role": "assistant", "model": "claude",
                  "content": [{"type": "text", "text": None}, 5], "stop_reason": "end_turn",
                  "usage": {"input_tokens": 1, "output_tokens": 1}},
    "gemini": {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": 5}]},
                               "finishReason": "STOP"}], "modelVersion": "m"},
}
STREAMED = {
    "openai": _sse((None, {"id": "c", "object": "chat.completion.chunk", "model": "m",
                           "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
                   (None, {"id": "c", "object": "chat.completion.chunk", "model": "m",
                           "choices": [{"index": 0, "delta": {"content": ["x"]},
                                        "finish_reason": None}]})) + b"data: [DONE]\n\n",
    "anthropic": _sse(
        ("message_start", {"type": "message_start", "message": {
            "id": "m", "type": "message", "role": "assistant", "model": "claude",
            "content": [], "usage": {"input_tokens": 1, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": True}}),
        ("message_stop", {"type": "message_stop"})),
    "gemini": _sse((None, {"candidates": [5], "modelVersion": "m"})),
}


async def _call(provider: str, body: bytes, *, stream: bool) -> None:
    content_type = "text/event-stream" if stream else "application/json"
    async with raw_server(body, content_type=content_type) as base:
        http = HttpClient()
        adapter: Adapter = ADAPTERS[provider](http)
        try:
            if stream:
                async for _ in adapter.stream(_request(True), _deployment(provider, base), FAST):
                    pass
            else:
                await adapter.complete(_request(), _deployment(provider, base), FAST)
        finally:
            await http.aclose()


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
async def test_a_whole_answer_of_the_wrong_shape_is_an_upstream_error(provider: str) -> None:
    with pytest.raises(UpstreamServerError, match="not in the shape its API documents") as info:
        await _call(provider, json.dumps(WHOLE[provider]).encode(), stream=False)
    assert info.value.provider == provider and info.value.deployment == f"{provider}-1"


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
async def test_a_streamed_event_of_the_wrong_shape_is_an_upstream_error(provider: str) -> None:
    with pytest.raises(UpstreamServerError) as info:
        await _call(provider, STREAMED[provider], stream=True)
    assert info.value.provider == provider


@pytest.mark.parametrize("delta", [
    StreamDelta(text=True),  # type: ignore[arg-type]
    StreamDelta(text="x", usage=Usage(input_tokens="3")),  # type: ignore[arg-type]
    StreamDelta(finish_reason="eos"),  # type: ignore[arg-type]
    StreamDelta(tool_calls=[ToolCallDelta(index=0, arguments=None)]),  # type: ignore[arg-type]
])
def test_checked_delta_refuses_fields_the_layers_above_cannot_use(delta: StreamDelta) -> None:
    with pytest.raises(TypeError):
        checked_delta(delta)


def test_checked_delta_passes_a_well_formed_delta_through() -> None:
    delta = StreamDelta(text="hi", usage=Usage(input_tokens=3, output_tokens=1),
                        finish_reason="stop",
                        tool_calls=[ToolCallDelta(index=0, id="c", name="f", arguments="{}")])
    assert checked_delta(delta) is delta
