"""The Gemini adapter against the fake upstream: what it sends, what it returns,
how it streams and embeds, and how each failure becomes a typed error."""

from __future__ import annotations

import dataclasses
import json
import socket
from typing import Any

import aiohttp
import pytest
from tests.adapters.raw_upstream import raw_server

from interlock.adapters.base import StreamAccumulator
from interlock.adapters.gemini import (
    SKIP_SIGNATURE,
    GeminiAdapter,
    clean_schema,
    error_from_response,
    map_finish,
    parse_response,
)
from interlock.adapters.gemini import GeminiCall as _Call
from interlock.adapters.gemini import StreamState as _StreamState
from interlock.adapters.gemini import prepare_call as _prepare
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
from interlock.testing.openai_wire import embedding_for
from interlock.tokens import estimate_text_tokens
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolSpec,
)
from interlock.web_search import url_citation

KEY = "AIzaSyD-test-key-0123456789abcdefghij"
FAST = Timeouts(connect=2, total=10)


def deployment(base: str, **kw: Any) -> Deployment:
    fields: dict[str, Any] = {"name": "gemini-pro-1", "group": "cost-optimized",
                              "provider": "gemini", "model": "gemini-2.5-pro",
                              "api_base": base, "api_key": Secret(KEY)}
    fields.update(kw)
    return Deployment(**fields)


def user(text: str) -> Message:
    return Message("user", [TextPart(text)])


def request(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="cost-optimized", messages=list(messages) or [user("hi")], **kw)


async def complete(fake: FakeUpstream, req: ChatRequest, **kw: Any) -> ChatResponse:
    http = HttpClient()
    try:
        return await GeminiAdapter(http).complete(req, deployment(fake.base_url("gemini"), **kw),
                                                  FAST)
    finally:
        await http.aclose()


async def stream(fake: FakeUpstream | str, req: ChatRequest, timeouts: Timeouts = FAST,
                 **kw: Any) -> tuple[list[Any], ChatResponse]:
    base = fake if isinstance(fake, str) else fake.base_url("gemini")
    http = HttpClient()
    acc = StreamAccumulator()
    deltas = []
    try:
        async for delta in GeminiAdapter(http).stream(req, deployment(base, **kw), timeouts):
            deltas.append(delta)
            acc.add(delta)
    finally:
        await http.aclose()
    return deltas, acc.response()


def embedding_request(*inputs: str, dimensions: int | None = None,
                      extra: dict[str, Any] | None = None, **routing: Any) -> EmbeddingRequest:
    texts = list(inputs) or ["hi"]
    return EmbeddingRequest(routing=request(*[user(t) for t in texts], **routing),
                            inputs=texts, dimensions=dimensions, extra=extra or {})


async def embed(base: FakeUpstream | str, req: EmbeddingRequest,
                timeouts: Timeouts = FAST, **kw: Any) -> EmbeddingResult:
    url = base if isinstance(base, str) else base.base_url("gemini")
    http = HttpClient()
    try:
        return await GeminiAdapter(http).embeddings(req, deployment(url, **kw), timeouts)
    finally:
        await http.aclose()


async def sent(fake: FakeUpstream, req: ChatRequest, **kw: Any) -> dict[str, Any]:
    await complete(fake, req, **kw)
    assert len(fake.received) == 1
    body: dict[str, Any] = fake.received[0].body
    return body


# -- request translation -------------------------------------------------------------
async def test_url_headers_and_key_only_in_header(fake_upstream: FakeUpstream) -> None:
    await complete(fake_upstream, request(user("hi")))
    got = fake_upstream.received[0]
    assert got.method == "POST"
    assert got.path == "/v1beta/models/gemini-2.5-pro:generateContent"
    assert got.headers["x-goog-api-key"] == KEY
    assert got.headers["content-type"] == "application/json"
    assert KEY not in got.path and KEY not in got.query and "key=" not in got.query


def test_a_call_repr_shows_no_key() -> None:
    # Its headers carry the key (x-goog-api-key), extra headers perhaps others.
    dep = deployment("http://gemini.test", extra={"extra_headers": {"x-proxy-token": KEY}})
    for stream in (False, True):
        call = _prepare(request(user("hi")), dep, stream=stream)
        assert call.headers["x-goog-api-key"] == KEY
        assert KEY not in repr(call) and KEY not in str(call)
        assert "gemini-2.5-pro" in repr(call)  # the rest still shows


async def test_stream_url_asks_for_sse(fake_upstream: FakeUpstream) -> None:
    await stream(fake_upstream, request(user("hi")))
    got = fake_upstream.received[0]
    assert got.path == "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    assert got.query == "alt=sse"


async def test_system_instruction_and_roles_merged(fake_upstream: FakeUpstream) -> None:
    body = await sent(fake_upstream, request(
        Message("system", [TextPart("Be brief.")]),
        user("one"), user("two"),
        Message("assistant", [TextPart("ok")]),
        Message("system", [TextPart("Use French.")]),
        user("three"),
    ))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."},
                                                   {"text": "Use French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "ok"}]},
        {"role": "user", "parts": [{"text": "three"}]},
    ]
    assert "generationConfig" not in body and "tools" not in body


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_conversation_of_system_messages_only_is_sent_as_the_user_turn(
        fake_upstream: FakeUpstream, streamed: bool) -> None:
    # OpenAI answers it; Gemini refuses a request whose contents are empty.
    req = request(Message("system", [TextPart("Say hi.")]),
                  Message("system", [TextPart("In French.")]))
    response = await (stream(fake_upstream, req) if streamed else complete(fake_upstream, req))
    [got] = fake_upstream.received
    assert got.path.endswith(":streamGenerateContent" if streamed else ":generateContent")
    assert got.body["contents"] == [{"role": "user", "parts": [{"text": "Say hi."},
                                                               {"text": "In French."}]}]
    assert "systemInstruction" not in got.body
    content = response[1].content if isinstance(response, tuple) else response.content
    assert content  # answered, as OpenAI would


async def test_images_inline_and_by_uri(fake_upstream: FakeUpstream) -> None:
    body = await sent(fake_upstream, request(Message("user", [
        TextPart("compare"),
        ImagePart("data:image/png;base64,iVBORw0KGgo="),
        ImagePart("https://example.com/cat.webp?size=large"),
        ImagePart("https://example.com/render"),
    ])))
    assert body["contents"][0]["parts"] == [
        {"text": "compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp",
                      "fileUri": "https://example.com/cat.webp?size=large"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"}},
    ]


async def test_a_jpg_data_url_goes_as_image_jpeg(fake_upstream: FakeUpstream) -> None:
    # Gemini, like Anthropic, takes the registered type only.
    body = await sent(fake_upstream, request(Message("user", [
        ImagePart("data:image/JPG;base64,/9j/4AAQ")])))
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}]


