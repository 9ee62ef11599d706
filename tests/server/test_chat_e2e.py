"""The gateway end to end with the official `openai` SDK: answers, streams, tools.

Each test sends through a real uvicorn-served gateway to the fake upstream and
checks both sides: what the client got (in OpenAI shape) and what the provider
received (in its own format).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from tests.server.gateways import (
    GROUPS,
    MASTER_KEY,
    MODELS,
    RunningGateway,
    three_provider_config,
)

from interlock.testing import FakeUpstream
from interlock.testing.script import Reply, ScriptedToolCall

PROVIDERS = ["anthropic", "gemini", "openai"]

WEATHER_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
]
PARALLEL_CALLS = [ScriptedToolCall("get_weather", {"city": "Paris"}, id="call_w1"),
                  ScriptedToolCall("get_time", {"city": "Tokyo"}, id="call_t1")]


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _tool_names_sent(provider: str, body: dict[str, Any]) -> list[str]:
    """The tool names as each provider's own request format carries them."""
    if provider == "anthropic":
        return [t["name"] for t in body["tools"]]
    if provider == "gemini":
        return [f["name"] for t in body["tools"] for f in t.get("functionDeclarations", [])]
    return [t["function"]["name"] for t in body["tools"]]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_non_stream_answer_comes_back_in_openai_shape(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    fake_upstream.reply(Reply(text=f"Bonjour from {provider}", input_tokens=11,
                              output_tokens=4), provider=provider)
    client = gateway.openai()
    resp = await client.chat.completions.create(
        model=GROUPS[provider], messages=[{"role": "system", "content": "Be brief."},
                                          *_user("Say hello in French")])
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == f"Bonjour from {provider}"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 4)
    assert resp.usage.total_tokens == 15
    # Exactly one call, to the right provider, carrying the prompt.
    assert fake_upstream.calls() == 1
    received = fake_upstream.received[0]
    assert received.provider == provider
    assert received.model == MODELS[provider][0]
    assert "Say hello in French" in json.dumps(received.body)
    await client.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_reassembles_and_reports_usage(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice over."
    fake_upstream.reply(Reply(text=text, chunk_chars=5, input_tokens=9, output_tokens=13),
                        provider=provider)
    client = gateway.openai()
    stream = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("Tell me about the fox"), stream=True,
        stream_options={"include_usage": True})
    pieces: list[str] = []
    finishes: list[str] = []
    usage_chunks = []
    content_chunks = 0
    async for chunk in stream:
        if chunk.usage is not None:
            usage_chunks.append(chunk)
            assert chunk.choices == []
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            pieces.append(delta.content)
            content_chunks += 1
        if chunk.choices[0].finish_reason:
            finishes.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == text
    # Really streamed, not one blob at the end.
    assert content_chunks >= 3
    assert finishes == ["stop"]
    assert len(usage_chunks) == 1
    usage = usage_chunks[0].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 13)
    assert fake_upstream.received[0].provider == provider
    await client.close()


