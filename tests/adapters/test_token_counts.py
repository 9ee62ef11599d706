"""Token counts from a provider are whole numbers from 0 to MAX_TOKEN_COUNT; any
other (10**30, 1e30, negative) makes the answer malformed, an
UpstreamServerError like any other field of the wrong shape. 10**30 once gave
the client a 500 (orjson: "Integer exceeds 64-bit range") and lost the ledger
row (SQLite: OverflowError)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.adapters.raw_upstream import raw_server
from tests.adapters.test_answer_shape import ADAPTERS, FAST, _deployment, _request, _sse

from interlock.adapters.base import MAX_TOKEN_COUNT, checked_response
from interlock.adapters.http import HttpClient
from interlock.errors import UpstreamServerError
from interlock.types import ChatRequest, ChatResponse, EmbeddingRequest, Message, TextPart, Usage

# Written into the JSON as it stands: a count past 64 bits, one just past the
# bound, a negative one, and a large one written as a float.
BAD = ["1000000000000000000000000000000", str(MAX_TOKEN_COUNT + 1), "-5", "1e30"]
COUNT = "@COUNT@"


def _whole(provider: str) -> str:
    if provider == "openai":
        return json.dumps({"id": "c", "object": "chat.completion", "model": "gpt-4o",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "hi"}}],
                           "usage": {"prompt_tokens": COUNT, "completion_tokens": 1}})
    if provider == "anthropic":
        return json.dumps({"id": "m", "type": "message", "role": "assistant", "model": "c",
                           "content": [{"type": "text", "text": "hi"}],
                           "stop_reason": "end_turn",
                           "usage": {"input_tokens": COUNT, "output_tokens": 1}})
    return json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]},
                                       "finishReason": "STOP"}], "modelVersion": "m",
                       "usageMetadata": {"promptTokenCount": COUNT,
                                         "candidatesTokenCount": 1}})


def _streamed(provider: str) -> str:
    if provider == "openai":
        head = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
        return (_sse((None, {**head, "choices": [{"index": 0, "delta": {"content": "hi"},
                                                  "finish_reason": "stop"}]}),
                     (None, {**head, "choices": [],
                             "usage": {"prompt_tokens": COUNT, "completion_tokens": 1}}))
                + b"data: [DONE]\n\n").decode()
    if provider == "anthropic":
        return _sse(
            ("message_start", {"type": "message_start", "message": {
                "id": "m", "type": "message", "role": "assistant", "model": "c",
                "content": [], "usage": {"input_tokens": COUNT, "output_tokens": 0}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "hi"}}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": 1}}),
            ("message_stop", {"type": "message_stop"})).decode()
    return _sse((None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]},
                                        "finishReason": "STOP"}], "modelVersion": "m",
                        "usageMetadata": {"promptTokenCount": COUNT,
                                          "candidatesTokenCount": 1}})).decode()


def _with(template: str, count: str) -> bytes:
    return template.replace(f'"{COUNT}"', count).encode()


async def _answer(provider: str, body: bytes, *, stream: bool) -> ChatResponse | None:
    content_type = "text/event-stream" if stream else "application/json"
    async with raw_server(body, content_type=content_type) as base:
        http = HttpClient()
        adapter = ADAPTERS[provider](http)
        deployment = _deployment(provider, base)
        try:
            if not stream:
                response: ChatResponse = await adapter.complete(_request(), deployment, FAST)
                return response
            async for _ in adapter.stream(_request(True), deployment, FAST):
                pass
            return None
        finally:
            await http.aclose()


@pytest.mark.parametrize("count", BAD)
@pytest.mark.parametrize("provider", sorted(ADAPTERS))
async def test_a_whole_answer_with_an_impossible_token_count_is_malformed(
        provider: str, count: str) -> None:
    with pytest.raises(UpstreamServerError, match="token count") as info:
        await _answer(provider, _with(_whole(provider), count), stream=False)
    assert info.value.deployment == f"{provider}-1"


@pytest.mark.parametrize("count", BAD)
@pytest.mark.parametrize("provider", sorted(ADAPTERS))
async def test_a_stream_with_an_impossible_token_count_is_malformed(
        provider: str, count: str) -> None:
    with pytest.raises(UpstreamServerError, match="token count"):
        await _answer(provider, _with(_streamed(provider), count), stream=True)


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
async def test_counts_up_to_the_bound_are_taken_as_sent(provider: str) -> None:
    response = await _answer(provider, _with(_whole(provider), "123456"), stream=False)
    assert response is not None and response.usage is not None
    assert response.usage.input_tokens == 123456


def test_the_bound_holds_for_every_count_of_a_usage() -> None:
    for name in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                 "reasoning_tokens", "web_searches"):
        for value in (-1, MAX_TOKEN_COUNT + 1):
            response = ChatResponse(id="r", model="m", content="hi",
                                    usage=Usage(**{name: value}))
            with pytest.raises((TypeError, ValueError), match="token count"):
                checked_response(response)
        fine = ChatResponse(id="r", model="m", content="hi",
                            usage=Usage(**{name: MAX_TOKEN_COUNT}))
        assert checked_response(fine) is fine


EMBEDDINGS = {
    "openai": {"object": "list", "data": [{"index": 0, "embedding": [0.1, 0.2]}],
               "model": "m", "usage": {"prompt_tokens": COUNT, "total_tokens": COUNT}},
    "gemini": {"embeddings": [{"values": [0.1, 0.2]}], "usageMetadata": {
        "promptTokenCount": COUNT}},
}


@pytest.mark.parametrize("count", BAD)
@pytest.mark.parametrize("provider", sorted(EMBEDDINGS))
async def test_embeddings_with_an_impossible_token_count_are_malformed(
        provider: str, count: str) -> None:
    body = _with(json.dumps(EMBEDDINGS[provider]), count)
    request = EmbeddingRequest(ChatRequest(model="g", messages=[
        Message("user", [TextPart("x")])]), ["hello"])
    async with raw_server(body, content_type="application/json") as base:
        http = HttpClient()
        adapter: Any = ADAPTERS[provider](http)
        try:
            with pytest.raises(UpstreamServerError, match="token count"):
                await adapter.embeddings(request, _deployment(provider, base), FAST)
        finally:
            await http.aclose()
