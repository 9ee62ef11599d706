"""The Anthropic adapter against the fake upstream: request translation, response
translation, streaming, and every error class."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from interlock.adapters.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicAdapter,
    StreamState,
    error_from_response,
    parse_message,
    parse_usage,
    ratelimit_reset_after,
)
from interlock.adapters.base import ServerSentEvent, StreamAccumulator
from interlock.adapters.http import HttpClient, Labels, Timeouts
from interlock.catalog import Deployment, Secret
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Timeout,
    UnprocessableEntity,
    UnsupportedParameter,
    UpstreamServerError,
)
from interlock.testing import FakeUpstream, Fault, Reply, ScriptedToolCall
from interlock.testing.anthropic_wire import AnthropicWire
from interlock.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    ResponseFormat,
    StreamDelta,
    TextPart,
    ToolCall,
    ToolSpec,
)
from interlock.web_search import url_citation

KEY = "sk-ant-api03-Zx9TestKeyThatMustNeverLeak0123456789"
MODEL = "claude-sonnet-4-20250514"
FAST = Timeouts(connect=2.0, total=5.0)


def deployment(fake: FakeUpstream, **overrides: Any) -> Deployment:
    fields: dict[str, Any] = {
        "name": "claude-primary", "group": "high-quality", "provider": "anthropic",
        "model": MODEL, "api_base": fake.base_url("anthropic"), "api_key": Secret(KEY),
    }
    fields.update(overrides)
    return Deployment(**fields)


def user(text: str) -> Message:
    return Message("user", [TextPart(text)])


def request(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model="high-quality", messages=list(messages) or [user("Hi")], **fields)


async def sent_body(fake: FakeUpstream, req: ChatRequest, **dep: Any) -> dict[str, Any]:
    """Send one request and return the JSON body the fake received."""
    http = HttpClient()
    try:
        await AnthropicAdapter(http).complete(req, deployment(fake, **dep), FAST)
    finally:
        await http.aclose()
    assert len(fake.received) == 1
    body: dict[str, Any] = fake.received[0].body
    return body


async def complete(fake: FakeUpstream, req: ChatRequest, **dep: Any) -> ChatResponse:
    http = HttpClient()
    try:
        return await AnthropicAdapter(http).complete(req, deployment(fake, **dep), FAST)
    finally:
        await http.aclose()


async def stream(fake: FakeUpstream, req: ChatRequest, timeouts: Timeouts = FAST,
                 **dep: Any) -> list[StreamDelta]:
    http = HttpClient()
    try:
        deltas: AsyncIterator[StreamDelta] = AnthropicAdapter(http).stream(
            req, deployment(fake, **dep), timeouts)
        return [d async for d in deltas]
    finally:
        await http.aclose()


def folded(deltas: list[StreamDelta]) -> ChatResponse:
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    return acc.response()


def comparable(resp: ChatResponse) -> dict[str, Any]:
    out = dataclasses.asdict(resp)
    out.pop("id")
    out.pop("created")
    return out


# -- request translation -----------------------------------------------------

async def test_url_and_headers(fake_upstream: FakeUpstream) -> None:
    await sent_body(fake_upstream, request())
    got = fake_upstream.received[0]
    assert (got.method, got.path) == ("POST", "/v1/messages")
    assert got.headers["x-api-key"] == KEY
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["content-type"] == "application/json"
    assert "authorization" not in got.headers


async def test_anthropic_version_can_be_overridden(fake_upstream: FakeUpstream) -> None:
    await sent_body(fake_upstream, request(), extra={"anthropic_version": "2024-01-01"})
    assert fake_upstream.received[0].headers["anthropic-version"] == "2024-01-01"


async def test_base_url_from_environment(fake_upstream: FakeUpstream,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_upstream.base_url("anthropic") + "/")
    body = await sent_body(fake_upstream, request(), api_base=None)
    assert body["model"] == MODEL


async def test_minimal_body(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(user("Hello")))
    assert body == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }


async def test_system_goes_top_level_and_same_roles_merge(fake_upstream: FakeUpstream) -> None:
    req = request(
        Message("system", [TextPart("You are terse.")]),
        user("First."),
        Message("system", [TextPart("Answer in French.")]),
        user("Second."),
        Message("assistant", [TextPart("Un.")]),
        Message("assistant", [TextPart("Deux.")]),
        user("Third."),
    )
    body = await sent_body(fake_upstream, req)
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "First."},
                                     {"type": "text", "text": "Second."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Un."},
                                          {"type": "text", "text": "Deux."}]},
        {"role": "user", "content": [{"type": "text", "text": "Third."}]},
    ]


async def test_a_request_of_system_messages_only_sends_them_as_the_user_s_turn(
        fake_upstream: FakeUpstream) -> None:
    # OpenAI answers it; Anthropic refuses a request without messages (a 400).
    only = request(Message("system", [TextPart("List three colours.")]))
    body = await sent_body(fake_upstream, only)
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "List three colours."}]}]
    assert "system" not in body


async def test_images_data_url_and_http_url(fake_upstream: FakeUpstream) -> None:
    req = request(Message("user", [
        TextPart("What is in these?"),
        ImagePart("data:image/png;base64,iVBORw0KGgo="),
        ImagePart("https://example.com/cat.jpg"),
    ]))
    body = await sent_body(fake_upstream, req)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_a_jpg_data_url_goes_as_image_jpeg(fake_upstream: FakeUpstream) -> None:
    # Anthropic takes the registered type only; "image/jpg" was a 400 there.
    body = await sent_body(fake_upstream, request(Message("user", [
        ImagePart("data:image/JPG;base64,/9j/4AAQ")])))
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                     "data": "/9j/4AAQ"}}]


WEATHER = ToolSpec("get_weather", "Weather for a city",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})


async def test_tools_calls_and_grouped_results(fake_upstream: FakeUpstream) -> None:
    req = request(
        user("Weather in Paris and Rome?"),
        Message("assistant", [TextPart("Checking.")], tool_calls=[
            ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("toolu_2", "get_weather", '{"city": "Rome"}'),
        ]),
        Message("tool", [TextPart("18C")], tool_call_id="toolu_1"),
        Message("tool", [TextPart("24C")], tool_call_id="toolu_2"),
        user("Which is warmer?"),
        tools=[WEATHER, ToolSpec("now")],
    )
    body = await sent_body(fake_upstream, req)
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": WEATHER.parameters},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
             "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
            {"type": "text", "text": "Which is warmer?"},
        ]},
    ]


async def test_tool_results_come_first_in_a_merged_user_turn(fake_upstream: FakeUpstream) -> None:
    # OpenAI allows a user message between a call and its result; Anthropic
    # wants the tool_result blocks before anything else in the user turn.
    req = request(
        user("Weather in Paris and Rome?"),
        Message("assistant", [], tool_calls=[
            ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("toolu_2", "get_weather", '{"city": "Rome"}'),
        ]),
        user("Quickly, please."),
        Message("tool", [TextPart("18C")], tool_call_id="toolu_1"),
        user("In Celsius."),
        Message("tool", [TextPart("24C")], tool_call_id="toolu_2"),
        tools=[WEATHER],
    )
    body = await sent_body(fake_upstream, req)
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
        {"type": "text", "text": "Quickly, please."},
        {"type": "text", "text": "In Celsius."},
    ]}
    assert len(body["messages"]) == 3


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"name": "get_weather"}, None, {"type": "tool", "name": "get_weather"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, True, None),
])
async def test_tool_choice(fake_upstream: FakeUpstream, choice: Any, parallel: bool | None,
                           expected: dict[str, Any] | None) -> None:
    body = await sent_body(fake_upstream, request(tools=[WEATHER], tool_choice=choice,
                                                  parallel_tool_calls=parallel))
    assert body.get("tool_choice") == expected


async def test_tool_choice_without_tools_is_not_sent(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(tool_choice="none"))
    assert "tool_choice" not in body and "tools" not in body


async def test_sampling_stop_user_and_max_tokens(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(
        temperature=0.3, top_p=0.9, stop=["END", "STOP"], user="user-42", max_tokens=77))
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END", "STOP"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["max_tokens"] == 77


async def test_max_tokens_falls_back_to_the_deployment(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(), max_output_tokens=1234)
    assert body["max_tokens"] == 1234


async def test_whitespace_only_stop_is_refused_or_dropped(fake_upstream: FakeUpstream) -> None:
    # Anthropic answers 400 "each stop sequence must contain non-whitespace".
    with pytest.raises(UnsupportedParameter) as info:
        await complete(fake_upstream, request(stop=["END", "\n"]))
    assert info.value.param == "stop"
    assert "'anthropic'" in str(info.value) and "whitespace" in str(info.value)
    assert fake_upstream.received == []
    body = await sent_body(fake_upstream, request(stop=["\n", "END", " \t"], drop_params=True))
    assert body["stop_sequences"] == ["END"]
    fake_upstream.reset()
    body = await sent_body(fake_upstream, request(stop=["\n\n"]), drop_params=True)
    assert "stop_sequences" not in body


async def test_json_schema_becomes_output_config(fake_upstream: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}},
              "required": ["a"], "additionalProperties": False}
    fmt = ResponseFormat("json_schema", json_schema={"name": "thing", "schema": schema})
    body = await sent_body(fake_upstream, request(response_format=fmt))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_json_mode_is_a_tool_claude_must_call_and_its_input_the_answer(
        fake_upstream: FakeUpstream) -> None:
    asked = request(response_format=ResponseFormat("json_object"))
    body = await sent_body(fake_upstream, asked)
    assert body["tools"] == [{
        "name": "json_answer",
        "description": "Give your whole answer as this tool's input: one JSON object.",
        "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "tool", "name": "json_answer"}
    fake_upstream.reset()
    answer = {"city": "Paris", "days": [1, 2], "note": "\"quoted\" é"}
    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("json_answer", answer)]),
                        provider="anthropic")
    whole = await complete(fake_upstream, asked)
    assert (whole.finish_reason, whole.tool_calls) == ("stop", [])
    assert whole.content is not None and json.loads(whole.content) == answer
    assert "é" in whole.content  # as the streamed text has it, not escaped
    streamed = folded(await stream(fake_upstream, asked))
    assert (streamed.finish_reason, streamed.tool_calls) == ("stop", [])
    assert streamed.content is not None and json.loads(streamed.content) == answer
    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("json_answer", {})]),
                        provider="anthropic")
    assert folded(await stream(fake_upstream, asked)).content == "{}"
    # A client's own tool of that name, without JSON mode, is a tool call as any.
    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("json_answer", answer)]),
                        provider="anthropic")
    own = await complete(fake_upstream, request(tools=[ToolSpec("json_answer", None, {})]))
    assert own.finish_reason == "tool_calls" and own.tool_calls[0].name == "json_answer"


async def test_json_mode_with_thinking_is_refused_or_sent_without_the_tool(
        fake_upstream: FakeUpstream) -> None:
    # Anthropic refuses a forced tool while thinking: said here, before any call.
    asked = request(response_format=ResponseFormat("json_object"),
                    extra={"reasoning_effort": "low"})
    with pytest.raises(UnsupportedParameter) as info:
        await complete(fake_upstream, asked)
    assert info.value.param == "response_format" and "thinking" in info.value.message
    assert fake_upstream.received == []
    body = await sent_body(fake_upstream, asked, drop_params=True)
    assert "tools" not in body and "tool_choice" not in body and "thinking" in body


UNSUPPORTED = [
    ("frequency_penalty", {"extra": {"frequency_penalty": 0.5}}),
    ("presence_penalty", {"extra": {"presence_penalty": 1}}),
    ("seed", {"extra": {"seed": 7}}),
    ("logprobs", {"extra": {"logprobs": True}}),
    ("n", {"n": 2}),
    # OpenAI's JSON mode goes to Claude as a forced tool, which cannot join others.
    ("response_format", {"response_format": ResponseFormat("json_object"), "tools": [WEATHER]}),
]


@pytest.mark.parametrize(("param", "fields"), UNSUPPORTED)
async def test_unsupported_parameter_is_refused(fake_upstream: FakeUpstream, param: str,
                                                fields: dict[str, Any]) -> None:
    http = HttpClient()
    try:
        with pytest.raises(UnsupportedParameter) as info:
            await AnthropicAdapter(http).complete(request(**fields), deployment(fake_upstream),
                                                  FAST)
    finally:
        await http.aclose()
    assert info.value.param == param
    assert info.value.provider == "anthropic"
    assert repr(param) in str(info.value) and "'anthropic'" in str(info.value)
    assert fake_upstream.received == []


@pytest.mark.parametrize(("param", "fields"), UNSUPPORTED)
@pytest.mark.parametrize("where", ["request", "deployment"])
async def test_unsupported_parameter_dropped_with_drop_params(
        fake_upstream: FakeUpstream, param: str, fields: dict[str, Any], where: str) -> None:
    if where == "request":
        body = await sent_body(fake_upstream, request(drop_params=True, **fields))
    else:
        body = await sent_body(fake_upstream, request(**fields), drop_params=True)
    assert param not in body
    assert "output_config" not in body
    kept = {"tools"} if "tools" in fields else set()  # the request's own, not JSON mode's
    assert set(body) == {"model", "max_tokens", "messages"} | kept
    assert body.get("tools", [{}])[0].get("name") != "json_answer"


async def test_no_op_values_and_anthropic_extras_are_accepted(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(n=1, extra={
        "frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": False, "seed": None,
        "stream_options": {"include_usage": True}, "top_k": 5}))
    assert body["top_k"] == 5
    assert not {"frequency_penalty", "presence_penalty", "logprobs", "seed", "n",
                "stream_options"} & set(body)


# -- response translation ----------------------------------------------------

async def test_text_response_field_by_field(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="Bonjour!", input_tokens=31, output_tokens=4),
                        provider="anthropic")
    resp = await complete(fake_upstream, request())
    assert resp.id.startswith("msg_")
    assert resp.model == MODEL
    assert resp.content == "Bonjour!"
    assert resp.tool_calls == []
    assert resp.finish_reason == "stop"
    assert resp.reasoning is None
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (31, 4)
    assert (resp.usage.cached_input_tokens, resp.usage.cache_write_tokens) == (0, 0)


async def test_tool_call_response(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(tool_calls=[
        ScriptedToolCall("get_weather", {"city": "Paris"}, id="toolu_A"),
        ScriptedToolCall("get_weather", {"city": "Rome", "unit": "C"}),
    ]), provider="anthropic")
    resp = await complete(fake_upstream, request(tools=[WEATHER]))
    assert resp.finish_reason == "tool_calls"
    assert resp.content is None
    assert (resp.tool_calls[0].id, resp.tool_calls[0].name) == ("toolu_A", "get_weather")
    assert resp.tool_calls[1].id.startswith("toolu_")
    assert [json.loads(c.arguments) for c in resp.tool_calls] == [
        {"city": "Paris"}, {"city": "Rome", "unit": "C"}]


@pytest.mark.parametrize(("finish", "expected"), [
    ("length", "length"), ("content_filter", "content_filter"), ("stop", "stop")])
async def test_finish_reasons(fake_upstream: FakeUpstream, finish: str, expected: str) -> None:
    fake_upstream.reply(Reply(text="x", finish=finish), provider="anthropic")
    assert (await complete(fake_upstream, request())).finish_reason == expected
    assert folded(await stream(fake_upstream, request())).finish_reason == expected


@pytest.mark.parametrize("streamed", [False, True])
async def test_refusal_on_a_200(fake_upstream: FakeUpstream, streamed: bool) -> None:
    # A streamed refusal arrives as SSE, ending with stop_reason "refusal".
    fake_upstream.script(Fault(status=200, kind="safety"), provider="anthropic")
    if streamed:
        resp = folded(await stream(fake_upstream, request()))
    else:
        resp = await complete(fake_upstream, request())
    assert resp.finish_reason == "content_filter"
    assert resp.content == ""


async def test_scripted_refusal_is_a_refusal_stop_reason(fake_upstream: FakeUpstream) -> None:
    # Anthropic's streaming classifiers end the answer with stop_reason
    # "refusal" and no message of their own.
    fake_upstream.reply(Reply(refusal="I can't help with that."), provider="anthropic")
    whole = await complete(fake_upstream, request())
    assert (whole.finish_reason, whole.content) == ("content_filter", "")
    assert whole.usage is not None and whole.usage.output_tokens > 0
    assert comparable(folded(await stream(fake_upstream, request()))) == comparable(whole)


async def test_usage_with_cache_reads(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="ok", input_tokens=1000, cached_tokens=600, output_tokens=9),
                        provider="anthropic")
    for resp in (await complete(fake_upstream, request()),
                 folded(await stream(fake_upstream, request()))):
        assert resp.usage is not None
        assert resp.usage.input_tokens == 1000
        assert resp.usage.cached_input_tokens == 600
        assert resp.usage.output_tokens == 9


def test_usage_counts_cache_writes_as_input() -> None:
    usage = parse_usage({"input_tokens": 50, "cache_creation_input_tokens": 2000,
                         "cache_read_input_tokens": 300, "output_tokens": 12})
    assert usage.input_tokens == 2350
    assert usage.cached_input_tokens == 300
    assert usage.cache_write_tokens == 2000
    assert usage.output_tokens == 12


# -- streaming ---------------------------------------------------------------

async def test_streamed_text_equals_non_streamed(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="The quick brown fox jumps over the lazy dog.",
                              input_tokens=20, output_tokens=11, chunk_chars=5),
                        provider="anthropic")
    whole = await complete(fake_upstream, request())
    deltas = await stream(fake_upstream, request())
    assert fake_upstream.received[1].body["stream"] is True
    assert deltas[0].id is not None and deltas[0].id.startswith("msg_")
    assert deltas[0].model == MODEL
    assert len([d for d in deltas if d.text]) == 9
    assert deltas[-1].usage is not None and deltas[-1].finish_reason == "stop"
    assert comparable(folded(deltas)) == comparable(whole)


async def test_streamed_parallel_tool_calls_equal_non_streamed(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="Let me look.", tool_calls=[
        ScriptedToolCall("get_weather", {"city": "Paris"}),
        ScriptedToolCall("get_weather", {"city": "Rome"}),
        ScriptedToolCall("now", {}),
    ], chunk_chars=4), provider="anthropic")
    whole = await complete(fake_upstream, request(tools=[WEATHER]))
    deltas = await stream(fake_upstream, request(tools=[WEATHER]))
    calls = [tc for d in deltas for tc in d.tool_calls]
    starts = [tc for tc in calls if tc.name]
    assert [(tc.index, tc.name) for tc in starts] == [
        (0, "get_weather"), (1, "get_weather"), (2, "now")]
    assert all(tc.id and tc.id.startswith("toolu_") for tc in starts)
    # Arguments come in several fragments per call, never with the id repeated.
    assert len([tc for tc in calls if tc.index == 0 and tc.arguments]) > 1
    assert all(tc.id is None for tc in calls if tc.arguments)
    result = folded(deltas)
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[2].arguments == "{}"
    assert comparable(result) == comparable(whole)


async def test_streamed_reasoning_equals_non_streamed(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="42", reasoning_tokens=15), provider="anthropic")
    whole = await complete(fake_upstream, request())
    deltas = await stream(fake_upstream, request())
    result = folded(deltas)
    assert whole.reasoning and whole.content == "42"
    # The signed block, whole, so that a tool loop can send it back.
    assert whole.thinking_blocks == [{"type": "thinking", "thinking": whole.reasoning,
                                      "signature": "c2ltdWxhdGVkIHNpZ25hdHVyZQ=="}]
    assert [d.thinking_blocks for d in deltas if d.thinking_blocks] == [whole.thinking_blocks]
    assert comparable(result) == comparable(whole)


async def test_thinking_blocks_go_back_first_in_their_assistant_turn(
        fake_upstream: FakeUpstream) -> None:
    # With thinking on, Anthropic refuses a tool loop whose assistant turn does
    # not start with the signed thinking block it answered with.
    signed = {"type": "thinking", "thinking": "Need the weather.", "signature": "c2ln"}
    hidden = {"type": "redacted_thinking", "data": "ZW5j"}
    req = request(
        user("Weather in Paris?"),
        Message("assistant", [], tool_calls=[ToolCall("toolu_1", "get_weather", "{}")],
                thinking_blocks=[signed, hidden]),
        Message("tool", [TextPart("18C")], tool_call_id="toolu_1"),
        tools=[WEATHER], extra={"thinking": {"type": "enabled", "budget_tokens": 1024}})
    body = await sent_body(fake_upstream, req)
    assert body["messages"][1]["content"] == [
        signed, hidden, {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                         "input": {}}]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


# -- errors ------------------------------------------------------------------

ERROR_CASES = [
    (Fault(status=400, kind="context_window"), ContextWindowExceeded, "prompt is too long"),
    (Fault(status=400), BadRequest, "Invalid request"),
    (Fault(status=400, kind="safety"), ContentFiltered, "content filtering policy"),
    (Fault(status=401), AuthenticationFailed, "invalid x-api-key"),
    (Fault(status=403), PermissionDenied, "permission"),
    (Fault(status=404), NotFound, f"model: {MODEL}"),
    (Fault(status=422), UnprocessableEntity, "Invalid request"),
    (Fault(status=429, retry_after=7), RateLimited, "rate limit"),
    (Fault(status=500), UpstreamServerError, "Internal server error"),
    # Sent with api_error, a 503 is still Overloaded, as from the other providers.
    (Fault(status=503), Overloaded, "Internal server error"),
    (Fault(status=529), Overloaded, "Overloaded"),
]


def assert_error(err: ProviderError, status: int | None, quote: str) -> None:
    assert err.provider == "anthropic"
    assert err.deployment == "claude-primary"
    assert err.status == status
    assert quote in err.message
    # Named as the other adapters name it: in a group of several, which one failed.
    assert err.message.startswith("anthropic ")
    assert " for deployment 'claude-primary' (" in err.message
    for text in (str(err), repr(err), json.dumps(err.body)):
        assert KEY not in text


@pytest.mark.parametrize(("fault", "cls", "quote"), ERROR_CASES)
@pytest.mark.parametrize("streamed", [False, True])
async def test_http_errors(fake_upstream: FakeUpstream, fault: Fault, cls: type[ProviderError],
                           quote: str, streamed: bool) -> None:
    fake_upstream.script(fault, provider="anthropic")
    with pytest.raises(ProviderError) as info:
        if streamed:
            await stream(fake_upstream, request())
        else:
            await complete(fake_upstream, request())
    assert type(info.value) is cls
    assert_error(info.value, fault.status, quote)
    expected_retry = fault.retry_after if fault.status == 429 else None
    assert info.value.retry_after == expected_retry


async def test_key_echoed_by_upstream_is_redacted(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=401, message=f"invalid x-api-key: {KEY}"),
                         provider="anthropic")
    with pytest.raises(AuthenticationFailed) as info:
        await complete(fake_upstream, request())
    assert_error(info.value, 401, "invalid x-api-key")


async def test_missing_key_is_refused_like_the_real_api(fake_upstream: FakeUpstream) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await complete(fake_upstream, request(), api_key=None)
    assert "x-api-key header is required" in info.value.message


HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01",
           "content-type": "application/json"}
GOOD = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(("drop_header", "drop_field", "status", "quote"), [
    (None, "max_tokens", 400, "max_tokens: Field required"),
    (None, "messages", 400, "messages: Field required"),
    ("anthropic-version", None, 400, "anthropic-version: header is required"),
    ("x-api-key", None, 401, "x-api-key header is required"),
    (None, None, 200, ""),
])
async def test_fake_refuses_what_the_real_api_refuses(
        fake_upstream: FakeUpstream, drop_header: str | None, drop_field: str | None,
        status: int, quote: str) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != drop_header}
    body = {k: v for k, v in GOOD.items() if k != drop_field}
    # A scripted fault must not win over a refusal the real API gives first.
    fake_upstream.script(Fault(status=529), provider="anthropic")
    http = HttpClient()
    try:
        resp = await http.post(fake_upstream.base_url("anthropic") + "/v1/messages",
                               headers=headers, body=json.dumps(body).encode(),
                               timeouts=FAST, labels=Labels("anthropic", "raw"))
    finally:
        await http.aclose()
    if status == 200:
        assert resp.status == 529
        return
    assert resp.status == status
    err = error_from_response(resp.status, resp.headers, resp.body, deployment(fake_upstream))
    assert quote in err.message
    assert type(err) is (AuthenticationFailed if status == 401 else BadRequest)


@pytest.mark.parametrize(("messages", "quote"), [
    ([], "messages: at least one message is required"),
    ([{"role": "user", "content": ""}, {"role": "assistant", "content": "Hi"}],
     "messages.0: all messages must have non-empty content except for the optional final"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": []}], ""),
])
async def test_fake_refuses_an_empty_conversation_or_message(
        fake_upstream: FakeUpstream, messages: list[Any], quote: str) -> None:
    http = HttpClient()
    try:
        resp = await http.post(fake_upstream.base_url("anthropic") + "/v1/messages",
                               headers=HEADERS,
                               body=json.dumps({**GOOD, "messages": messages}).encode(),
                               timeouts=FAST, labels=Labels("anthropic", "raw"))
    finally:
        await http.aclose()
    if not quote:  # an empty last assistant turn is a prefill: accepted
        assert resp.status == 200
        return
    assert resp.status == 400
    err = error_from_response(resp.status, resp.headers, resp.body, deployment(fake_upstream))
    assert quote in err.message


@pytest.mark.parametrize(("extra", "path"), [
    ({"max_completion_tokens": 10}, "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": "Hi", "name": "ann"}]}, "messages.0.name"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi",
                                                 "image_url": "x"}]}]},
     "messages.0.content.0.image_url"),
])
async def test_fake_refuses_fields_the_real_api_does_not_know(
        fake_upstream: FakeUpstream, extra: dict[str, Any], path: str) -> None:
    # So that a translation inventing a field fails here, as it would there.
    http = HttpClient()
    try:
        resp = await http.post(fake_upstream.base_url("anthropic") + "/v1/messages",
                               headers=HEADERS, body=json.dumps({**GOOD, **extra}).encode(),
                               timeouts=FAST, labels=Labels("anthropic", "raw"))
    finally:
        await http.aclose()
    assert resp.status == 400
    err = error_from_response(resp.status, resp.headers, resp.body, deployment(fake_upstream))
    assert f"{path}: Extra inputs are not permitted" in err.message


@pytest.mark.parametrize("bad", [
    {"messages": [Message("user", [ImagePart("data:image/png,notbase64")])]},
    {"messages": [Message("user", [ImagePart("data:image/bmp;base64,Qk0=")])]},
    {"messages": [Message("assistant", tool_calls=[ToolCall("t1", "f", "{not json")])]},
    {"tool_choice": "sometimes", "tools": [WEATHER]},
    {"tool_choice": {"type": "function"}, "tools": [WEATHER]},
])
async def test_untranslatable_requests_are_invalid(fake_upstream: FakeUpstream,
                                                   bad: dict[str, Any]) -> None:
    messages = bad.pop("messages", [user("Hi")])
    http = HttpClient()
    try:
        with pytest.raises(InvalidRequest) as info:
            await AnthropicAdapter(http).complete(request(*messages, **bad),
                                                  deployment(fake_upstream), FAST)
    finally:
        await http.aclose()
    assert info.value.param in ("messages", "tool_choice")
    assert fake_upstream.received == []


async def test_tool_result_without_output_has_no_content(fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(
        user("Ping the server"),
        Message("assistant", tool_calls=[ToolCall("toolu_9", "ping", "")]),
        Message("tool", [], tool_call_id="toolu_9"),
    ))
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_9", "name": "ping", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
    ]


@pytest.mark.parametrize(("parts", "blocks"), [
    # Two files read: joined into one string they ran together.
    ([TextPart("first file."), TextPart("second file.")],
     [{"type": "text", "text": "first file."}, {"type": "text", "text": "second file."}]),
    # A screenshot tool's answer: the caption and the image stay separate blocks,
    # and the image's "jpg" is sent as the type Anthropic takes.
    ([TextPart("The login page:"), ImagePart("data:image/jpg;base64,/9j/4AAQ")],
     [{"type": "text", "text": "The login page:"},
      {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                   "data": "/9j/4AAQ"}}]),
], ids=["texts", "text-and-image"])
async def test_a_tool_result_of_several_parts_keeps_them_apart(
        fake_upstream: FakeUpstream, parts: list[Any], blocks: list[dict[str, Any]]) -> None:
    body = await sent_body(fake_upstream, request(
        user("Use the tool"),
        Message("assistant", tool_calls=[ToolCall("toolu_7", "tool", "{}")]),
        Message("tool", parts, tool_call_id="toolu_7"),
    ))
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_7", "content": blocks}]}


@pytest.mark.parametrize("media_type", ["image/bmp", "image/tiff", "image/svg+xml"])
async def test_an_image_type_anthropic_lacks_is_a_clear_400(fake_upstream: FakeUpstream,
                                                            media_type: str) -> None:
    # Anthropic would answer 400 too, but without saying which types it takes.
    http = HttpClient()
    try:
        with pytest.raises(InvalidRequest) as info:
            await AnthropicAdapter(http).complete(
                request(Message("user", [ImagePart(f"data:{media_type};base64,Qk0=")])),
                deployment(fake_upstream), FAST)
    finally:
        await http.aclose()
    err = info.value
    assert (err.status_code, err.param, err.code) == (400, "messages", "unsupported_image_type")
    for named in ("Anthropic", media_type, "image/jpeg", "image/png", "image/gif",
                  "image/webp"):
        assert named in str(err)
    assert fake_upstream.received == []


def test_retry_after_from_ratelimit_reset_headers(fake_upstream: FakeUpstream) -> None:
    now = 1_760_000_000.0
    headers = {
        "anthropic-ratelimit-requests-remaining": "12",
        "anthropic-ratelimit-requests-reset": "2025-10-09T08:53:50Z",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2025-10-09T08:53:40Z",
    }
    # Only the exhausted limit (tokens) counts: 08:53:40Z is now + 20 s.
    assert ratelimit_reset_after(headers, now=now) == pytest.approx(20.0)
    assert ratelimit_reset_after({}, now=now) is None
    body = json.dumps({"type": "error", "error": {"type": "rate_limit_error",
                                                  "message": "slow down"}}).encode()
    err = error_from_response(429, headers, body, deployment(fake_upstream))
    assert isinstance(err, RateLimited)
    assert err.retry_after is not None and err.retry_after >= 0
    err = error_from_response(429, {"retry-after": "3", **headers}, body,
                              deployment(fake_upstream))
    assert err.retry_after == 3.0


async def test_fake_429_carries_ratelimit_reset_headers(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=429, retry_after=30), provider="anthropic")
    http = HttpClient()
    try:
        resp = await http.post(fake_upstream.base_url("anthropic") + "/v1/messages",
                               headers=HEADERS, body=json.dumps(GOOD).encode(),
                               timeouts=FAST, labels=Labels("anthropic", "raw"))
    finally:
        await http.aclose()
    assert resp.status == 429
    assert resp.headers["retry-after"] == "30"
    assert resp.headers["anthropic-ratelimit-requests-remaining"] == "0"
    # Without Retry-After the adapter falls back to the exhausted limit's reset time.
    headers = {k.lower(): v for k, v in resp.headers.items() if k.lower() != "retry-after"}
    err = error_from_response(429, headers, resp.body, deployment(fake_upstream))
    assert isinstance(err, RateLimited)
    assert err.retry_after is not None and 28.0 <= err.retry_after <= 31.0


def test_fake_error_names_one_request_id_in_header_and_body() -> None:
    answer = AnthropicWire().error(529, Fault(status=529), None)
    assert answer.body["request_id"].startswith("req_")
    assert answer.headers["request-id"] == answer.body["request_id"]


async def test_error_event_mid_stream(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="partial answer", finish="error"), provider="anthropic")
    seen: list[StreamDelta] = []
    http = HttpClient()
    try:
        with pytest.raises(Overloaded) as info:
            async for d in AnthropicAdapter(http).stream(request(), deployment(fake_upstream),
                                                         FAST):
                seen.append(d)
    finally:
        await http.aclose()
    assert any(d.text for d in seen)
    assert_error(info.value, 529, "Overloaded")


async def test_error_body_on_a_200_is_an_error(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(finish="error"), provider="anthropic")
    with pytest.raises(Overloaded):
        await complete(fake_upstream, request())


@pytest.mark.parametrize("streamed", [False, True])
async def test_timeout(fake_upstream: FakeUpstream, streamed: bool) -> None:
    fake_upstream.script(Fault(latency=1.0), provider="anthropic")
    short = Timeouts(connect=1.0, total=0.2, first_token=0.2)
    http = HttpClient()
    try:
        adapter = AnthropicAdapter(http)
        with pytest.raises(Timeout) as info:
            if streamed:
                [d async for d in adapter.stream(request(), deployment(fake_upstream), short)]
            else:
                await adapter.complete(request(), deployment(fake_upstream), short)
    finally:
        await http.aclose()
    assert info.value.provider == "anthropic"
    assert info.value.deployment == "claude-primary"


@pytest.mark.parametrize("streamed", [False, True])
async def test_connection_refused(fake_upstream: FakeUpstream, streamed: bool) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    closed = f"http://127.0.0.1:{port}"
    with pytest.raises(ConnectionFailed) as info:
        if streamed:
            await stream(fake_upstream, request(), api_base=closed)
        else:
            await complete(fake_upstream, request(), api_base=closed)
    assert info.value.provider == "anthropic"
    assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_malformed_chunk(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="a fairly long answer to cut", chunk_chars=3),
                        provider="anthropic")
    fake_upstream.script(Fault(malformed_at=3), provider="anthropic")
    with pytest.raises(UpstreamServerError) as info:
        await stream(fake_upstream, request())
    assert "malformed" in info.value.message
    assert info.value.deployment == "claude-primary"


async def test_disconnect_mid_stream(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="a fairly long answer to cut", chunk_chars=3),
                        provider="anthropic")
    fake_upstream.script(Fault(disconnect_after=4), provider="anthropic")
    with pytest.raises(ConnectionFailed) as info:
        await stream(fake_upstream, request())
    assert info.value.deployment == "claude-primary"
    assert "before its answer was complete, for deployment 'claude-primary'" in str(
        info.value)
    assert "400" not in str(info.value)


async def test_clean_end_without_message_stop_is_not_truncated_silently(
        fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    whole_stream = AnthropicWire.stream

    def without_the_end(self: AnthropicWire, route: Any, body: Any, reply: Reply) -> list[bytes]:
        frames = whole_stream(self, route, body, reply)
        assert frames[-1].startswith(b"event: message_stop")
        return frames[:-1]

    monkeypatch.setattr(AnthropicWire, "stream", without_the_end)
    with pytest.raises(ConnectionFailed) as info:
        await stream(fake_upstream, request())
    assert "message_stop" in info.value.message



# -- reasoning_effort ----------------------------------------------------------------
@pytest.mark.parametrize(("effort", "budget"), [
    ("minimal", 1_024), ("low", 1_024), ("medium", 8_192), ("high", 24_576),
    ("xhigh", 32_768),
])
async def test_reasoning_effort_turns_thinking_on_with_its_budget(
        fake_upstream: FakeUpstream, effort: str, budget: int) -> None:
    body = await sent_body(fake_upstream, request(extra={"reasoning_effort": effort}))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    # Interlock chose max_tokens, so it grows to hold the thinking and a usual answer.
    assert body["max_tokens"] == budget + DEFAULT_MAX_TOKENS
    assert "reasoning_effort" not in body


async def test_reasoning_effort_keeps_a_max_tokens_that_holds_it_and_refuses_one_that_cannot(
        fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream,
                           request(max_tokens=30_000, extra={"reasoning_effort": "high"}))
    assert body["max_tokens"] == 30_000 and body["thinking"]["budget_tokens"] == 24_576
    fake_upstream.reset()
    too_small = [request(max_tokens=2_000, extra={"reasoning_effort": "medium"}),
                 request(extra={"max_completion_tokens": 8_192, "reasoning_effort": "medium"})]
    for req in too_small:
        with pytest.raises(InvalidRequest) as info:
            await complete(fake_upstream, req)
        assert info.value.param == "max_tokens"
        assert "8,192" in info.value.message and "raise max_tokens" in info.value.message
    # A deployment's own limit is the caller's too: kept, and here too small.
    with pytest.raises(InvalidRequest):
        await complete(fake_upstream, request(extra={"reasoning_effort": "high"}),
                       max_output_tokens=16_000)
    assert fake_upstream.received == []


async def test_an_explicit_thinking_budget_grows_only_a_max_tokens_chosen_here(
        fake_upstream: FakeUpstream) -> None:
    own = {"type": "enabled", "budget_tokens": 10_000}
    body = await sent_body(fake_upstream, request(extra={"thinking": own}))
    # Anthropic requires budget_tokens < max_tokens; the default 4096 is not.
    assert body["thinking"] == own and body["max_tokens"] == 10_000 + DEFAULT_MAX_TOKENS
    fake_upstream.reset()
    # A limit the caller set is theirs: sent as given, for Anthropic's 400 to explain.
    body = await sent_body(fake_upstream, request(max_tokens=5_000, extra={"thinking": own}))
    assert body["thinking"] == own and body["max_tokens"] == 5_000
    fake_upstream.reset()
    body = await sent_body(fake_upstream, request(extra={"thinking": {"type": "disabled"}}))
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS


async def test_reasoning_effort_none_an_explicit_thinking_and_a_bad_value(
        fake_upstream: FakeUpstream) -> None:
    body = await sent_body(fake_upstream, request(extra={"reasoning_effort": "none"}))
    assert "thinking" not in body and body["max_tokens"] == DEFAULT_MAX_TOKENS
    fake_upstream.reset()
    own = {"type": "enabled", "budget_tokens": 2_000}
    body = await sent_body(fake_upstream,
                           request(extra={"reasoning_effort": "high", "thinking": own}))
    assert body["thinking"] == own and body["max_tokens"] == 2_000 + DEFAULT_MAX_TOKENS
    fake_upstream.reset()
    with pytest.raises(InvalidRequest) as info:
        await complete(fake_upstream, request(extra={"reasoning_effort": "extreme"}))
    assert info.value.param == "reasoning_effort"
    assert "'extreme'" in info.value.message and "minimal" in info.value.message
    assert fake_upstream.received == []


# -- web search ----------------------------------------------------------------------
CITED = "Paris is the capital of France. About 2.1 million people live there."


# Two cited spans with plain text around them: OpenAI's shape, which the fake turns
# into Anthropic's cited text blocks and the adapter must turn back.
CITATIONS = [url_citation(0, 31, "https://example.org/paris", "Paris"),
             url_citation(32, 53, "https://example.org/people", "Population")]


async def test_web_search_options_become_anthropics_web_search_tool(
        fake_upstream: FakeUpstream) -> None:
    options = {"search_context_size": "low", "user_location": {
        "type": "approximate", "approximate": {"city": "Paris", "country": "FR"}}}
    body = await sent_body(fake_upstream, request(
        tools=[ToolSpec("lookup", None, None)], extra={"web_search_options": options}))
    assert body["tools"][1] == {"type": "web_search_20250305", "name": "web_search",
                                "max_uses": 1, "user_location": {
                                    "type": "approximate", "city": "Paris", "country": "FR"}}
    assert body["tools"][0]["name"] == "lookup" and "web_search_options" not in body
    fake_upstream.reset()
    # OpenAI's default context size is medium, and so is the cap on searches.
    body = await sent_body(fake_upstream, request(extra={"web_search_options": {}}))
    assert body["tools"] == [{"type": "web_search_20250305", "name": "web_search",
                              "max_uses": 3}]
    fake_upstream.reset()
    for bad in ("yes", {"search_context_size": "huge"}):
        with pytest.raises(InvalidRequest) as info:
            await complete(fake_upstream, request(extra={"web_search_options": bad}))
        assert info.value.param is not None
        assert info.value.param.startswith("web_search_options")
    assert fake_upstream.received == []


async def test_web_search_citations_come_back_as_url_annotations(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text=CITED, annotations=CITATIONS, input_tokens=40,
                              output_tokens=20, chunk_chars=7), provider="anthropic")
    searching = request(extra={"web_search_options": {}})
    whole = await complete(fake_upstream, searching)
    wire = fake_upstream.received[0]
    assert wire.body["tools"][0]["type"] == "web_search_20250305"
    assert whole.content == CITED and whole.annotations == CITATIONS
    # The search Anthropic ran is counted (and billed), not handed to the client.
    assert whole.usage is not None and whole.usage.web_searches == 1
    assert whole.tool_calls == [] and whole.finish_reason == "stop"
    deltas = await stream(fake_upstream, searching)
    result = folded(deltas)
    assert [d.annotations for d in deltas if d.annotations] == [[c] for c in CITATIONS]
    assert comparable(result) == comparable(whole)
    # Without the tool there is no search, and nothing is cited.
    plain = await complete(fake_upstream, request())
    assert plain.annotations is None and plain.usage is not None
    assert plain.usage.web_searches == 0


# -- service tiers -----------------------------------------------------------

@pytest.mark.parametrize(("asked", "sent"), [
    ("default", "standard_only"), ("priority", "auto"), ("auto", "auto"),
    ("standard_only", "standard_only")])
async def test_service_tier_goes_in_anthropic_s_terms(fake_upstream: FakeUpstream, asked: str,
                                                      sent: str) -> None:
    body = await sent_body(fake_upstream, request(extra={"service_tier": asked}))
    assert body["service_tier"] == sent


async def test_a_service_tier_anthropic_lacks_is_refused_or_dropped(
        fake_upstream: FakeUpstream) -> None:
    http = HttpClient()
    try:
        with pytest.raises(UnsupportedParameter) as info:
            await AnthropicAdapter(http).complete(request(extra={"service_tier": "flex"}),
                                                  deployment(fake_upstream), FAST)
    finally:
        await http.aclose()
    assert info.value.param == "service_tier"
    assert "'flex' has no counterpart" in str(info.value)
    assert fake_upstream.received == []
    body = await sent_body(fake_upstream, request(extra={"service_tier": "flex"},
                                                  drop_params=True))
    assert "service_tier" not in body


async def test_the_served_tier_comes_back_whole_and_streamed(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="ok"), provider="anthropic")
    whole = await complete(fake_upstream, request())
    streamed = folded(await stream(fake_upstream, request()))
    # Anthropic's "standard" in OpenAI's name: typed clients refuse a value outside
    # OpenAI's enum.
    assert whole.service_tier == streamed.service_tier == "default"


def test_a_priority_answer_says_so() -> None:
    d = Deployment(name="c", group="g", provider="anthropic", model=MODEL)
    usage = {"input_tokens": 3, "output_tokens": 1, "service_tier": "priority"}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
               "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
               "usage": usage}
    assert parse_message(message, d).service_tier == "priority"
    start = StreamState(d).feed(ServerSentEvent("message_start", json.dumps(
        {"type": "message_start", "message": {**message, "content": []}})))
    assert start is not None and start.service_tier == "priority"
    # Answers that say no tier (older API versions) say none, and a tier OpenAI has
    # no name for is left out rather than passed on.
    assert parse_message({**message, "usage": {"input_tokens": 3}}, d).service_tier is None
    batch = {**message, "usage": {**usage, "service_tier": "batch"}}
    assert parse_message(batch, d).service_tier is None
