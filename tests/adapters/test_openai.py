"""The OpenAI adapter against the fake upstream's OpenAI wire format.

What the fake received is asserted field by field (request translation), the
answer is checked field by field (response translation), streamed and
non-streamed calls must end in the same ChatResponse, and every error class is
produced by a scripted fault.
"""

from __future__ import annotations

import socket
from dataclasses import fields, replace
from typing import Any

import orjson
import pytest
from tests.adapters.fed_stream import Reads, opened
from tests.adapters.raw_upstream import raw_server

from interlock.adapters.base import DeltaBatch, StreamAccumulator, decode_texts, flatten
from interlock.adapters.http import HttpClient, Timeouts
from interlock.adapters.openai import (
    OpenAIAdapter,
    chunk_delta,
    parse_duration,
    parse_response,
    retry_after,
)
from interlock.adapters.openai.stream_reading import read_batches as _stream_batches
from interlock.catalog import Deployment, Secret
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Timeout,
    UnprocessableEntity,
    UpstreamServerError,
)
from interlock.testing import Fault, Reply, ScriptedToolCall
from interlock.testing.openai_wire import embedding_for, format_duration
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    ImagePart,
    Message,
    ResponseFormat,
    StreamDelta,
    TextPart,
    ToolCall,
    ToolSpec,
)

# Not shaped like an sk- key, so only the adapter's explicit redaction can hide it.
KEY = "test-key-SECRET-0123456789abcdef"
FAST = Timeouts(connect=2.0, total=10.0)
DATA_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="


def deployment(base: str, model: str = "gpt-4o", **kw: Any) -> Deployment:
    return Deployment(name="oai-main", group="smart", provider=kw.pop("provider", "openai"),
                      model=model, api_base=base, api_key=Secret(KEY), **kw)


def user(text: str) -> ChatRequest:
    return ChatRequest(model="smart", messages=[Message("user", [TextPart(text)])])


async def collect(adapter: OpenAIAdapter, request: ChatRequest,
                  dep: Deployment, timeouts: Timeouts = FAST) -> list[StreamDelta]:
    return [d async for d in adapter.stream(request, dep, timeouts)]


def full_request() -> ChatRequest:
    weather = {"type": "object", "properties": {"city": {"type": "string"}},
               "required": ["city"], "additionalProperties": False}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    return ChatRequest(
        model="smart",
        messages=[
            Message("system", [TextPart("Be brief.")]),
            Message("user", [TextPart("What is in these? "), ImagePart("https://x.test/a.png"),
                             ImagePart(DATA_URL, detail="low")], name="ann"),
            Message("assistant", [], tool_calls=[
                ToolCall("call_1", "weather", '{"city":"Oslo"}'),
                ToolCall("call_2", "weather", '{"city":"Rome"}')]),
            Message("tool", [TextPart("-3C")], tool_call_id="call_1"),
            Message("tool", [TextPart("18C")], tool_call_id="call_2"),
            Message("assistant", [TextPart("Oslo is cold.")]),
            Message("user", [TextPart("And now?")]),
        ],
        temperature=0.2, top_p=0.9, max_tokens=256, stop=["\n\n", "END"],
        tools=[ToolSpec("weather", "Current weather", weather, strict=True),
               ToolSpec("noop")],
        tool_choice={"name": "weather"}, parallel_tool_calls=True,
        response_format=ResponseFormat("json_schema", json_schema=schema, name="answer",
                                       strict=True),
        user="user-42", n=1,
        extra={"seed": 7, "frequency_penalty": 0.5, "logprobs": True, "model": "ignored"},
        metadata={"tag": "never sent"},
    )