async def test_tools_are_declared_with_cleaned_schemas(fake_upstream: FakeUpstream) -> None:
    params = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"$ref": "#/$defs/Unit"},
            "days": {"type": ["integer", "null"], "exclusiveMinimum": 0},
            "mode": {"const": "fast"},
            "tags": {"type": "array", "items": {"type": "string", "additionalProperties": 1}},
            "where": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        },
        "required": ["city", "ghost"],
    }
    body = await sent(fake_upstream, request(user("weather?"), tools=[
        ToolSpec("get_weather", "Weather for a city", params, strict=True),
        ToolSpec("now", None, {"type": "object", "properties": {}}),
    ]))
    declarations = body["tools"][0]["functionDeclarations"]
    assert declarations[0] == {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer", "nullable": True},
                # Gemini takes an enum on STRING only, so an untyped one of
                # strings says that it is one.
                "mode": {"type": "string", "enum": ["fast"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            },
            "required": ["city"],
        },
    }
    assert declarations[1] == {"name": "now"}


def test_clean_schema_stops_recursive_refs() -> None:
    schema = {"type": "object", "$defs": {"Node": {"type": "object", "properties": {
        "child": {"$ref": "#/$defs/Node"}}}}, "properties": {"root": {"$ref": "#/$defs/Node"}}}
    cleaned = clean_schema(schema)
    depth, node = 0, cleaned["properties"]["root"]
    while "properties" in node:
        node, depth = node["properties"]["child"], depth + 1
    assert node == {"type": "object"} and 5 < depth < 30


async def test_enums_of_numbers_and_booleans_become_descriptions(
        fake_upstream: FakeUpstream) -> None:
    # Gemini's Schema refuses an enum on anything but STRING, and stringified
    # values would bring the arguments back as text: the type stays, the
    # values go to the description.
    params = {"type": "object", "properties": {
        "level": {"type": "integer", "enum": [1, 2, 3], "description": "How loud"},
        "ratio": {"type": ["number", "null"], "enum": [0.5, 1, None]},
        "flag": {"type": "boolean", "enum": [True]},
        "answer": {"const": 42},
        "either": {"enum": ["a", 1]},
        "unit": {"enum": ["c", "f"]},
    }}
    schema = {"type": "object", "properties": {"level": {"type": "integer", "enum": [1, 2]}}}
    body = await sent(fake_upstream, request(
        user("go"), tools=[ToolSpec("f", None, params)],
        response_format=ResponseFormat(type="json_schema", json_schema={"schema": schema})))
    properties = body["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]
    assert properties == {
        "level": {"type": "integer", "description": "How loud. One of: 1, 2, 3."},
        "ratio": {"type": "number", "nullable": True, "description": "One of: 0.5, 1."},
        "flag": {"type": "boolean", "description": "One of: true."},
        "answer": {"type": "integer", "description": "One of: 42."},
        "either": {"description": 'One of: "a", 1.'},
        "unit": {"type": "string", "enum": ["c", "f"]},
    }
    # responseJsonSchema takes JSON Schema's enums of numbers as they are.
    assert body["generationConfig"]["responseJsonSchema"] == schema


async def test_tool_calls_and_results_round_trip(fake_upstream: FakeUpstream) -> None:
    calls = [ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
             ToolCall("call_b", "get_time", ""),
             ToolCall("call_c", "lookup", "[1, 2]")]
    body = await sent(fake_upstream, request(
        user("weather and time?"),
        Message("assistant", [TextPart("Checking.")], tool_calls=calls),
        Message("tool", [TextPart('{"temp": 21}')], tool_call_id="call_a"),
        Message("tool", [TextPart("12:00")], tool_call_id="call_b"),
        Message("tool", [TextPart("[3, 4]")], tool_call_id="call_c"),
    ))
    assert body["contents"][1] == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {}}},
        {"functionCall": {"name": "lookup", "args": {"value": [1, 2]}}},
    ]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
        {"functionResponse": {"name": "lookup", "response": {"result": [3, 4]}}},
    ]}


async def test_a_result_names_the_function_of_the_call_before_it(
        fake_upstream: FakeUpstream) -> None:
    # Backends that number calls per turn reuse call_0: each result answers the
    # latest call with its id, not the conversation's last one.
    body = await sent(fake_upstream, request(
        user("search, then fetch"),
        Message("assistant", [], tool_calls=[ToolCall("call_0", "search", "{}")]),
        Message("tool", [TextPart("found")], tool_call_id="call_0"),
        Message("assistant", [], tool_calls=[ToolCall("call_0", "fetch", "{}")]),
        Message("tool", [TextPart("fetched")], tool_call_id="call_0")))
    names = [part["functionResponse"]["name"] for turn in body["contents"]
             for part in turn["parts"] if "functionResponse" in part]
    assert names == ["search", "fetch"]


async def test_an_image_in_a_tool_result_is_refused_not_lost(
        fake_upstream: FakeUpstream) -> None:
    # A functionResponse carries the result's text: the image would vanish unsaid.
    turns = [user("what is in it?"),
             Message("assistant", [], tool_calls=[ToolCall("call_a", "snap", "{}")]),
             Message("tool", [TextPart("here"), ImagePart("data:image/png;base64,iVBO")],
                     tool_call_id="call_a")]
    with pytest.raises(UnsupportedParameter, match="holds an image") as info:
        await complete(fake_upstream, request(*turns))
    assert info.value.param == "messages" and fake_upstream.received == []
    body = await sent(fake_upstream, request(*turns, drop_params=True))
    assert body["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "snap", "response": {"result": "here"}}}]


async def test_tool_result_for_unknown_call_is_refused(fake_upstream: FakeUpstream) -> None:
    with pytest.raises(InvalidRequest, match="tool_call_id 'nope'"):
        await complete(fake_upstream, request(
            user("hi"), Message("tool", [TextPart("x")], tool_call_id="nope")))
    assert fake_upstream.received == []


@pytest.mark.parametrize(("model", "signed"), [("gemini-3-pro-preview", True),
                                               ("gemini-flash-latest", True),
                                               ("gemini-2.5-flash", False)])
async def test_replayed_calls_carry_signature_placeholder_on_gemini_3(
        fake_upstream: FakeUpstream, model: str, signed: bool) -> None:
    calls = [ToolCall("a", "f", "{}"), ToolCall("b", "g", "{}")]
    body = await sent(fake_upstream, request(
        user("go"), Message("assistant", tool_calls=calls),
        Message("tool", [TextPart("1")], tool_call_id="a"),
        Message("tool", [TextPart("2")], tool_call_id="b")), model=model)
    first, second = body["contents"][1]["parts"]
    assert first.get("thoughtSignature") == (SKIP_SIGNATURE if signed else None)
    assert "thoughtSignature" not in second


async def test_thought_signatures_come_back_with_their_calls(
        fake_upstream: FakeUpstream) -> None:
    # A thinking model signs the first call of a step; the signature must travel
    # with the call and go back with it, not be replaced by the placeholder.
    from interlock.testing.gemini_wire import THOUGHT_SIGNATURE

    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("f", {}), ScriptedToolCall("g", {})],
                              reasoning_tokens=12), provider="gemini")
    whole = await complete(fake_upstream, request(user("go")))
    _, streamed = await stream(fake_upstream, request(user("go")))
    for answer in (whole, streamed):
        assert [c.thought_signature for c in answer.tool_calls] == [THOUGHT_SIGNATURE, None]
    fake_upstream.reset()
    body = await sent(fake_upstream, request(
        user("go"), Message("assistant", tool_calls=whole.tool_calls),
        Message("tool", [TextPart("1")], tool_call_id=whole.tool_calls[0].id),
        Message("tool", [TextPart("2")], tool_call_id=whole.tool_calls[1].id)),
        model="gemini-3-pro-preview")
    first, second = body["contents"][1]["parts"]
    assert first["thoughtSignature"] == THOUGHT_SIGNATURE and "thoughtSignature" not in second


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"name": "f"}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ({"type": "function", "function": {"name": "f"}},
     {"mode": "ANY", "allowedFunctionNames": ["f"]}),
])
async def test_tool_choice(fake_upstream: FakeUpstream, choice: Any, config: Any) -> None:
    body = await sent(fake_upstream, request(user("x"), tools=[ToolSpec("f")],
                                             tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}


async def test_generation_config_fields(fake_upstream: FakeUpstream) -> None:
    body = await sent(fake_upstream, request(
        user("x"), temperature=0.3, top_p=0.9, max_tokens=128, stop=["END", "STOP"], n=2,
        user="u-1", extra={"seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.25,
                           "stream_options": {"include_usage": True}}))
    assert body["generationConfig"] == {
        "temperature": 0.3, "topP": 0.9, "maxOutputTokens": 128,
        "stopSequences": ["END", "STOP"], "candidateCount": 2, "seed": 7,
        "presencePenalty": 0.5, "frequencyPenalty": -0.25,
    }
    assert set(body) == {"contents", "generationConfig"}


async def test_json_mode(fake_upstream: FakeUpstream) -> None:
    body = await sent(fake_upstream, request(
        user("x"), response_format=ResponseFormat("json_object")))
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


@pytest.mark.parametrize("wrapped", [False, True])
async def test_json_schema_goes_to_response_json_schema(fake_upstream: FakeUpstream,
                                                        wrapped: bool) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"answer": {"type": ["string", "null"]}},
              "required": ["answer"], "additionalProperties": False}
    given = {"name": "out", "strict": True, "schema": schema} if wrapped else schema
    body = await sent(fake_upstream, request(
        user("x"), response_format=ResponseFormat("json_schema", json_schema=given,
                                                  name="out", strict=True)))
    expected = {k: v for k, v in schema.items() if k != "$schema"}
    assert body["generationConfig"] == {"responseMimeType": "application/json",
                                        "responseJsonSchema": expected}