async def test_stream_without_include_usage_sends_no_usage_chunk(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    client = gateway.openai()
    stream = await client.chat.completions.create(
        model="budget", messages=_user("hi"), stream=True)
    chunks = [c async for c in stream]
    assert chunks, "the stream was empty"
    assert all(c.usage is None for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    await client.close()


async def test_raw_stream_ends_with_done(fake_upstream: FakeUpstream,
                                         gateway: RunningGateway) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(
            gateway.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "high-quality", "messages": _user("hi"), "stream": True})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [e for e in resp.text.split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    assert events.count("data: [DONE]") == 1
    assert all(e.startswith("data: ") for e in events)
    for event in events[:-1]:
        assert json.loads(event[len("data: "):])["object"] == "chat.completion.chunk"


@pytest.mark.parametrize("include_usage", [False, True])
async def test_raw_chunks_carry_a_null_usage_only_when_the_stream_ends_with_one(
        include_usage: bool, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # OpenAI: under include_usage "all other chunks will also include a usage
    # field, but with a null value"; clients that read the field expect the key.
    import httpx

    fake_upstream.reply(Reply(text="one two three four", chunk_chars=4), provider="anthropic")
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(
            gateway.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "high-quality", "messages": _user("hi"), "stream": True,
                  "stream_options": {"include_usage": include_usage}})
    chunks = [json.loads(e[len("data: "):]) for e in resp.text.split("\n\n")
              if e.strip() and e != "data: [DONE]"]
    assert len(chunks) >= 4
    if include_usage:
        *chunks, last = chunks
        assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
    assert all(("usage" in c) is include_usage and c.get("usage") is None for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
        "one two three four")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_tool_calls(provider: str, fake_upstream: FakeUpstream,
                                   gateway: RunningGateway) -> None:
    fake_upstream.reply(Reply(tool_calls=PARALLEL_CALLS), provider=provider)
    client = gateway.openai()
    resp = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("Weather in Paris and time in Tokyo?"),
        tools=WEATHER_TOOLS, tool_choice="auto")  # type: ignore[arg-type]
    # The provider got the tools in its own format.
    assert _tool_names_sent(provider, fake_upstream.received[0].body) == [
        "get_weather", "get_time"]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    got = [(c.type, c.function.name, json.loads(c.function.arguments)) for c in calls]
    assert got == [("function", "get_weather", {"city": "Paris"}),
                   ("function", "get_time", {"city": "Tokyo"})]
    assert all(c.id for c in calls)
    assert len({c.id for c in calls}) == 2
    await client.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_parallel_tool_calls(provider: str, fake_upstream: FakeUpstream,
                                            gateway: RunningGateway) -> None:
    fake_upstream.reply(Reply(tool_calls=PARALLEL_CALLS, chunk_chars=4), provider=provider)
    client = gateway.openai()
    stream = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("Weather in Paris and time in Tokyo?"),
        tools=WEATHER_TOOLS, stream=True)  # type: ignore[arg-type]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert [(calls[i]["name"], json.loads(calls[i]["arguments"])) for i in (0, 1)] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"city": "Tokyo"})]
    assert calls[0]["id"] and calls[1]["id"] and calls[0]["id"] != calls[1]["id"]
    assert _tool_names_sent(provider, fake_upstream.received[0].body) == [
        "get_weather", "get_time"]
    await client.close()


LEGACY_FUNCTIONS = [t["function"] for t in WEATHER_TOOLS]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_legacy_functions_get_a_function_call_back(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # Code written for the deprecated `functions` reads message.function_call; the
    # legacy API has one call an answer, so the first is kept.
    fake_upstream.reply(Reply(tool_calls=PARALLEL_CALLS), provider=provider)
    client = gateway.openai()
    resp = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("Weather in Paris?"),
        functions=LEGACY_FUNCTIONS)  # type: ignore[arg-type]
    assert _tool_names_sent(provider, fake_upstream.received[0].body) == [
        "get_weather", "get_time"]
    choice = resp.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    call = choice.message.function_call
    assert call is not None and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    await client.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_legacy_functions_get_function_call_deltas(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    fake_upstream.reply(Reply(tool_calls=PARALLEL_CALLS, chunk_chars=4), provider=provider)
    client = gateway.openai()
    stream = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("Weather in Paris?"),
        functions=LEGACY_FUNCTIONS, stream=True)  # type: ignore[arg-type]
    name = arguments = ""
    finish = None
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        assert not delta.tool_calls
        if delta.function_call is not None:
            name += delta.function_call.name or ""
            arguments += delta.function_call.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "function_call"
    assert (name, json.loads(arguments)) == ("get_weather", {"city": "Paris"})
    await client.close()