# -- request translation ------------------------------------------------------------
async def test_request_translation_field_by_field(fake_upstream: Any) -> None:
    http = HttpClient()
    try:
        dep = deployment(fake_upstream.base_url("openai"))
        await OpenAIAdapter(http).complete(full_request(), dep, FAST)
    finally:
        await http.aclose()
    sent = fake_upstream.received[0]
    assert (sent.provider, sent.method, sent.path) == ("openai", "POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    body = sent.body
    assert body["model"] == "gpt-4o"
    m = body["messages"]
    assert m[0] == {"role": "system", "content": "Be brief."}
    assert m[1] == {"role": "user", "name": "ann", "content": [
        {"type": "text", "text": "What is in these? "},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "low"}}]}
    assert m[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_2", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]}
    assert m[3] == {"role": "tool", "tool_call_id": "call_1", "content": "-3C"}
    assert m[4] == {"role": "tool", "tool_call_id": "call_2", "content": "18C"}
    assert m[5] == {"role": "assistant", "content": "Oslo is cold."}
    assert m[6] == {"role": "user", "content": "And now?"}
    assert len(m) == 7
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 256
    assert "max_completion_tokens" not in body
    assert body["stop"] == ["\n\n", "END"]
    assert body["tools"] == [
        {"type": "function", "function": {
            "name": "weather", "description": "Current weather",
            "parameters": full_request().tools[0].parameters, "strict": True}},
        {"type": "function", "function": {
            "name": "noop", "parameters": {"type": "object", "properties": {}}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert body["parallel_tool_calls"] is True
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True,
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}}
    assert body["user"] == "user-42"
    assert body["n"] == 1
    assert (body["seed"], body["frequency_penalty"], body["logprobs"]) == (7, 0.5, True)
    assert "stream" not in body and "stream_options" not in body
    assert "metadata" not in body and "tag" not in str(body)


@pytest.mark.parametrize(("model", "extra", "dep_extra", "expected"), [
    ("gpt-4o", {}, {}, {"max_tokens": 50}),
    ("o3-mini", {}, {}, {"max_completion_tokens": 50}),
    ("gpt-5-mini", {}, {}, {"max_completion_tokens": 50}),
    ("gpt-4o", {}, {"max_tokens_param": "max_completion_tokens"},
     {"max_completion_tokens": 50}),
    ("gpt-4o", {"max_completion_tokens": 9}, {}, {"max_completion_tokens": 9}),
])
async def test_max_tokens_name(fake_upstream: Any, model: str, extra: dict[str, Any],
                               dep_extra: dict[str, Any], expected: dict[str, int]) -> None:
    http = HttpClient()
    try:
        dep = deployment(fake_upstream.base_url("openai"), model, extra=dep_extra)
        request = replace(user("hi"), max_tokens=50, extra=extra)
        await OpenAIAdapter(http).complete(request, dep, FAST)
    finally:
        await http.aclose()
    body = fake_upstream.received[0].body
    assert {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body} == expected


async def test_compatible_provider_keeps_max_tokens_and_simple_options(
        fake_upstream: Any) -> None:
    http = HttpClient()
    try:
        dep = deployment(fake_upstream.base_url("openai"), "o3-mini", provider="groq",
                         extra={"organization": "org-7", "extra_headers": {"x-trace": "abc"}})
        request = replace(user("hi"), max_tokens=5, tool_choice="required",
                          response_format=ResponseFormat("json_object"))
        await OpenAIAdapter(http).complete(request, dep, FAST)
    finally:
        await http.aclose()
    sent = fake_upstream.received[0]
    assert sent.body["max_tokens"] == 5
    assert sent.body["tool_choice"] == "required"
    assert sent.body["response_format"] == {"type": "json_object"}
    assert "temperature" not in sent.body and "tools" not in sent.body
    assert sent.headers["openai-organization"] == "org-7"
    assert sent.headers["x-trace"] == "abc"


async def test_base_url_from_environment(fake_upstream: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_upstream.base_url("openai") + "/")
    http = HttpClient()
    try:
        dep = deployment("", "gpt-4o-mini")
        dep.api_base = None
        dep.api_key = None
        resp = await OpenAIAdapter(http).complete(user("hi"), dep, FAST)
    finally:
        await http.aclose()
    assert resp.model == "gpt-4o-mini"
    assert fake_upstream.received[0].path == "/v1/chat/completions"
    assert "authorization" not in fake_upstream.received[0].headers


# -- response translation -------------------------------------------------------
async def test_response_translation_field_by_field(fake_upstream: Any) -> None:
    fake_upstream.reply(Reply(text="Paris.", finish="length", input_tokens=11,
                              output_tokens=7, cached_tokens=3, reasoning_tokens=2),
                        provider="openai")
    http = HttpClient()
    try:
        resp = await OpenAIAdapter(http).complete(
            user("Capital of France?"), deployment(fake_upstream.base_url("openai")), FAST)
    finally:
        await http.aclose()
    assert resp.id.startswith("chatcmpl-") and len(resp.id) > len("chatcmpl-")
    assert resp.model == "gpt-4o"
    assert resp.content == "Paris."
    assert resp.tool_calls == []
    assert resp.finish_reason == "length"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (11, 7)
    assert (resp.usage.cached_input_tokens, resp.usage.reasoning_tokens) == (3, 2)
    assert resp.usage.cache_write_tokens == 0
    assert resp.created > 1_700_000_000
    assert resp.reasoning is None


def tool_reply() -> Reply:
    return Reply(text=None, chunk_chars=5, input_tokens=40, output_tokens=21, cached_tokens=8,
                 reasoning_tokens=4, tool_calls=[
                     ScriptedToolCall("weather", {"city": "Oslo", "unit": "celsius"}),
                     ScriptedToolCall("weather", {"city": "Rome", "unit": "celsius"},
                                      id="call_rome")])


async def test_tool_calls_translated(fake_upstream: Any) -> None:
    fake_upstream.reply(tool_reply(), provider="openai")
    http = HttpClient()
    try:
        resp = await OpenAIAdapter(http).complete(
            user("weather?"), deployment(fake_upstream.base_url("openai")), FAST)
    finally:
        await http.aclose()
    assert resp.content is None
    assert resp.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in resp.tool_calls] == [
        ("weather", '{"city":"Oslo","unit":"celsius"}'),
        ("weather", '{"city":"Rome","unit":"celsius"}')]
    assert resp.tool_calls[0].id.startswith("call_")
    assert resp.tool_calls[1].id == "call_rome"


# -- streaming ------------------------------------------------------------------
def without_identity(r: ChatResponse) -> ChatResponse:
    return replace(r, id="", created=0)


@pytest.mark.parametrize("reply", [
    Reply(text="A fairly long answer, cut into many small streamed pieces.", chunk_chars=4,
          input_tokens=12, output_tokens=13, cached_tokens=2, reasoning_tokens=5),
    tool_reply(),
    Reply(text="Let me check.", tool_calls=[ScriptedToolCall("lookup", {"q": "x" * 30})],
          chunk_chars=3),
], ids=["text", "parallel-tools", "text-and-tool"])
async def test_stream_accumulates_to_the_non_stream_response(fake_upstream: Any,
                                                             reply: Reply) -> None:
    fake_upstream.reply(reply, provider="openai")
    dep = deployment(fake_upstream.base_url("openai"))
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        whole = await adapter.complete(user("q"), dep, FAST)
        deltas = await collect(adapter, replace(user("q"), stream=True), dep)
    finally:
        await http.aclose()
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    streamed = acc.response()
    assert streamed.id.startswith("chatcmpl-")
    assert without_identity(streamed) == without_identity(whole)
    body = fake_upstream.received[1].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert fake_upstream.received[1].headers["accept"] == "text/event-stream"


async def test_stream_deltas_shape(fake_upstream: Any) -> None:
    fake_upstream.reply(tool_reply(), provider="openai")
    http = HttpClient()
    try:
        deltas = await collect(OpenAIAdapter(http), user("weather?"),
                               deployment(fake_upstream.base_url("openai")))
    finally:
        await http.aclose()
    assert deltas[0].id and deltas[0].id.startswith("chatcmpl-")
    assert deltas[0].model == "gpt-4o"
    calls = [tc for d in deltas for tc in d.tool_calls]
    heads = [tc for tc in calls if tc.id]
    assert [(h.index, h.name, h.arguments) for h in heads] == [
        (0, "weather", ""), (1, "weather", "")]
    assert heads[1].id == "call_rome"
    fragments = [tc for tc in calls if not tc.id]
    assert all(tc.name is None and 0 < len(tc.arguments) <= 5 for tc in fragments)
    assert "".join(tc.arguments for tc in fragments if tc.index == 1) == \
        '{"city":"Rome","unit":"celsius"}'
    finish = [d for d in deltas if d.finish_reason]
    assert [d.finish_reason for d in finish] == ["tool_calls"]
    last = deltas[-1]
    assert last.usage is not None and last.finish_reason is None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (40, 21)
    assert (last.usage.cached_input_tokens, last.usage.reasoning_tokens) == (8, 4)
    assert sum(1 for d in deltas if d.usage is not None) == 1


# -- errors ---------------------------------------------------------------------
ERROR_CASES = [
    (Fault(status=400, kind="context_window"), ContextWindowExceeded,
     "maximum context length is 128000 tokens"),
    (Fault(status=400, kind="safety"), ContentFiltered, "safety system"),
    (Fault(status=400, kind="content_filter"), ContentFiltered, "content management policy"),
    (Fault(status=400), BadRequest, "Invalid value for 'messages'"),
    (Fault(status=401), AuthenticationFailed, "Incorrect API key provided"),
    (Fault(status=403), PermissionDenied, "territory not supported"),
    (Fault(status=422), UnprocessableEntity, "status 422"),
    (Fault(status=404), NotFound, "The model `gpt-4o` does not exist"),
    (Fault(status=429, retry_after=7), RateLimited, "Rate limit reached for gpt-4o"),
    (Fault(status=429, kind="quota"), RateLimited, "exceeded your current quota"),
    (Fault(status=500), UpstreamServerError, "The server had an error"),
    (Fault(status=503), Overloaded, "currently overloaded"),
]


def check_error(err: ProviderError, status: int, quoted: str) -> None:
    assert err.provider == "openai"
    assert err.deployment == "oai-main"
    assert err.status == status
    assert quoted in err.message
    assert str(err).startswith(f"openai answered HTTP {status} for deployment 'oai-main'")
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in str(err.body)


@pytest.mark.parametrize(("fault", "cls", "quoted"), ERROR_CASES,
                         ids=[f"{c[0].status}-{c[0].kind or 'plain'}" for c in ERROR_CASES])
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_error_classes(fake_upstream: Any, fault: Fault, cls: type[ProviderError],
                             quoted: str, streamed: bool) -> None:
    fake_upstream.script(fault, provider="openai")
    dep = deployment(fake_upstream.base_url("openai"))
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        with pytest.raises(ProviderError) as info:
            if streamed:
                await collect(adapter, user("hi"), dep)
            else:
                await adapter.complete(user("hi"), dep, FAST)
    finally:
        await http.aclose()
    assert type(info.value) is cls
    check_error(info.value, fault.status or 0, quoted)
    assert info.value.retry_after == fault.retry_after
    if fault.kind == "quota":
        assert "quota or billing" in info.value.message


async def test_key_in_upstream_error_text_is_redacted(fake_upstream: Any) -> None:
    fake_upstream.script(Fault(status=401, message=f"Incorrect API key provided: {KEY}."),
                         provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(AuthenticationFailed) as info:
            await OpenAIAdapter(http).complete(
                user("hi"), deployment(fake_upstream.base_url("openai")), FAST)
    finally:
        await http.aclose()
    check_error(info.value, 401, "Incorrect API key provided: [redacted]")
    assert info.value.body["error"]["code"] == "invalid_api_key"


async def test_an_error_body_quoting_a_keyed_url_is_kept_redacted(fake_upstream: Any) -> None:
    # Redacted over its serialised text, the key= pattern took the escaped quote's
    # backslash, the JSON broke and the body was lost; it is redacted per string now.
    fake_upstream.script(Fault(status=400, message='Cannot fetch "https://x.test/a.png?key=abc123"'),
                         provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(BadRequest) as info:
            await OpenAIAdapter(http).complete(
                user("hi"), deployment(fake_upstream.base_url("openai")), FAST)
    finally:
        await http.aclose()
    assert info.value.body["error"]["message"] == (
        'Cannot fetch "https://x.test/a.png?key=[redacted]"')


async def test_timeout_non_stream(fake_upstream: Any) -> None:
    fake_upstream.script(Fault(latency=1.0), provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(Timeout) as info:
            await OpenAIAdapter(http).complete(
                user("hi"), deployment(fake_upstream.base_url("openai")),
                Timeouts(connect=1.0, total=0.2))
    finally:
        await http.aclose()
    assert info.value.provider == "openai" and info.value.deployment == "oai-main"
    assert KEY not in repr(info.value)


def test_the_cached_endpoint_repr_shows_no_key() -> None:
    # The adapter keeps each deployment's headers, key included, for its calls.
    d = deployment("http://127.0.0.1:9/v1", extra={"extra_headers": {"x-proxy": "tok-1234567"}})
    endpoint = OpenAIAdapter(HttpClient())._endpoint(d)
    assert endpoint.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(endpoint) and "tok-1234567" not in repr(endpoint)


async def test_first_token_timeout_stream(fake_upstream: Any) -> None:
    fake_upstream.script(Fault(first_token_delay=1.0), provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(Timeout) as info:
            await collect(OpenAIAdapter(http), user("hi"),
                          deployment(fake_upstream.base_url("openai")),
                          Timeouts(connect=1.0, total=5.0, first_token=0.2))
    finally:
        await http.aclose()
    assert info.value.deployment == "oai-main"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_connection_refused(streamed: bool) -> None:
    dep = deployment(f"http://127.0.0.1:{closed_port()}/v1")
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        with pytest.raises(ConnectionFailed) as info:
            if streamed:
                await collect(adapter, user("hi"), dep)
            else:
                await adapter.complete(user("hi"), dep, FAST)
    finally:
        await http.aclose()
    assert info.value.provider == "openai" and info.value.deployment == "oai-main"
    assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_malformed_chunk(fake_upstream: Any) -> None:
    fake_upstream.script(Fault(malformed_at=2), provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(UpstreamServerError) as info:
            await collect(OpenAIAdapter(http), user("hi"),
                          deployment(fake_upstream.base_url("openai")))
    finally:
        await http.aclose()
    assert "openai" in str(info.value) and "not JSON" in str(info.value)
    assert info.value.deployment == "oai-main"


async def test_disconnect_mid_stream(fake_upstream: Any) -> None:
    fake_upstream.reply(Reply(text="x" * 80, chunk_chars=4), provider="openai")
    fake_upstream.script(Fault(disconnect_after=3), provider="openai")
    got: list[StreamDelta] = []
    http = HttpClient()
    try:
        with pytest.raises(ConnectionFailed) as info:
            async for delta in OpenAIAdapter(http).stream(
                    user("hi"), deployment(fake_upstream.base_url("openai")), FAST):
                got.append(delta)
    finally:
        await http.aclose()
    # aiohttp may surface the cut before the chunks that arrived with it, so the
    # count can be lower than 3; what matters is no silent, truncated success.
    assert len(got) <= 3
    assert all(d.finish_reason is None for d in got)
    assert info.value.deployment == "oai-main"
    # Told as a cut answer for that deployment, not in aiohttp's words (which
    # carry a "400" that reads like the provider's status).
    assert info.value.message == ("openai closed the connection before its answer was "
                                  "complete, for deployment 'oai-main' (ClientPayloadError)")


# -- streams the fake cannot produce: fed line by line ------------------------------
def line_feed(*frames: str) -> Reads:
    """One line per read, the worst case for batching."""
    lines = [line.encode() for f in frames for line in (f + "\n\n").split("\n")][:-1]
    return Reads(*[line + b"\n" for line in lines])


CHUNK = '{"id":"c1","model":"m","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'


async def fed(*frames: str) -> list[StreamDelta]:
    dep = deployment("http://127.0.0.1:9/v1")
    return [d async for d in flatten(_stream_batches(opened(line_feed(*frames)), dep))]


async def test_stream_error_object_maps_like_http() -> None:
    with pytest.raises(RateLimited) as info:
        await fed("data: " + CHUNK % ('{"content":"a"}', "null"),
                  'data: {"error":{"message":"Rate limit reached","type":"requests",'
                  '"code":"rate_limit_exceeded","param":null}}')
    assert info.value.status == 429 and "Rate limit reached" in info.value.message
    with pytest.raises(ContextWindowExceeded):
        await fed('data: {"error":{"message":"This model\'s maximum context length is 8192",'
                  '"type":"invalid_request_error","code":null}}')


async def test_stream_end_without_done() -> None:
    with pytest.raises(ConnectionFailed, match="without \\[DONE\\]"):
        await fed("data: " + CHUNK % ('{"content":"a"}', "null"))
    # A finish reason without [DONE] is a complete answer from a lax server.
    deltas = await fed("data: " + CHUNK % ('{"content":"a"}', "null"),
                       "data: " + CHUNK % ("{}", '"function_call"'))
    assert [d.finish_reason for d in deltas] == [None, "tool_calls"]


# -- batches: the deltas of one read together ---------------------------------------
def read_feed(*reads: list[str]) -> Reads:
    """Each argument is one network read: the frames it carries, whole."""
    return Reads(*["".join(f + "\n\n" for f in frames).encode() for frames in reads])


def text_frame(text: str, finish: str = "null") -> str:
    return "data: " + CHUNK % (orjson.dumps({"content": text}).decode(), finish)


async def batches_of(*reads: list[str]) -> list[tuple[list[str | None], bool]]:
    dep = deployment("http://127.0.0.1:9/v1")
    return [([*decode_texts(b.texts), *(d.text or d.finish_reason for d in b.deltas)], b.final)
            async for b in _stream_batches(opened(read_feed(*reads)), dep)]


async def test_batches_follow_reads_with_the_first_delta_alone() -> None:
    got = await batches_of([text_frame("a"), text_frame("b"), text_frame("c")],
                           [text_frame("d"), text_frame("", '"stop"'), "data: [DONE]"])
    assert got == [(["a"], False), (["b", "c"], False), (["d", "stop"], True)]
    # [DONE] in a read of its own: an empty final batch, so the end still follows it.
    got = await batches_of([text_frame("a")], [text_frame("", '"stop"')], ["data: [DONE]"])
    assert got == [(["a"], False), (["stop"], False), ([], True)]


async def test_batches_pass_on_what_came_before_a_failure() -> None:
    dep = deployment("http://127.0.0.1:9/v1")
    seen: list[tuple[list[str | None], bool]] = []
    with pytest.raises(UpstreamServerError, match="not JSON"):
        async for b in _stream_batches(opened(read_feed(
                [text_frame("a"), text_frame("b"), "data: {oops", text_frame("c")])), dep):
            seen.append(([*decode_texts(b.texts), *(d.text for d in b.deltas)], b.final))
    assert seen == [(["a"], False), (["b"], True)]


async def test_a_failure_before_the_first_delta_yields_nothing() -> None:
    # Nothing may be yielded, so that the dispatcher can still fail over.
    with pytest.raises(UpstreamServerError):
        await batches_of(["data: {oops", text_frame("a")])
    with pytest.raises(ConnectionFailed):
        await batches_of([": keep-alive"])
    assert await batches_of(["data: [DONE]"]) == []


async def test_a_stream_ending_without_done_ends_with_an_empty_final_batch() -> None:
    got = await batches_of([text_frame("a"), text_frame("", '"stop"')])
    assert got == [(["a"], False), (["stop"], False), ([], True)]


async def test_chunk_bytes_that_are_not_utf8_are_read_with_replacement() -> None:
    dep = deployment("http://127.0.0.1:9/v1")
    frame = ("data: " + CHUNK % ('{"content":"a"}', "null")).encode().replace(b'"a"', b'"a\xff"')
    feed = Reads(frame + b"\n", b"\n", b"data: [DONE]\n", b"\n")  # a line a read
    deltas = [d async for d in flatten(_stream_batches(opened(feed), dep))]
    assert [d.text for d in deltas] == ["a\ufffd"]


def test_chat_response_field_order_that_the_answers_are_built_in() -> None:
    # parse_response and StreamAccumulator.response pass (id, model, content) positionally.
    assert [f.name for f in fields(ChatResponse)][:3] == ["id", "model", "content"]
    answer = {"id": "x-1", "model": "m", "choices": [{"message": {"content": "hi"}}]}
    r = parse_response(answer, deployment("http://127.0.0.1:9/v1"))
    assert (r.id, r.model, r.content, r.finish_reason) == ("x-1", "m", "hi", "stop")


def test_delta_batch_field_order_that_the_stream_reader_relies_on() -> None:
    assert [f.name for f in fields(DeltaBatch)] == ["deltas", "final", "texts"]


def test_stream_delta_field_order_that_chunk_delta_relies_on() -> None:
    names = [f.name for f in fields(StreamDelta)]
    assert names[:4] == ["text", "tool_calls", "finish_reason", "usage"]
    d = chunk_delta({"choices": [{"index": 0, "delta": {"content": "a"},
                                  "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}},
                    first=False)
    assert d is not None and (d.text, d.finish_reason, d.tool_calls) == ("a", "stop", [])
    assert d.usage is not None and d.usage.input_tokens == 1


def test_chunk_delta_compatible_variants() -> None:
    groq = {"id": "x", "choices": [], "x_groq": {"usage": {
        "prompt_tokens": 3, "completion_tokens": 4}}}
    d = chunk_delta(groq, first=False)
    assert d is not None and d.usage is not None and d.usage.output_tokens == 4
    reasoning = {"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}
    d = chunk_delta(reasoning, first=False)
    assert d is not None and d.reasoning == "think"
    assert chunk_delta({"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
                       first=False) is None


# -- retry-after from OpenAI's headers --------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5),
    ("", None), ("soon", None), ("5x", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    if seconds is None:
        assert parse_duration(text) is None
    else:
        assert parse_duration(text) == pytest.approx(seconds)


def test_retry_after_from_ratelimit_headers() -> None:
    headers = {"x-ratelimit-reset-requests": "120ms", "x-ratelimit-reset-tokens": "6m0s",
               "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "10"}
    assert retry_after(429, headers) == pytest.approx(0.12)
    headers["x-ratelimit-remaining-requests"] = "5"
    assert retry_after(429, headers) == pytest.approx(360.0)
    assert retry_after(429, {**headers, "retry-after": "3"}) == 3.0
    assert retry_after(500, headers) is None
    assert retry_after(429, {}) is None


def test_fake_duration_format_round_trips() -> None:
    for seconds in (0.02, 1.0, 7.0, 360.0, 95.5):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


# -- embeddings and the models list -------------------------------------------------
def _embedding_request(texts: list[str], **fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest(ChatRequest(model="embed", messages=[], user=fields.pop("user", None)),
                            texts, **fields)


async def test_embeddings(fake_upstream: Any) -> None:
    dep = deployment(fake_upstream.base_url("openai"), "text-embedding-3-small")
    http = HttpClient()
    try:
        result = await OpenAIAdapter(http).embeddings(
            _embedding_request(["alpha", "beta", "alpha"]), dep, FAST)
    finally:
        await http.aclose()
    sent = fake_upstream.received[0]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "text-embedding-3-small", "input": ["alpha", "beta", "alpha"],
                         "encoding_format": "float"}
    vectors = result.vectors
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors[1] == pytest.approx(embedding_for("beta"))
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0)
    # The usage the fake reported: ceil(len / 4) tokens per text.
    assert result.usage.input_tokens == 2 + 1 + 2 and result.usage.output_tokens == 0


async def test_embeddings_without_usage_are_estimated_and_marked_so() -> None:
    # Some OpenAI-compatible servers leave `usage` out: the count is Interlock's
    # estimate, and the result says so for the ledger row.
    answer = {"object": "list", "model": "m",
              "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 1]}]}
    http = HttpClient()
    try:
        async with raw_server(orjson.dumps(answer),
                              content_type="application/json") as base:
            result = await OpenAIAdapter(http).embeddings(
                _embedding_request(["alpha"]), deployment(base), FAST)
    finally:
        await http.aclose()
    assert result.vectors == [[0.5, 1.0]]
    assert result.usage.input_tokens == 2 and result.usage_estimated


async def test_embeddings_send_dimensions_user_and_extra_params(fake_upstream: Any) -> None:
    # `input_type` is a vendor parameter (OpenAI's own API refuses it): a server
    # that is not OpenAI's gets it.
    dep = deployment(fake_upstream.base_url("openai-compatible"), "text-embedding-3-large")
    request = _embedding_request(["alpha"], dimensions=8, user="u-1",
                                 extra={"input_type": "query"})
    http = HttpClient()
    try:
        result = await OpenAIAdapter(http).embeddings(request, dep, FAST)
    finally:
        await http.aclose()
    assert fake_upstream.received[0].body == {
        "model": "text-embedding-3-large", "input": ["alpha"], "encoding_format": "float",
        "dimensions": 8, "user": "u-1", "input_type": "query"}
    assert result.vectors == [pytest.approx(embedding_for("alpha")[:8])]


async def test_embeddings_error(fake_upstream: Any) -> None:
    fake_upstream.script(Fault(status=401), provider="openai")
    http = HttpClient()
    try:
        with pytest.raises(AuthenticationFailed):
            await OpenAIAdapter(http).embeddings(
                _embedding_request(["a"]), deployment(fake_upstream.base_url("openai")), FAST)
    finally:
        await http.aclose()


async def test_fake_lists_models(fake_upstream: Any) -> None:
    from interlock.adapters.http import Labels

    http = HttpClient()
    try:
        resp = await http.get(fake_upstream.base_url("openai") + "/models", headers={},
                              timeouts=FAST, labels=Labels("openai", "x"))
    finally:
        await http.aclose()
    import json

    data = json.loads(resp.body)
    assert resp.status == 200 and data["object"] == "list"
    assert {"gpt-4o", "text-embedding-3-small"} <= {m["id"] for m in data["data"]}
    assert all(m["object"] == "model" for m in data["data"])


# -- the fake's shapes, as the official SDK reads them -----------------------------
def test_official_sdk_reads_the_fake(fake_upstream: Any) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=fake_upstream.base_url("openai"), api_key=KEY,
                           max_retries=0)
    fake_upstream.reply(tool_reply(), provider="openai")
    messages = [{"role": "user", "content": "weather?"}]
    whole = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert whole.object == "chat.completion"
    assert [c.function.name for c in whole.choices[0].message.tool_calls] == ["weather"] * 2
    assert whole.usage.prompt_tokens_details.cached_tokens == 8
    assert whole.usage.completion_tokens_details.reasoning_tokens == 4
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 61
    fake_upstream.script(Fault(status=429, retry_after=2), provider="openai")
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=messages)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["x-ratelimit-reset-tokens"] == "2s"
    assert "try again in 2s" in info.value.message
    fake_upstream.script(Fault(status=400, kind="context_window"), provider="openai")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o", messages=messages)
    assert bad.value.code == "context_length_exceeded" and bad.value.param == "messages"


async def test_fake_refuses_what_the_real_api_refuses(fake_upstream: Any) -> None:
    from interlock.adapters.http import Labels

    base = fake_upstream.base_url("openai")
    request = ChatRequest(model="smart", messages=[
        Message("user", [TextPart("hi")]), Message("tool", [TextPart("18C")])])
    http = HttpClient()
    try:
        with pytest.raises(BadRequest) as info:
            await OpenAIAdapter(http).complete(request, deployment(base), FAST)
        bodies = [b'{not json', b'{"messages":[]}', b'{"model":"gpt-4o"}',
                  b'{"model":"gpt-4o","messages":[],"stream_options":{"include_usage":true}}']
        answers = [await http.post(base + "/chat/completions", headers={}, body=b,
                                   timeouts=FAST, labels=Labels("openai", "x")) for b in bodies]
    finally:
        await http.aclose()
    assert "tool_call_id" in info.value.message
    assert info.value.body["error"]["param"] == "messages.[1].tool_call_id"
    assert [a.status for a in answers] == [400] * 4
    import json

    messages = [json.loads(a.body)["error"]["message"] for a in answers]
    assert "could not parse the JSON body" in messages[0]
    assert messages[1] == "you must provide a model parameter"
    assert messages[2] == "Missing required parameter: 'messages'."
    assert "only allowed when 'stream' is enabled" in messages[3]


# -- servers that answer a stream request in their own way --------------------------
async def serve_once(payload: bytes, content_type: str) -> tuple[Any, str]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_stream_answered_as_one_json_body() -> None:
    whole = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3",'
             b'"choices":[{"index":0,"message":{"role":"assistant","content":"hey",'
             b'"reasoning_content":"hmm"},"finish_reason":"stop"}],'
             b'"usage":{"prompt_tokens":2,"completion_tokens":1,"prompt_cache_hit_tokens":1}}')
    runner, base = await serve_once(whole, "application/json")
    http = HttpClient()
    try:
        deltas = await collect(OpenAIAdapter(http), user("hi"),
                               deployment(base, "llama3", provider="ollama"))
    finally:
        await http.aclose()
        await runner.cleanup()
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    r = acc.response()
    assert (r.id, r.model, r.content, r.reasoning, r.finish_reason) == (
        "chatcmpl-1", "llama3", "hey", "hmm", "stop")
    assert r.usage is not None and r.usage.cached_input_tokens == 1


async def test_stream_error_object_over_http() -> None:
    sse = (b'data: {"error":{"message":"The server is overloaded","type":"server_error",'
           b'"code":503}}\n\n')
    runner, base = await serve_once(sse, "text/event-stream")
    http = HttpClient()
    try:
        with pytest.raises(Overloaded) as info:
            await collect(OpenAIAdapter(http), user("hi"),
                          deployment(base, provider="together_ai"))
    finally:
        await http.aclose()
        await runner.cleanup()
    assert info.value.provider == "together_ai" and info.value.status == 503
    assert "The server is overloaded" in info.value.message