@pytest.mark.parametrize(("kw", "param"), [
    ({"extra": {"logit_bias": {"50256": -100}}}, "logit_bias"),
    ({"extra": {"prediction": {"type": "content", "content": "x"}}}, "prediction"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
])
async def test_unsupported_parameters_are_refused(fake_upstream: FakeUpstream,
                                                  kw: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        await complete(fake_upstream, request(user("x"), **kw))
    assert info.value.param == param and info.value.provider == "gemini"
    assert param in str(info.value) and "'gemini'" in str(info.value)
    assert fake_upstream.received == []


@pytest.mark.parametrize("where", ["request", "deployment"])
async def test_drop_params_drops_them(fake_upstream: FakeUpstream, where: str) -> None:
    req = request(user("x"), temperature=0.1, parallel_tool_calls=False,
                  extra={"prediction": {"type": "content"}, "logit_bias": {"1": 2}},
                  drop_params=True if where == "request" else None)
    body = await sent(fake_upstream, req, drop_params=where == "deployment")
    assert body["generationConfig"] == {"temperature": 0.1}


async def test_logprobs_false_is_not_a_request(fake_upstream: FakeUpstream) -> None:
    body = await sent(fake_upstream, request(user("x"), extra={"logprobs": False,
                                                                "top_logprobs": None}))
    assert "generationConfig" not in body


async def test_logprobs_are_asked_for_and_come_back_in_openai_shape(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="Rome, then Paris.", chunk_chars=6), provider="gemini")
    asked = request(user("x"), extra={"logprobs": True, "top_logprobs": 2})
    whole = await complete(fake_upstream, asked)
    config = fake_upstream.received[0].body["generationConfig"]
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 2)
    assert whole.logprobs is not None
    tokens = [t["token"] for t in whole.logprobs["content"]]
    assert tokens == ["Rome, ", "then P", "aris."]
    first = whole.logprobs["content"][0]
    assert first["bytes"] == list(b"Rome, ")
    assert [a["token"] for a in first["top_logprobs"]] == ["Rome, ", "Rome, ~1"]
    assert first["logprob"] == first["top_logprobs"][0]["logprob"]
    fake_upstream.reply(Reply(text="Rome, then Paris.", chunk_chars=6), provider="gemini")
    deltas, joined = await stream(fake_upstream, asked)
    streamed = [t for d in deltas if d.logprobs for t in d.logprobs["content"]]
    assert streamed == whole.logprobs["content"]
    assert joined.logprobs == whole.logprobs


async def test_base_url_from_environment(fake_upstream: FakeUpstream,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_BASE_URL", fake_upstream.base_url("gemini"))
    response = await complete(fake_upstream, request(user("x")), api_base=None)
    assert response.content and len(fake_upstream.received) == 1


async def test_key_from_environment_and_missing_key(fake_upstream: FakeUpstream,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaSyFromEnvironment0000000000")
    await complete(fake_upstream, request(user("x")), api_key=None)
    assert fake_upstream.received[0].headers["x-goog-api-key"].startswith("AIzaSyFromEnv")
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(AuthenticationFailed, match="GEMINI_API_KEY"):
        await complete(fake_upstream, request(user("x")), api_key=None)
    assert len(fake_upstream.received) == 1


# -- responses -----------------------------------------------------------------------
async def test_text_response_field_by_field(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="Bonjour.", input_tokens=11, output_tokens=3),
                        provider="gemini")
    response = await complete(fake_upstream, request(user("hello")))
    assert response.content == "Bonjour."
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.model == "gemini-2.5-pro"
    assert response.id and response.id.isalnum()
    assert response.reasoning is None
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 3)
    assert (response.usage.cached_input_tokens, response.usage.reasoning_tokens) == (0, 0)


async def test_tool_call_response(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(tool_calls=[
        ScriptedToolCall("get_weather", {"city": "Paris"}, id="fc-given"),
        ScriptedToolCall("get_time", {"tz": "UTC"}),
    ]), provider="gemini")
    response = await complete(fake_upstream, request(user("x")))
    assert response.content is None
    assert response.finish_reason == "tool_calls"
    first, second = response.tool_calls
    assert (first.id, first.name, json.loads(first.arguments)) == (
        "fc-given", "get_weather", {"city": "Paris"})
    assert second.name == "get_time" and json.loads(second.arguments) == {"tz": "UTC"}
    assert second.id.startswith("call_1_") and len(second.id) == len("call_1_") + 10
    again = await complete(fake_upstream, request(user("x")))
    # The same call in another answer (its own responseId) is another call.
    assert again.tool_calls[1].id != second.id


@pytest.mark.parametrize(("finish", "expected"), [("length", "length"),
                                                  ("content_filter", "content_filter")])