async def test_tool_results_reach_anthropic_as_tool_result_blocks(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    client = gateway.openai()
    messages: list[dict[str, Any]] = [
        *_user("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C and sunny"},
    ]
    resp = await client.chat.completions.create(
        model="high-quality", messages=messages, tools=WEATHER_TOOLS)  # type: ignore[arg-type]
    assert resp.choices[0].message.content
    sent = fake_upstream.received[0].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    tool_use = sent[1]["content"][-1]
    assert (tool_use["type"], tool_use["id"], tool_use["name"], tool_use["input"]) == (
        "tool_use", "toolu_1", "get_weather", {"city": "Paris"})
    result = sent[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_1"
    assert "18C and sunny" in json.dumps(result)
    await client.close()


async def test_mock_response_in_the_body_answers_without_a_provider(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    client = gateway.openai()
    mocked = "Made up by the gateway."
    resp = await client.chat.completions.create(
        model=GROUPS["anthropic"], messages=_user("hi"), extra_body={"mock_response": mocked})
    assert resp.choices[0].message.content == mocked
    stream = await client.chat.completions.create(
        model=GROUPS["gemini"], messages=_user("hi"), stream=True,
        extra_body={"mock_response": mocked})
    assert "".join([c.choices[0].delta.content or "" async for c in stream
                    if c.choices]) == mocked
    with pytest.raises(openai.BadRequestError, match="mock_response"):
        await client.chat.completions.create(model=GROUPS["openai"], messages=_user("hi"),
                                             extra_body={"mock_response": 5})
    assert fake_upstream.received == []


@pytest.mark.parametrize(("switch", "value"), [
    ("mock_response", "litellm.RateLimitError"),
    ("mock_response", "Exception: content_filter_policy"),
    ("mock_testing_rate_limit_error", True),
    ("mock_timeout", True),
    ("mock_testing_fallbacks", True),
    ("mock_testing_context_fallbacks", True),
])
async def test_a_gateway_client_may_not_fail_deployments_on_purpose(
        fake_upstream: FakeUpstream, gateway: RunningGateway, switch: str, value: Any) -> None:
    # A mocked failure counts as the deployment's own: any client could cool real
    # deployments for every tenant, or hold their slots with mock_timeout.
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=GROUPS["openai"], messages=_user("hi"),
                                             extra_body={switch: value})
    assert switch in str(refused.value) and "library" in str(refused.value)
    health = httpx.get(gateway.url + "/health/deployments",
                       headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=5).json()
    assert {row["state"] for row in health["deployments"]} == {"healthy"}
    assert fake_upstream.received == []
    await client.close()


async def test_a_client_may_shorten_retries_but_not_lengthen_them(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    # The operator's num_retries bounds the upstream calls one request can make;
    # a client's own num_retries (LiteLLM's per-call argument) only lowers it.
    from interlock.testing.script import Fault

    gateway = start_gateway(three_provider_config(fake_upstream, num_retries=1,
                                                  backoff_base=0.001, allowed_fails=100))
    fake_upstream.script(Fault(status=500, times=None), provider="openai")
    client = gateway.openai(max_retries=0)
    for asked, calls in ((5, 2), (0, 1), (None, 2)):
        before = fake_upstream.calls("openai")
        extra = {} if asked is None else {"num_retries": asked}
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model=GROUPS["openai"],
                                                 messages=_user("hi"), extra_body=extra)
        assert fake_upstream.calls("openai") - before == calls, asked
    # The same holds for the deadline (router timeout: 10 s).
    from interlock.openai_request import parse_chat_request

    for asked_timeout, kept in ((600.0, 10.0), (2.0, 2.0)):
        bounded = gateway.gateway.bounded_for_client(parse_chat_request(
            {"model": "budget", "messages": _user("hi"), "timeout": asked_timeout}))
        assert bounded.timeout == kept


async def test_a_client_s_context_window_chain_only_narrows_the_operator_s(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    from interlock.testing.script import Fault

    gateway = start_gateway(three_provider_config(
        fake_upstream, context_window_fallbacks=[{"budget": ["cost-optimized",
                                                             "high-quality"]}]))
    fake_upstream.script(Fault(status=400, kind="context_window", times=None),
                         provider="openai")
    client = gateway.openai()
    # Its own order among the groups the operator allows there.
    answer = await client.chat.completions.with_raw_response.create(
        model="budget", messages=_user("hi"),
        extra_body={"context_window_fallbacks": ["high-quality"]})
    assert answer.headers["x-interlock-model-group"] == "high-quality"
    assert fake_upstream.calls("gemini") == 0
    # A group the operator did not allow there is not reached.
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="budget", messages=_user("hi"),
            extra_body={"context_window_fallbacks": [{"budget": ["nowhere"]}]})
    assert fake_upstream.calls("gemini") == 0
    assert all("context_window_fallbacks" not in r.body for r in fake_upstream.received)


async def test_anthropic_thinking_blocks_round_trip_through_the_gateway(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # A tool loop with extended thinking: the answer carries the signed thinking
    # block (LiteLLM's `thinking_blocks`), and the client sends it back with the
    # assistant turn, where Anthropic requires it, first.
    fake_upstream.reply(Reply(tool_calls=[PARALLEL_CALLS[0]], reasoning_tokens=20),
                        provider="anthropic")
    client = gateway.openai()
    asked = [*_user("Weather in Paris?")]
    resp = await client.chat.completions.create(
        model=GROUPS["anthropic"], messages=asked, tools=WEATHER_TOOLS,
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}})
    message = resp.choices[0].message
    blocks = message.model_extra["thinking_blocks"]
    assert blocks[0]["type"] == "thinking" and blocks[0]["signature"]
    stream = await client.chat.completions.create(
        model=GROUPS["anthropic"], messages=asked, tools=WEATHER_TOOLS, stream=True)
    streamed = [c.choices[0].delta.model_extra.get("thinking_blocks")
                async for c in stream if c.choices]
    assert [b for b in streamed if b] == [blocks]
    follow_up = [*asked, {"role": "assistant", "content": None, "thinking_blocks": blocks,
                          "tool_calls": [t.model_dump() for t in message.tool_calls]},
                 {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "18C"}]
    await client.chat.completions.create(model=GROUPS["anthropic"], messages=follow_up,
                                         tools=WEATHER_TOOLS)
    sent = fake_upstream.received[-1].body["messages"][1]["content"]
    assert sent[0] == blocks[0] and sent[1]["type"] == "tool_use"


async def test_gemini_thought_signatures_round_trip_through_the_gateway(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # Returned where Google's own OpenAI-compatible endpoint puts it, so a client
    # that appends the tool calls as it got them sends the signature back.
    from interlock.testing.gemini_wire import THOUGHT_SIGNATURE

    fake_upstream.reply(Reply(tool_calls=[PARALLEL_CALLS[0]], reasoning_tokens=12),
                        provider="gemini")
    client = gateway.openai()
    asked = _user("Weather in Paris?")
    resp = await client.chat.completions.create(model=GROUPS["gemini"], messages=asked,
                                                tools=WEATHER_TOOLS)
    call = resp.choices[0].message.tool_calls[0]
    assert call.model_extra["extra_content"] == {"google": {
        "thought_signature": THOUGHT_SIGNATURE}}
    follow_up = [*asked, {"role": "assistant", "content": None,
                          "tool_calls": [call.model_dump(exclude_none=True)]},
                 {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    await client.chat.completions.create(model=GROUPS["gemini"], messages=follow_up,
                                         tools=WEATHER_TOOLS)
    sent = fake_upstream.received[-1].body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == THOUGHT_SIGNATURE


@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_logprobs_reach_the_sdk_whole_and_streamed(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # Anthropic has none: it refuses the parameter with a 400 (its adapter test).
    text = "Logprobs, token by token."
    fake_upstream.reply(Reply(text=text, chunk_chars=6), provider=provider)
    client = gateway.openai()
    whole = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("hi"), logprobs=True, top_logprobs=3)
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == text
    assert all(len(t.top_logprobs) == 3 for t in logprobs.content)
    stream = await client.chat.completions.create(
        model=GROUPS[provider], messages=_user("hi"), logprobs=True, top_logprobs=1,
        stream=True)
    streamed = [t for chunk in [c async for c in stream] if chunk.choices
                and chunk.choices[0].logprobs is not None
                for t in chunk.choices[0].logprobs.content or []]
    assert [t.token for t in streamed] == [t.token for t in logprobs.content]
    assert all(len(t.top_logprobs) == 1 for t in streamed)
    plain = await client.chat.completions.create(model=GROUPS[provider], messages=_user("hi"))
    assert plain.choices[0].logprobs is None
    await client.close()


async def test_a_refusal_reaches_the_sdk_as_a_refusal(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # The SDK's parse() reads `message.refusal`; a refusal given as content
    # would be parsed as the JSON answer and fail.
    from pydantic import BaseModel

    class Capital(BaseModel):
        city: str

    said = "I'm sorry, I can't help with that."
    fake_upstream.reply(Reply(refusal=said, chunk_chars=7), provider="openai")
    client = gateway.openai()
    parsed = await client.chat.completions.parse(
        model=GROUPS["openai"], messages=_user("capital?"), response_format=Capital)
    message = parsed.choices[0].message
    assert (message.refusal, message.parsed, message.content) == (said, None, None)
    assert fake_upstream.received[0].body["response_format"]["type"] == "json_schema"
    fake_upstream.reply(Reply(refusal=said, chunk_chars=7), provider="openai")
    stream = await client.chat.completions.create(
        model=GROUPS["openai"], messages=_user("capital?"), stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks) == said
    assert all(not c.choices[0].delta.content for c in chunks)
    await client.close()


async def test_json_mode_routed_to_claude_answers_json_whole_and_streamed(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # A router may send a JSON-mode request to any group: Claude has no such mode,
    # and answers through a tool it must call, whose input becomes the content.
    client = gateway.openai()
    asked = {"model": GROUPS["anthropic"], "messages": _user("a city as JSON"),
             "response_format": {"type": "json_object"}}
    whole = await client.chat.completions.create(**asked)
    choice = whole.choices[0]
    assert (choice.finish_reason, choice.message.tool_calls) == ("stop", None)
    # The fake calls the forced tool with its simulated text as the input.
    assert json.loads(choice.message.content or "")["text"].startswith("[simulated")
    assert fake_upstream.received[-1].body["tool_choice"] == {"type": "tool",
                                                              "name": "json_answer"}
    stream = await client.chat.completions.create(**asked, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == json.loads(choice.message.content or "")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    await client.close()


async def test_url_citations_reach_the_sdk_whole_and_streamed(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    cites = [{"type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": 6, "url": "https://example.org/lisbon",
        "title": "Lisbon"}}]
    client = gateway.openai()
    fake_upstream.reply(Reply(text="Lisbon.", annotations=cites), provider="openai")
    whole = await client.chat.completions.create(model=GROUPS["openai"],
                                                 messages=_user("capital of Portugal?"))
    annotations = whole.choices[0].message.annotations
    assert annotations is not None and len(annotations) == 1
    cited = annotations[0].url_citation
    assert (cited.url, cited.title, cited.start_index, cited.end_index) == (
        "https://example.org/lisbon", "Lisbon", 0, 6)
    fake_upstream.reply(Reply(text="Lisbon.", annotations=cites), provider="openai")
    stream = await client.chat.completions.create(
        model=GROUPS["openai"], messages=_user("capital of Portugal?"), stream=True)
    chunks = [c async for c in stream]
    # The SDK's delta has no declared field for them: read as the extra it keeps.
    streamed = [c.choices[0].delta.model_extra.get("annotations") for c in chunks
                if c.choices and c.choices[0].delta.model_extra]
    assert [a for a in streamed if a] == [cites]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Lisbon."
    await client.close()


async def test_the_backend_fields_reach_the_sdk(
        fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    from interlock.testing.openai_wire import _FINGERPRINT

    client = gateway.openai()
    whole = await client.chat.completions.create(model=GROUPS["openai"], messages=_user("hi"))
    assert (whole.system_fingerprint, whole.service_tier) == (_FINGERPRINT, "default")
    stream = await client.chat.completions.create(
        model=GROUPS["openai"], messages=_user("hi"), stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    # Text chunks go out as forwarded literals under the stream's own head.
    assert len(chunks) > 3
    assert {c.system_fingerprint for c in chunks} == {_FINGERPRINT}
    other = await client.chat.completions.create(model=GROUPS["anthropic"],
                                                 messages=_user("hi"))
    assert other.system_fingerprint is None
    await client.close()


async def test_a_client_s_specific_deployment_steps_around_no_routing(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    # Two deployments of `budget`; a client asking for one of them by its id, as
    # LiteLLM's specific_deployment would, gets the 404 of any unknown model: only
    # the library, whose caller owns the config, may pin a deployment.
    config = three_provider_config(fake_upstream)
    config["model_list"] += [{**config["model_list"][-1], "model_info": {"id": "pinned"}}]
    gateway = start_gateway(config)
    client = gateway.openai()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="pinned", messages=_user("hi"),
                                             extra_body={"specific_deployment": True})
    # Beside a group it is dropped, as LiteLLM's other call arguments are.
    answer = await client.chat.completions.create(
        model=GROUPS["openai"], messages=_user("hi"), extra_body={"specific_deployment": True})
    assert answer.choices
    assert all("specific_deployment" not in r.body for r in fake_upstream.received)
    await client.close()


async def test_a_continued_stream_s_usage_chunk_counts_both_calls(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    # After a continuation the usage chunk showed the successor's call alone,
    # beside a cost (and a ledger row) of both calls.
    from interlock.testing.script import Fault
    from interlock.tokens import estimate_prompt_tokens
    from interlock.types import ChatRequest, Message, TextPart

    gateway = start_gateway(three_provider_config(
        fake_upstream, stream_continuation=True,
        fallbacks=[{GROUPS["anthropic"]: [GROUPS["openai"]]}]))
    fake_upstream.reply(Reply(text="slow answer " * 20, chunk_chars=4))
    fake_upstream.script(Fault(disconnect_after=5), provider="anthropic")
    question = "a long question " * 100
    client = gateway.openai()
    chunks = [chunk async for chunk in await client.chat.completions.create(
        model=GROUPS["anthropic"], messages=_user(question), stream=True,
        stream_options={"include_usage": True})]
    await client.close()
    final = chunks[-1]
    assert final.model_extra["interlock"]["attempts"] == 2
    prompt = estimate_prompt_tokens(ChatRequest(
        model="m", messages=[Message("user", [TextPart(question)])]))
    assert final.usage is not None and final.usage.prompt_tokens > 2 * prompt
