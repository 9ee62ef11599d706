"""Prompt caching markers (`cache_control`, LiteLLM's form for Anthropic's
prompt caching): sent to Anthropic where its Messages API takes them, refused
by the fake as the real API refuses them, and left out for OpenAI and Gemini,
which cache without markers.

Each request starts as the OpenAI-shaped JSON a LiteLLM user sends, so the
parser's part of the way is tested too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.adapters import test_gemini, test_openai
from tests.adapters.test_anthropic import FAST, GOOD, HEADERS, deployment, sent_body

from interlock.adapters.anthropic import AnthropicAdapter, error_from_response
from interlock.adapters.gemini import GeminiAdapter
from interlock.adapters.http import HttpClient, Labels
from interlock.adapters.openai import OpenAIAdapter
from interlock.errors import BadRequest, InvalidRequest
from interlock.openai_request import parse_chat_request
from interlock.testing import FakeUpstream, Reply
from interlock.types import ChatRequest

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="
WEATHER = {"type": "function",
           "function": {"name": "get_weather", "description": "Weather in a city",
                        "parameters": {"type": "object",
                                       "properties": {"city": {"type": "string"}}}}}


def marked_request(**extra: Any) -> ChatRequest:
    """A conversation with a breakpoint wherever LiteLLM's docs put one: the
    tools, the system prompt, a user's text and a tool's result (four: the most
    Anthropic takes)."""
    return parse_chat_request({
        "model": "m",
        "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "A long style guide.", "cache_control": HOUR}]},
            {"role": "user", "content": [
                {"type": "text", "text": "A long document.", "cache_control": EPHEMERAL},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1",
             "content": [{"type": "text", "text": "18C", "cache_control": EPHEMERAL}]},
        ],
        "tools": [{**WEATHER, "cache_control": HOUR}],
        **extra,
    })


async def test_anthropic_gets_each_marker_where_its_api_takes_it(
        fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, marked_request())
    # The system prompt becomes blocks, since only a block carries a marker.
    assert body["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "A long style guide.", "cache_control": HOUR}]
    assert body["tools"] == [{
        "name": "get_weather", "description": "Weather in a city",
        "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
        "cache_control": HOUR}]
    first, call, result = body["messages"]
    assert first == {"role": "user", "content": [
        {"type": "text", "text": "A long document.", "cache_control": EPHEMERAL},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG.split(",", 1)[1]}},
        {"type": "text", "text": "Weather in Paris?"}]}
    assert "cache_control" not in call["content"][0]
    assert result == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C",
         "cache_control": EPHEMERAL}]}


async def test_without_markers_the_system_prompt_stays_a_string(
        fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, parse_chat_request({
        "model": "m", "messages": [{"role": "system", "content": [{"type": "text", "text": "A"}]},
                                   {"role": "user", "content": "Hi"}]}))
    assert body["system"] == "A"
    assert "cache_control" not in json.dumps(body)


async def test_cached_tokens_come_back_in_the_usage(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="ok", input_tokens=2000, cached_tokens=1500),
                        provider="anthropic")
    http = HttpClient()
    try:
        answer = await AnthropicAdapter(http).complete(marked_request(),
                                                       deployment(fake_upstream), FAST)
    finally:
        await http.aclose()
    assert answer.usage is not None
    assert answer.usage.cached_input_tokens == 1500
    assert answer.usage.input_tokens == 2000


def test_a_marker_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": "ephemeral"}]}]})
    assert info.value.param == "messages[0].content[0].cache_control"


async def _raw(fake: FakeUpstream, body: dict[str, Any]) -> BadRequest | None:
    http = HttpClient()
    try:
        resp = await http.post(fake.base_url("anthropic") + "/v1/messages", headers=HEADERS,
                               body=json.dumps(body).encode(), timeouts=FAST,
                               labels=Labels("anthropic", "raw"))
    finally:
        await http.aclose()
    if resp.status == 200:
        return None
    err = error_from_response(resp.status, resp.headers, resp.body, deployment(fake))
    assert isinstance(err, BadRequest)
    return err


def _text(marker: Any) -> dict[str, Any]:
    return {"type": "text", "text": "x", "cache_control": marker}


@pytest.mark.parametrize(("body", "quote"), [
    ({**GOOD, "system": [_text(EPHEMERAL)],
      "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": HOUR}]}, ""),
    ({**GOOD, "messages": [{"role": "user", "content": [_text(EPHEMERAL)] * 5}]},
     "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    ({**GOOD, "system": [_text({"type": "ephemeral", "ttl": "2h"})]},
     "system.0.cache_control.ephemeral.ttl: Input should be '5m' or '1h'"),
    ({**GOOD, "system": [_text({"type": "persistent"})]},
     "system.0.cache_control.type: Input should be 'ephemeral'"),
    ({**GOOD, "system": [{"type": "text", "text": "x", "cache": EPHEMERAL}]},
     "system.0.cache: Extra inputs are not permitted"),
    ({**GOOD, "tools": [{"name": "t", "input_schema": {}, "parameters": {}}]},
     "tools.0.parameters: Extra inputs are not permitted"),
])
async def test_fake_takes_and_refuses_markers_as_the_real_api_does(
        fake_upstream: FakeUpstream, body: dict[str, Any], quote: str) -> None:
    err = await _raw(fake_upstream, body)
    if not quote:
        assert err is None
        return
    assert err is not None and quote in err.message


async def _sent_elsewhere(fake: FakeUpstream, provider: str) -> dict[str, Any]:
    """Send the marked request to an OpenAI or Gemini deployment; the body it got."""
    base = fake.base_url(provider)
    adapter, dep = ((OpenAIAdapter, test_openai.deployment(base)) if provider == "openai"
                    else (GeminiAdapter, test_gemini.deployment(base)))
    http = HttpClient()
    try:
        answer = await adapter(http).complete(marked_request(), dep, FAST)
    finally:
        await http.aclose()
    assert answer.content  # sent, not refused
    body: dict[str, Any] = fake.received[-1].body
    assert "cache_control" not in json.dumps(body)
    return body


async def test_openai_caches_without_markers_so_none_is_sent(
        fake_upstream: FakeUpstream) -> None:
    sent = await _sent_elsewhere(fake_upstream, "openai")
    # The marked parts themselves still go, only without their markers.
    assert sent["messages"][1]["content"][0] == {"type": "text", "text": "A long document."}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_gemini_leaves_the_markers_out(fake_upstream: FakeUpstream) -> None:
    sent = await _sent_elsewhere(fake_upstream, "gemini")
    assert sent["systemInstruction"]["parts"][0]["text"].startswith("You are terse.")


async def test_a_marked_image_keeps_its_marker(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, parse_chat_request({"model": "m", "messages": [
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": PNG}, "cache_control": EPHEMERAL},
            {"type": "text", "text": "What is this?"}]}]}))
    image, text = body["messages"][0]["content"]
    assert image["type"] == "image" and image["cache_control"] == EPHEMERAL
    assert text == {"type": "text", "text": "What is this?"}