async def test_finish_reasons(fake_upstream: FakeUpstream, finish: str, expected: str) -> None:
    fake_upstream.reply(Reply(text="partial", finish=finish), provider="gemini")
    response = await complete(fake_upstream, request(user("x")))
    assert response.finish_reason == expected and response.content == "partial"


@pytest.mark.parametrize(("reason", "calls", "expected"), [
    ("STOP", False, "stop"), ("STOP", True, "tool_calls"), ("MAX_TOKENS", False, "length"),
    ("SAFETY", False, "content_filter"), ("RECITATION", False, "content_filter"),
    ("BLOCKLIST", False, "content_filter"), ("PROHIBITED_CONTENT", False, "content_filter"),
    ("SPII", False, "content_filter"), ("MALFORMED_FUNCTION_CALL", False, "error"),
])
def test_finish_reason_table(reason: str, calls: bool, expected: str) -> None:
    assert map_finish(reason, calls) == expected


async def test_usage_with_cached_and_thought_tokens(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="ok", input_tokens=100, output_tokens=30, cached_tokens=40,
                              reasoning_tokens=12), provider="gemini")
    response = await complete(fake_upstream, request(user("x")))
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
            usage.reasoning_tokens, usage.total_tokens) == (100, 30, 40, 12, 130)


def _call() -> _Call:
    return _Call(url="http://x", headers={}, body=b"", labels=Labels("gemini", "dep"),
                 model="gemini-2.5-pro", key=KEY)


def test_thought_parts_become_reasoning() -> None:
    response = parse_response({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": True},
            {"text": "Answer: 4", "thoughtSignature": "c2ln"},
            {"functionCall": {"id": "abc", "name": "calc", "args": {"x": 2}}},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4,
                          "thoughtsTokenCount": 9, "toolUsePromptTokenCount": 2},
        "modelVersion": "gemini-2.5-flash-001", "responseId": "r1",
    }, _call())
    assert response.reasoning == "Let me think."
    assert response.content == "Answer: 4"
    assert response.tool_calls == [ToolCall("abc", "calc", '{"x":2}')]
    assert (response.id, response.model, response.finish_reason) == (
        "r1", "gemini-2.5-flash-001", "tool_calls")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.reasoning_tokens) == (7, 13, 9)


def _answer_with_a_call(response_id: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        ]}, "finishReason": "STOP", "index": 0}], "modelVersion": "gemini-2.5-pro"}
    if response_id is not None:
        answer["responseId"] = response_id
    return answer


def test_a_call_without_an_id_gets_one_of_its_own_answer() -> None:
    # The same call in two turns must not repeat an id: clients pair results
    # by it, and Anthropic (on a fallback) refuses a repeated tool_use id.
    first, second, again = (parse_response(_answer_with_a_call(r), _call()).tool_calls[0].id
                            for r in ("resp-one", "resp-two", "resp-one"))
    assert first != second and first == again
    assert first.startswith("call_0_") and len(first) == len("call_0_") + 10
    # Without a responseId: the call alone, as before.
    unnamed = [parse_response(_answer_with_a_call(None), _call()).tool_calls[0].id
               for _ in range(2)]
    assert unnamed[0] == unnamed[1] and unnamed[0].startswith("call_0_")


def test_one_answer_streamed_or_whole_has_the_same_call_ids() -> None:
    whole = _answer_with_a_call("resp-one")
    text = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking."}]},
                            "index": 0}], "responseId": "resp-one"}
    state, acc = _StreamState(_call()), StreamAccumulator()
    for chunk in (text, whole):
        for delta in state.feed(chunk):
            acc.add(delta)
    acc.add(state.finish())
    streamed = acc.response().tool_calls
    assert streamed == parse_response(whole, _call()).tool_calls and streamed[0].id


# -- streaming -----------------------------------------------------------------------
async def test_stream_text_and_parallel_calls_fold_to_the_same_response(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(
        text="Let me check both cities.", chunk_chars=5, input_tokens=20, output_tokens=15,
        cached_tokens=4, reasoning_tokens=3,
        tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}),
                    ScriptedToolCall("get_weather", {"city": "Rome"})]), provider="gemini")
    req = request(user("weather in Paris and Rome"), tools=[ToolSpec("get_weather")])
    deltas, streamed = await stream(fake_upstream, req)
    plain = await complete(fake_upstream, req)

    assert deltas[0].id and deltas[0].model == "gemini-2.5-pro"
    assert [d.text for d in deltas if d.text] == ["Let m", "e che", "ck bo", "th ci", "ties."]
    call_deltas = [tc for d in deltas for tc in d.tool_calls]
    assert [(tc.index, tc.name) for tc in call_deltas] == [(0, "get_weather"),
                                                          (1, "get_weather")]
    assert all(tc.id and tc.arguments for tc in call_deltas)
    assert deltas[-1].finish_reason == "tool_calls" and deltas[-1].usage is not None
    assert all(d.usage is None and d.finish_reason is None for d in deltas[:-1])

    assert streamed.content == plain.content == "Let me check both cities."
    # Two answers, two responseIds, so the ids differ; one answer streamed and
    # whole gives the same ids (test_one_answer_streamed_or_whole_has_the_same_call_ids).
    assert [dataclasses.replace(tc, id="") for tc in streamed.tool_calls] == [
        dataclasses.replace(tc, id="") for tc in plain.tool_calls]
    assert [json.loads(tc.arguments) for tc in streamed.tool_calls] == [
        {"city": "Paris"}, {"city": "Rome"}]
    assert streamed.finish_reason == plain.finish_reason == "tool_calls"
    assert streamed.usage == plain.usage
    assert streamed.usage is not None
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens,
            streamed.usage.cached_input_tokens, streamed.usage.reasoning_tokens) == (20, 15, 4, 3)
    assert streamed.model == plain.model


async def test_stream_plain_text_stop(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="short answer", finish="length"), provider="gemini")
    _, response = await stream(fake_upstream, request(user("x")))
    assert response.content == "short answer"
    assert response.finish_reason == "length"
    assert response.tool_calls == []


# -- errors --------------------------------------------------------------------------
async def call_expecting(fake: FakeUpstream, mode: str, error: type[BaseException],
                         timeouts: Timeouts = FAST, **kw: Any) -> Any:
    with pytest.raises(error) as info:
        if mode == "embeddings":
            await embed(fake, embedding_request("x"), timeouts, **kw)
        elif mode == "complete":
            http = HttpClient()
            try:
                await GeminiAdapter(http).complete(
                    request(user("x")), deployment(fake.base_url("gemini"), **kw), timeouts)
            finally:
                await http.aclose()
        else:
            await stream(fake, request(user("x")), timeouts, **kw)
    return info.value


MODES = ["complete", "stream"]
# Embeddings share the error path; kept out of MODES, which chat-only tests use too.
ALL_MODES = [*MODES, "embeddings"]


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize(("fault", "error", "quoted"), [
    (Fault(status=400, kind="context_window"), ContextWindowExceeded,
     "The input token count (1200293) exceeds the maximum number of tokens allowed"),
    (Fault(status=400, kind="auth"), AuthenticationFailed, "API key not valid"),
    (Fault(status=400), BadRequest, "Request contains an invalid argument."),
    (Fault(status=401), AuthenticationFailed, "UNAUTHENTICATED"),
    (Fault(status=403), PermissionDenied, "The caller does not have permission"),
    (Fault(status=404), NotFound, "models/gemini-2.5-pro is not found"),
    (Fault(status=422), UnprocessableEntity, "Unknown error"),
    (Fault(status=500), UpstreamServerError, "An internal error has occurred"),
    (Fault(status=503), Overloaded, "The model is overloaded"),
    (Fault(status=504), Timeout, "DEADLINE_EXCEEDED"),
])
async def test_http_errors(fake_upstream: FakeUpstream, mode: str, fault: Fault,
                           error: type[ProviderError], quoted: str) -> None:
    fake_upstream.script(fault, provider="gemini")
    exc = await call_expecting(fake_upstream, mode, error)
    assert type(exc) is error
    assert exc.provider == "gemini" and exc.deployment == "gemini-pro-1"
    assert exc.status == fault.status
    assert quoted in exc.message
    # Named as the other adapters name it: in a group of several, which one failed.
    assert exc.message.startswith(f"gemini answered HTTP {fault.status} for deployment "
                                  "'gemini-pro-1' (")
    assert KEY not in str(exc) and KEY not in repr(exc)


@pytest.mark.parametrize("mode", ALL_MODES)
async def test_rate_limit_with_retry_delay(fake_upstream: FakeUpstream, mode: str) -> None:
    fake_upstream.script(Fault(status=429, retry_after=13.5), provider="gemini")
    exc = await call_expecting(fake_upstream, mode, RateLimited)
    # From the body's RetryInfo alone: Gemini sends no Retry-After header.
    assert exc.retry_after == 13.5 and exc.status == 429
    assert "RESOURCE_EXHAUSTED" in exc.message and "You exceeded your current quota" in exc.message


async def test_the_fakes_gemini_429_has_no_retry_after_header(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=429, retry_after=7), provider="gemini")
    url = fake_upstream.base_url("gemini") + "/v1beta/models/gemini-2.5-pro:generateContent"
    async with aiohttp.ClientSession() as session, session.post(
            url, json={}, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 429 and "retry-after" not in resp.headers
        details = (await resp.json())["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"} in details


def test_retry_after_header_when_no_retry_info() -> None:
    body = json.dumps({"error": {"code": 429, "message": "Resource has been exhausted "
                                 "(e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}})
    exc = error_from_response(429, {"retry-after": "7"}, body.encode(), _call())
    assert isinstance(exc, RateLimited) and exc.retry_after == 7.0
    exc = error_from_response(429, {}, body.encode(), _call())
    assert exc.retry_after is None


def test_non_json_error_body() -> None:
    exc = error_from_response(502, {}, b"<html>Bad Gateway</html>", _call())
    assert isinstance(exc, UpstreamServerError) and exc.status == 502
    assert "Bad Gateway" in exc.message


# Gemini has no error status for a safety block: the fake answers a safety fault
# scripted with any status as the blocked prompt, a 200.
SAFETY_STATUSES = [200, 400]


@pytest.mark.parametrize("status", SAFETY_STATUSES)
@pytest.mark.parametrize("mode", MODES)
async def test_blocked_prompt_raises_content_filtered(fake_upstream: FakeUpstream,
                                                      mode: str, status: int) -> None:
    fake_upstream.script(Fault(status=status, kind="safety"), provider="gemini")
    exc = await call_expecting(fake_upstream, mode, ContentFiltered)
    assert "SAFETY" in exc.message and exc.provider == "gemini"
    [got] = fake_upstream.received
    assert got.path.endswith(":streamGenerateContent" if mode == "stream"
                             else ":generateContent")


@pytest.mark.parametrize("status", SAFETY_STATUSES)
async def test_the_fake_streams_a_blocked_prompt_as_gemini_does(
        fake_upstream: FakeUpstream, status: int) -> None:
    # A 200: to streamGenerateContent?alt=sse it is the stream's one event.
    fake_upstream.script(Fault(status=status, kind="safety"), provider="gemini")
    url = (fake_upstream.base_url("gemini")
           + "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    async with aiohttp.ClientSession() as session, session.post(
            url, json={}, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        raw = await resp.read()
    [event] = [e for e in raw.split(b"\r\n\r\n") if e]
    assert event.startswith(b"data: ")
    assert json.loads(event[6:])["promptFeedback"]["blockReason"] == "SAFETY"


async def test_a_streamed_answer_stopped_for_safety_ends_with_content_filter(
        fake_upstream: FakeUpstream) -> None:
    # The other safety stop: the answer's candidate, not the prompt, is blocked;
    # streamed or whole, the answer ends as content_filter (see test_finish_reasons).
    fake_upstream.reply(Reply(text="partial", finish="content_filter"), provider="gemini")
    deltas, response = await stream(fake_upstream, request(user("x")))
    assert fake_upstream.received[0].query == "alt=sse"
    assert response.finish_reason == "content_filter" and response.content == "partial"
    assert deltas[-1].finish_reason == "content_filter"


@pytest.mark.parametrize("mode", ALL_MODES)
async def test_total_timeout(fake_upstream: FakeUpstream, mode: str) -> None:
    fake_upstream.script(Fault(latency=2.0), provider="gemini")
    exc = await call_expecting(fake_upstream, mode, Timeout, Timeouts(connect=1, total=0.3))
    assert exc.provider == "gemini" and exc.deployment == "gemini-pro-1"


async def test_first_token_timeout(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(first_token_delay=2.0), provider="gemini")
    await call_expecting(fake_upstream, "stream", Timeout,
                         Timeouts(connect=1, total=5, first_token=0.3))


@pytest.mark.parametrize("mode", MODES)
async def test_connection_refused(fake_upstream: FakeUpstream, mode: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/gemini"
    with pytest.raises(ConnectionFailed) as info:
        if mode == "stream":
            await stream(base, request(user("x")))
        else:
            http = HttpClient()
            try:
                await GeminiAdapter(http).complete(request(user("x")), deployment(base), FAST)
            finally:
                await http.aclose()
    assert info.value.provider == "gemini" and KEY not in repr(info.value)


async def test_malformed_chunk(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="a fairly long answer to cut up"), provider="gemini")
    fake_upstream.script(Fault(malformed_at=1), provider="gemini")
    exc = await call_expecting(fake_upstream, "stream", UpstreamServerError)
    assert "malformed" in exc.message


async def test_disconnect_mid_stream(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="a fairly long answer to cut up"), provider="gemini")
    fake_upstream.script(Fault(disconnect_after=2), provider="gemini")
    await call_expecting(fake_upstream, "stream", ConnectionFailed)


# A one-shot HTTP server for answers the fake upstream does not script.
def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks)


TEXT_CHUNK = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]},
                              "index": 0}], "responseId": "r9", "modelVersion": "m"}


async def test_stream_without_finish_reason_is_an_error() -> None:
    async with raw_server(sse(TEXT_CHUNK, TEXT_CHUNK)) as base:
        with pytest.raises(ConnectionFailed, match="finishReason"):
            await stream(base, request(user("x")))


async def test_error_object_inside_stream_maps_like_http() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded. Please try again "
                       "later.", "status": "UNAVAILABLE"}}
    async with raw_server(sse(TEXT_CHUNK, error)) as base:
        with pytest.raises(Overloaded) as info:
            await stream(base, request(user("x")))
    assert info.value.status == 503 and "overloaded" in info.value.message


async def test_usage_only_chunk_and_json_array_answer() -> None:
    last = {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                            "finishReason": "STOP", "index": 0}]}
    usage = {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}
    async with raw_server(sse(TEXT_CHUNK, last, usage)) as base:
        _, response = await stream(base, request(user("x")))
    assert (response.content, response.finish_reason, response.id) == ("Hello", "stop", "r9")
    assert response.usage is not None and response.usage.total_tokens == 5
    array = json.dumps([TEXT_CHUNK, last, usage]).encode()
    async with raw_server(array, content_type="application/json") as base:
        _, again = await stream(base, request(user("x")))
    assert (again.content, again.usage) == (response.content, response.usage)


async def test_key_is_redacted_from_error_texts_and_bodies() -> None:
    odd_key = "not-shaped-like-a-key-4821"
    body = json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                 "message": f"API key not valid: {odd_key} / {KEY}",
                                 "details": [{"@type": "type.googleapis.com/google.rpc."
                                              "DebugInfo", "detail": f"key {odd_key}"}]}})
    async with raw_server(body.encode(), "400 Bad Request", "application/json") as base:
        http = HttpClient()
        try:
            with pytest.raises(AuthenticationFailed) as info:
                await GeminiAdapter(http).complete(
                    request(user("x")), deployment(base, api_key=Secret(odd_key)), FAST)
        finally:
            await http.aclose()
    exc = info.value
    for text in (str(exc), repr(exc), json.dumps(exc.body)):
        assert odd_key not in text and KEY not in text
    assert "API key not valid" in exc.message


@pytest.mark.parametrize(("status", "grpc", "error", "retry_after"), [
    (400, "INVALID_ARGUMENT", BadRequest, None),
    (429, "RESOURCE_EXHAUSTED", RateLimited, 20.0),
    (403, "PERMISSION_DENIED", PermissionDenied, None),
])
async def test_a_quoted_url_with_a_key_in_an_error_keeps_the_error_class(
        status: int, grpc: str, error: type[ProviderError], retry_after: float | None) -> None:
    # Redacting `key=...` in the serialised body took the backslash of the
    # escaped quote after it; the broken JSON became a retryable upstream error.
    message = 'Cannot fetch content from "https://example.com/img.png?key=abc123".'
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}]
    body = json.dumps({"error": {"code": status, "message": message, "status": grpc,
                                 "details": details if retry_after else []}})
    async with raw_server(body.encode(), f"{status} Error", "application/json") as base:
        http = HttpClient()
        try:
            with pytest.raises(error) as info:
                await GeminiAdapter(http).complete(request(user("x")), deployment(base), FAST)
        finally:
            await http.aclose()
    exc = info.value
    assert type(exc) is error and exc.status == status and exc.retry_after == retry_after
    assert exc.body["message"] == ('Cannot fetch content from '
                                   '"https://example.com/img.png?key=[redacted]".')
    for text in (str(exc), repr(exc), json.dumps(exc.body)):
        assert "abc123" not in text and KEY not in text


# -- the fake Gemini wire itself -------------------------------------------------------
async def test_fake_refuses_calls_without_a_key(fake_upstream: FakeUpstream) -> None:
    http = HttpClient()
    url = fake_upstream.base_url("gemini") + "/v1beta/models/gemini-2.5-pro:generateContent"
    payload = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
    labels = Labels("gemini", "raw")
    try:
        refused = await http.post(url, headers={"content-type": "application/json"},
                                  body=payload, timeouts=FAST, labels=labels)
        by_query = await http.post(url + "?key=AIzaSyQueryKey", headers={}, body=payload,
                                   timeouts=FAST, labels=labels)
        models = await http.get(fake_upstream.base_url("gemini") + "/v1beta/models",
                                headers={"x-goog-api-key": KEY}, timeouts=FAST, labels=labels)
    finally:
        await http.aclose()
    assert refused.status == 403
    error = json.loads(refused.body)["error"]
    assert error["status"] == "PERMISSION_DENIED" and "unregistered callers" in error["message"]
    assert by_query.status == 200
    assert json.loads(by_query.body)["candidates"][0]["content"]["role"] == "model"
    names = [m["name"] for m in json.loads(models.body)["models"]]
    assert "models/gemini-2.5-pro" in names


@pytest.mark.parametrize(("body", "quote"), [
    ({"contents": [], "max_tokens": 5}, 'Unknown name "max_tokens": Cannot find field.'),
    ({"contents": [], "generationConfig": {"maxTokens": 5}},
     'Unknown name "maxTokens" at \'generation_config\': Cannot find field.'),
    ({"contents": [{"role": "user", "parts": [{"text": "hi", "image_url": "x"}]}]},
     'Unknown name "image_url" at \'contents[0].parts[0]\''),
    # The proto's JSON takes snake_case names too, as Google does.
    ({"contents": [], "generation_config": {"max_output_tokens": 5}}, ""),
])
async def test_fake_refuses_fields_google_does_not_know(
        fake_upstream: FakeUpstream, body: dict[str, Any], quote: str) -> None:
    http = HttpClient()
    url = fake_upstream.base_url("gemini") + "/v1beta/models/gemini-2.5-pro:generateContent"
    try:
        answer = await http.post(url, headers={"x-goog-api-key": KEY},
                                 body=json.dumps(body).encode(), timeouts=FAST,
                                 labels=Labels("gemini", "raw"))
    finally:
        await http.aclose()
    if not quote:
        assert answer.status == 200
        return
    assert answer.status == 400
    error = json.loads(answer.body)["error"]
    assert error["status"] == "INVALID_ARGUMENT" and quote in error["message"]


async def test_fake_streams_a_json_array_without_alt_sse(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="abcdefghij", chunk_chars=4), provider="gemini")
    http = HttpClient()
    url = (fake_upstream.base_url("gemini")
           + "/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    try:
        async with http.stream(url, headers={"x-goog-api-key": KEY}, body=b'{"contents":[]}',
                               timeouts=FAST, labels=Labels("gemini", "raw")) as resp:
            content_type = resp.headers["content-type"]
            chunks = json.loads(await resp.read())
    finally:
        await http.aclose()
    assert content_type.startswith("application/json")
    assert ["".join(p["text"] for p in c["candidates"][0]["content"]["parts"])
            for c in chunks] == ["abcd", "efgh", "ij"]
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]
    assert len({c["responseId"] for c in chunks}) == 1
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] > 0


# -- embeddings ----------------------------------------------------------------------
EMBED_MODEL = "gemini-embedding-001"


@pytest.mark.parametrize("model", [EMBED_MODEL, f"models/{EMBED_MODEL}"])
async def test_embeddings_request_field_by_field(fake_upstream: FakeUpstream,
                                                 model: str) -> None:
    req = embedding_request("alpha", "beta", "alpha", user="user-7")
    result = await embed(fake_upstream, req, model=model)
    assert len(fake_upstream.received) == 1
    got = fake_upstream.received[0]
    assert got.method == "POST"
    assert got.path == f"/v1beta/models/{EMBED_MODEL}:batchEmbedContents"
    assert got.headers["x-goog-api-key"] == KEY
    assert got.headers["content-type"] == "application/json"
    assert KEY not in got.path and "key=" not in got.query
    assert list(got.body) == ["requests"]  # no user: Gemini has no field for it
    requests = got.body["requests"]
    assert [r["model"] for r in requests] == [f"models/{EMBED_MODEL}"] * 3
    assert [r["content"] for r in requests] == [
        {"parts": [{"text": "alpha"}]}, {"parts": [{"text": "beta"}]},
        {"parts": [{"text": "alpha"}]}]
    assert all("outputDimensionality" not in r for r in requests)
    assert all(set(r) == {"model", "content"} for r in requests)

    assert [len(v) for v in result.vectors] == [64, 64, 64]
    assert result.vectors[0] == result.vectors[2] != result.vectors[1]
    assert result.vectors[1] == pytest.approx(embedding_for("beta"))
    # Gemini reports no usage for embeddings, so the count is the estimate.
    expected = sum(estimate_text_tokens(t) for t in req.inputs)
    assert result.usage.input_tokens == expected > 0
    assert result.usage.output_tokens == 0


async def test_embeddings_output_dimensionality(fake_upstream: FakeUpstream) -> None:
    result = await embed(fake_upstream, embedding_request("alpha", "beta", dimensions=8),
                         model=EMBED_MODEL)
    requests = fake_upstream.received[0].body["requests"]
    assert [r["outputDimensionality"] for r in requests] == [8, 8]
    assert [len(v) for v in result.vectors] == [8, 8]
    assert result.vectors[0] == pytest.approx(embedding_for("alpha")[:8])


async def test_embeddings_unsupported_parameter_is_refused(fake_upstream: FakeUpstream) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        await embed(fake_upstream, embedding_request("x", extra={"task_kind": "query"}))
    assert info.value.param == "task_kind" and info.value.provider == "gemini"
    assert "'task_kind'" in str(info.value) and "'gemini'" in str(info.value)
    assert fake_upstream.received == []


@pytest.mark.parametrize("where", ["request", "deployment"])
async def test_embeddings_drop_params_drops_them(fake_upstream: FakeUpstream,
                                                 where: str) -> None:
    req = embedding_request("x", extra={"task_kind": "query", "priority": 3},
                            drop_params=True if where == "request" else None)
    result = await embed(fake_upstream, req, drop_params=where == "deployment")
    body = fake_upstream.received[0].body
    assert body == {"requests": [{"model": "models/gemini-2.5-pro",
                                  "content": {"parts": [{"text": "x"}]}}]}
    assert len(result.vectors) == 1


async def test_embeddings_null_extra_is_not_a_request(fake_upstream: FakeUpstream) -> None:
    await embed(fake_upstream, embedding_request("x", extra={"task_kind": None}))
    assert len(fake_upstream.received) == 1


async def test_embeddings_without_a_key(fake_upstream: FakeUpstream,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AuthenticationFailed, match="GEMINI_API_KEY"):
        await embed(fake_upstream, embedding_request("x"), api_key=None)
    assert fake_upstream.received == []


async def test_embeddings_unknown_model_names_the_method(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(Fault(status=404), provider="gemini")
    exc = await call_expecting(fake_upstream, "embeddings", NotFound)
    assert "not supported for batchEmbedContents" in exc.message


async def test_embeddings_over_the_batch_cap_go_in_consecutive_calls(
        fake_upstream: FakeUpstream) -> None:
    texts = [f"t{i}" for i in range(250)]
    result = await embed(fake_upstream, embedding_request(*texts))
    sizes = [len(r.body["requests"]) for r in fake_upstream.received]
    assert sizes == [100, 100, 50]
    assert [r.body["requests"][0]["content"]["parts"][0]["text"]
            for r in fake_upstream.received] == ["t0", "t100", "t200"]
    assert result.vectors[0] == pytest.approx(embedding_for("t0"))
    assert result.vectors[249] == pytest.approx(embedding_for("t249"))
    assert result.usage.input_tokens == sum(estimate_text_tokens(t) for t in texts)


async def test_consecutive_embedding_calls_share_one_deadline(
        fake_upstream: FakeUpstream) -> None:
    # Each call alone fits the timeout, the three together do not: the attempt's
    # timeout bounds the whole list, not each call.
    fake_upstream.script(*[Fault(latency=0.3)] * 3, provider="gemini")
    with pytest.raises(Timeout):
        await embed(fake_upstream, embedding_request(*[f"t{i}" for i in range(250)]),
                    timeouts=Timeouts(connect=1.0, total=0.7))
    # The third call starts (0.6 s in) unless a busy machine made the first two
    # slower; either way the list ran out of its one deadline.
    assert len(fake_upstream.received) in (2, 3)


async def test_the_fake_refuses_a_batch_over_the_cap_as_gemini_does(
        fake_upstream: FakeUpstream) -> None:
    body = {"requests": [{"model": "models/gemini-embedding-001",
                          "content": {"parts": [{"text": "x"}]}}] * 101}
    async with aiohttp.ClientSession() as http:
        url = fake_upstream.base_url("gemini") + "/v1beta/models/x:batchEmbedContents"
        resp = await http.post(url, json=body, headers={"x-goog-api-key": "test-key"})
        answer = await resp.json()
    assert resp.status == 400
    assert "at most 100 requests can be in one batch" in answer["error"]["message"]


async def test_embeddings_usage_from_the_answer_when_present() -> None:
    answer = {"embeddings": [{"values": [0.5, -1, 2]}], "usageMetadata": {"promptTokenCount": 9}}
    async with raw_server(json.dumps(answer).encode(), content_type="application/json") as base:
        result = await embed(base, embedding_request("x"))
    assert result.vectors == [[0.5, -1.0, 2.0]] and result.usage.input_tokens == 9
    assert not result.usage_estimated  # counted by Gemini, not estimated


async def test_embeddings_usage_is_marked_estimated_when_gemini_sends_no_count(
        fake_upstream: FakeUpstream) -> None:
    # batchEmbedContents carries no token count: the tokens are Interlock's
    # estimate, and the result says so for the ledger row (over several calls too).
    one = await embed(fake_upstream, embedding_request("alpha"))
    many = await embed(fake_upstream, embedding_request(*[f"t{i}" for i in range(150)]))
    assert one.usage.input_tokens > 0 and one.usage_estimated
    assert len(fake_upstream.received) == 3 and many.usage_estimated


@pytest.mark.parametrize(("answer", "why"), [
    ({}, "no embeddings"),
    ({"embeddings": None}, "no embeddings"),
    ({"embeddings": [{"values": [0.1]}]}, "1 embeddings for 2 inputs"),
    ({"embeddings": [{"values": [0.1]}, {}]}, "an embedding has no values"),
    ({"embeddings": [{"values": [0.1]}, {"values": []}]}, "an embedding has no values"),
    ({"embeddings": [{"values": [0.1]}, {"values": ["0.2"]}]}, "not a number"),
    ({"embeddings": [{"values": [0.1]}, {"values": [True]}]}, "not a number"),
    ([{"values": [0.1]}], "not a JSON object"),
])
async def test_embeddings_malformed_answers(answer: Any, why: str) -> None:
    async with raw_server(json.dumps(answer).encode(), content_type="application/json") as base:
        with pytest.raises(UpstreamServerError) as info:
            await embed(base, embedding_request("a", "b"))
    assert "malformed" in info.value.message and why in info.value.message
    assert info.value.provider == "gemini"


# -- reasoning_effort ----------------------------------------------------------------
@pytest.mark.parametrize(("model", "effort", "thinking"), [
    ("gemini-2.5-flash", "low", {"thinkingBudget": 1_024}),
    ("gemini-2.5-pro", "medium", {"thinkingBudget": 8_192}),
    ("gemini-2.5-pro", "high", {"thinkingBudget": 24_576}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-3-pro-preview", "low", {"thinkingLevel": "low"}),
    ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}),
    ("gemini-3.5-flash", "xhigh", {"thinkingLevel": "high"}),
])
async def test_reasoning_effort_becomes_a_thinking_config(
        fake_upstream: FakeUpstream, model: str, effort: str, thinking: dict[str, Any]) -> None:
    body = await sent(fake_upstream, request(user("x"), extra={"reasoning_effort": effort}),
                      model=model)
    assert body["generationConfig"]["thinkingConfig"] == thinking
    assert "reasoning_effort" not in json.dumps(body)


async def test_an_explicit_thinking_config_wins_over_reasoning_effort(
        fake_upstream: FakeUpstream) -> None:
    own = {"thinkingBudget": 512, "includeThoughts": True}
    body = await sent(fake_upstream, request(
        user("x"), extra={"reasoning_effort": "high", "thinking_config": own}))
    assert body["generationConfig"]["thinkingConfig"] == own
    fake_upstream.reset()
    with pytest.raises(InvalidRequest) as info:
        await complete(fake_upstream, request(user("x"), extra={"reasoning_effort": "max"}))
    assert info.value.param == "reasoning_effort"
    assert fake_upstream.received == []


# -- grounding with Google Search ----------------------------------------------------
GROUNDED = "Zürich is Switzerland's largest city. Über 400,000 people live there."


# The web sources of GROUNDED_CITATIONS, as Gemini's grounding metadata lists them.
GROUNDING_SOURCES = [{"web": {"uri": "https://example.org/zurich", "title": "zurich.ch"}},
                     {"web": {"uri": "https://example.org/people", "title": "stats.ch"}}]


# Character spans after non-ASCII letters: Gemini's byte offsets must come back
# as these characters, not as bytes.
GROUNDED_CITATIONS = [url_citation(0, 37, "https://example.org/zurich", "zurich.ch"),
                      url_citation(38, 69, "https://example.org/people", "stats.ch")]


async def test_web_search_options_ground_the_answer_and_citations_come_back(
        fake_upstream: FakeUpstream) -> None:
    assert GROUNDED[38:69] == "Über 400,000 people live there."
    fake_upstream.reply(Reply(text=GROUNDED, annotations=GROUNDED_CITATIONS,
                              input_tokens=20, output_tokens=18, chunk_chars=9),
                        provider="gemini")
    searching = request(user("Tell me about Zürich"), tools=[ToolSpec("lookup")],
                        extra={"web_search_options": {"search_context_size": "high"}})
    whole = await complete(fake_upstream, searching)
    tools = fake_upstream.received[0].body["tools"]
    assert {"googleSearch": {}} in tools and any("functionDeclarations" in t for t in tools)
    assert whole.content == GROUNDED and whole.annotations == GROUNDED_CITATIONS
    # One grounded prompt, billed as one search on Gemini 2.5.
    assert whole.usage is not None and whole.usage.web_searches == 1
    deltas, streamed = await stream(fake_upstream, searching)
    assert [d.annotations for d in deltas if d.annotations] == [GROUNDED_CITATIONS]
    assert streamed.annotations == whole.annotations and streamed.content == GROUNDED
    assert streamed.usage == whole.usage
    # Without web_search_options nothing is grounded, cited or billed.
    plain = await complete(fake_upstream, request(user("Tell me about Zürich")))
    assert plain.annotations is None and plain.usage is not None
    assert plain.usage.web_searches == 0


def test_grounding_repeated_in_later_stream_chunks_cites_each_segment_once() -> None:
    # Grounding covers the whole answer so far, so a chunk after the first that
    # carries it again repeats the citations already sent.
    first = {"segment": {"startIndex": 0, "endIndex": 38}, "groundingChunkIndices": [0]}
    second = {"segment": {"startIndex": 39, "endIndex": 71}, "groundingChunkIndices": [1]}

    def chunk(text: str, supports: list[Any], finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"},
                                     "groundingMetadata": {"groundingChunks": GROUNDING_SOURCES,
                                                           "groundingSupports": supports,
                                                           "webSearchQueries": ["zurich"]}}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate]}

    state = _StreamState(_call())
    cited = [d.annotations for c in (chunk(GROUNDED[:38], [first]),
                                     chunk(GROUNDED[38:], [first, second], "STOP"))
             for d in state.feed(c) if d.annotations]
    assert cited == [[GROUNDED_CITATIONS[0]], [GROUNDED_CITATIONS[1]]]


def test_grounding_segments_are_placed_within_the_part_they_name() -> None:
    # Offsets count from the start of the part `partIndex` names; a thought part
    # comes before, and the second text part starts after the first.
    first, second = GROUNDED[:38], GROUNDED[38:]
    supports = [
        {"segment": {"partIndex": 1, "startIndex": 0, "endIndex": 38},
         "groundingChunkIndices": [0]},
        {"segment": {"partIndex": 2, "startIndex": 0,
                     "endIndex": len(second.encode())}, "groundingChunkIndices": [1]},
    ]
    data = {"candidates": [{
        "content": {"role": "model", "parts": [
            {"text": "Looking up Zürich.", "thought": True}, {"text": first},
            {"text": second}]},
        "finishReason": "STOP",
        "groundingMetadata": {"groundingChunks": GROUNDING_SOURCES, "groundingSupports": supports,
                              "webSearchQueries": ["zurich"]}}]}
    whole = parse_response(data, _call())
    assert whole.content == GROUNDED and whole.reasoning == "Looking up Zürich."
    assert whole.annotations == GROUNDED_CITATIONS
    # A segment naming no part is placed over the whole text, as before.
    for support in supports:
        del support["segment"]["partIndex"]
    supports[1]["segment"].update(startIndex=39, endIndex=71)
    assert parse_response(data, _call()).annotations == GROUNDED_CITATIONS


def test_grounding_is_billed_per_query_from_gemini_3_and_per_prompt_before() -> None:
    queries = ["zurich population", "zurich largest city", "swiss cities"]
    data = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"},
                            "finishReason": "STOP",
                            "groundingMetadata": {"webSearchQueries": queries}}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}}
    for model, billed in (("gemini-2.5-flash", 1), ("gemini-3-pro-preview", 3)):
        usage = parse_response(data, dataclasses.replace(_call(), model=model)).usage
        assert usage is not None and usage.web_searches == billed
