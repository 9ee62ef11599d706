"""The fake upstream answers a request that forces a tool call with one call, in
each provider's own wire shape, whole and streamed, its arguments a value of
the tool's parameter schema; a request that does not force one still gets text,
and a scripted answer or fault still wins. Raw HTTP to the fake: what a client
of each real API would read."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel
from tests.test_fake_json_answers import ANTHROPIC_HEADERS, GEMINI_HEADERS, City, sse_data

from interlock.testing import FakeUpstream, Fault, Reply, ScriptedToolCall


class Weather(BaseModel):
    city: str
    days: int


WEATHER = Weather.model_json_schema()
CITY = City.model_json_schema()
ASK = [{"role": "user", "content": "Which city?"}]


# -- OpenAI ------------------------------------------------------------------------
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "record_city", "parameters": CITY}},
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
]


def _openai(fake: FakeUpstream, choice: Any, *, stream: bool,
            prefix: str = "openai") -> tuple[list[tuple[str, str]], str | None, str | None]:
    """([(name, arguments)] of the answer's tool calls, its content, finish_reason),
    read as an OpenAI client reads them, streamed argument deltas joined."""
    body = {"model": "gpt-4o-mini", "messages": ASK, "tools": OPENAI_TOOLS,
            "tool_choice": choice, "stream": stream}
    answer = httpx.post(fake.base_url(prefix) + "/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    if not stream:
        choice_out = answer.json()["choices"][0]
        message = choice_out["message"]
        return ([(c["function"]["name"], c["function"]["arguments"])
                 for c in message.get("tool_calls") or ()],
                message["content"], choice_out["finish_reason"])
    calls: dict[int, list[str]] = {}
    text, finish = "", None
    for chunk in sse_data(answer.text):
        delta = chunk["choices"][0]["delta"]
        text += delta.get("content") or ""
        for d in delta.get("tool_calls") or ():
            slot = calls.setdefault(d["index"], ["", ""])
            slot[0] += d["function"].get("name") or ""
            slot[1] += d["function"].get("arguments") or ""
        finish = chunk["choices"][0]["finish_reason"] or finish
    if calls:
        assert sum(len(c["choices"][0]["delta"].get("tool_calls") or ())
                   for c in sse_data(answer.text)) > 2, "arguments should come in fragments"
    return [(n, a) for n, a in calls.values()], text or None, finish


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("choice", "called"), [
    ("required", "record_city"),
    ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}, "get_weather"),
], ids=["required", "named", "allowed_tools"])
def test_openai_forced_choice_answers_one_call(fake_upstream: FakeUpstream, choice: Any,
                                               called: str, stream: bool) -> None:
    calls, content, finish = _openai(fake_upstream, choice, stream=stream)
    assert [name for name, _ in calls] == [called]
    assert (content, finish) == (None, "tool_calls")
    model = City if called == "record_city" else Weather
    # strict: a number or flag sent as a string fails, as the schema says.
    model.model_validate_json(calls[0][1], strict=True)


def test_openai_compatible_servers_answer_the_call_too(fake_upstream: FakeUpstream) -> None:
    calls, _, finish = _openai(fake_upstream, "required", stream=False,
                               prefix="openai-compatible")
    assert ([n for n, _ in calls], finish) == (["record_city"], "tool_calls")


def test_openai_only_a_forced_choice_with_tools_gets_a_call(
        fake_upstream: FakeUpstream) -> None:
    assert _openai(fake_upstream, "required", stream=False)[2] == "tool_calls"
    for choice in ["auto", "none", {"type": "allowed_tools", "allowed_tools": {
            "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}]:
        calls, content, finish = _openai(fake_upstream, choice, stream=False)
        assert (calls, finish) == ([], "stop"), choice
        assert content is not None and content.startswith("[simulated gpt-4o-mini]")
    # Nothing to call: a request for JSON still gets its JSON.
    body = {"model": "gpt-4o-mini", "messages": ASK, "tool_choice": "required",
            "response_format": {"type": "json_object"}}
    answer = httpx.post(fake_upstream.base_url("openai") + "/chat/completions", json=body)
    message = answer.json()["choices"][0]["message"]
    assert "tool_calls" not in message and json.loads(message["content"])["text"]


def test_openai_allowed_tools_without_a_function_forces_no_call(
        fake_upstream: FakeUpstream) -> None:
    """An allowed list of custom tools only, or of none, allows no function:
    not the same as no restriction, which lets the model call any."""
    custom = {"type": "custom", "custom": {"name": "shell"}}
    for allowed in ([custom], []):
        choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required",
                                                             "tools": allowed}}
        calls, content, finish = _openai(fake_upstream, choice, stream=False)
        assert (calls, finish) == ([], "stop"), allowed
        assert content is not None and content.startswith("[simulated gpt-4o-mini]")


@pytest.mark.parametrize("prefix", ["openai", "openai-compatible"])
@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": "abc"}, "tools"),
    ({"tools": [5]}, "tools[0]"),
    ({"tool_choice": 5}, "tool_choice"),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required",
                                                                 "tools": 5}}},
     "tool_choice.allowed_tools.tools"),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required",
                                                                 "tools": "abc"}}},
     "tool_choice.allowed_tools.tools"),
], ids=["tools_string", "tool_number", "choice_number", "allowed_number", "allowed_string"])
def test_openai_tool_fields_of_the_wrong_type_get_a_400_naming_them(
        fake_upstream: FakeUpstream, fields: dict[str, Any], param: str, prefix: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": ASK, "tools": OPENAI_TOOLS,
            "tool_choice": "required", **fields}
    answer = httpx.post(fake_upstream.base_url(prefix) + "/chat/completions", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error", param, "invalid_type")
    assert f"'{param}'" in error["message"]


def test_openai_streamed_call_has_content_null_as_the_whole_one(
        fake_upstream: FakeUpstream) -> None:
    """OpenAI opens a tool-call stream with the role, content null and the call's
    head in one chunk: the SDK's stream helper then sees no text, and its final
    message's content is None, as in the whole answer."""
    client = openai.OpenAI(base_url=fake_upstream.base_url("openai"), api_key="sk-test")
    asked: dict[str, Any] = {"model": "gpt-4o-mini", "messages": ASK, "tools": OPENAI_TOOLS,
                             "tool_choice": "required"}
    whole = client.chat.completions.create(**asked)
    with client.chat.completions.stream(**asked) as events:
        kinds = {event.type for event in events}
        final = events.get_final_completion()
    assert whole.choices[0].message.content is None
    assert "content.delta" not in kinds
    assert final.choices[0].message.content is None
    assert [c.function.name for c in final.choices[0].message.tool_calls or []] == [
        "record_city"]
    # A text answer still opens with content "" as OpenAI's do.
    body = {"model": "gpt-4o-mini", "messages": ASK, "stream": True}
    text = httpx.post(fake_upstream.base_url("openai") + "/chat/completions", json=body)
    assert sse_data(text.text)[0]["choices"][0]["delta"] == {
        "role": "assistant", "content": "", "refusal": None}


def test_openai_scripted_answers_and_faults_win(fake_upstream: FakeUpstream) -> None:
    assert [n for n, _ in _openai(fake_upstream, "required", stream=False)[0]] == [
        "record_city"]
    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Oslo"})]),
                        provider="openai")
    calls, _, _ = _openai(fake_upstream, "required", stream=False)
    assert calls == [("get_weather", '{"city":"Oslo"}')]
    fake_upstream.script(Fault(status=429), provider="openai")
    body = {"model": "gpt-4o-mini", "messages": ASK, "tools": OPENAI_TOOLS,
            "tool_choice": "required"}
    answer = httpx.post(fake_upstream.base_url("openai") + "/chat/completions", json=body)
    assert answer.status_code == 429


# -- Anthropic ---------------------------------------------------------------------
ANTHROPIC_TOOLS = [
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 1},
    {"name": "record_city", "input_schema": CITY},
    {"name": "get_weather", "input_schema": WEATHER},
]


def _anthropic(fake: FakeUpstream, choice: Any, *, stream: bool) -> httpx.Response:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": ASK,
            "tools": ANTHROPIC_TOOLS, "tool_choice": choice, "stream": stream}
    answer = httpx.post(fake.base_url("anthropic") + "/v1/messages", json=body,
                        headers=ANTHROPIC_HEADERS)
    assert answer.status_code == 200, answer.text
    return answer


def test_anthropic_any_calls_the_first_custom_tool(fake_upstream: FakeUpstream) -> None:
    message = _anthropic(fake_upstream, {"type": "any"}, stream=False).json()
    assert [b["type"] for b in message["content"]] == ["tool_use"]
    assert (message["content"][0]["name"], message["stop_reason"]) == ("record_city",
                                                                       "tool_use")
    City.model_validate(message["content"][0]["input"], strict=True)


def test_anthropic_any_streams_the_input_as_json_deltas(fake_upstream: FakeUpstream) -> None:
    events = sse_data(_anthropic(fake_upstream, {"type": "any",
                                                  "disable_parallel_tool_use": True},
                                  stream=True).text)
    opened = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["type"], b["name"]) for b in opened] == [("tool_use", "record_city")]
    fragments = [e["delta"]["partial_json"] for e in events
                 if e["type"] == "content_block_delta"]
    assert len(fragments) > 2
    City.model_validate_json("".join(fragments), strict=True)
    stop = [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"]
    assert stop == ["tool_use"]


def test_anthropic_only_a_forced_choice_gets_a_call(fake_upstream: FakeUpstream) -> None:
    forced = _anthropic(fake_upstream, {"type": "any"}, stream=False).json()
    assert forced["stop_reason"] == "tool_use"
    for choice in [{"type": "auto"}, {"type": "none"}]:
        message = _anthropic(fake_upstream, choice, stream=False).json()
        assert [b["type"] for b in message["content"]] == ["text"], choice
        assert message["stop_reason"] == "end_turn"


def test_anthropic_any_scripted_answers_win(fake_upstream: FakeUpstream) -> None:
    shaped = _anthropic(fake_upstream, {"type": "any"}, stream=False).json()
    assert [b["name"] for b in shaped["content"]] == ["record_city"]
    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Oslo"})]),
                        provider="anthropic")
    message = _anthropic(fake_upstream, {"type": "any"}, stream=False).json()
    assert [(b["name"], b["input"]) for b in message["content"]] == [
        ("get_weather", {"city": "Oslo"})]
    # Scripted text is the answer: "any" has no tool of its own to put it in.
    fake_upstream.reply(Reply(text="just text"), provider="anthropic")
    message = _anthropic(fake_upstream, {"type": "any"}, stream=False).json()
    assert message["content"] == [{"type": "text", "text": "just text"}]


@pytest.mark.parametrize(("fields", "message"), [
    ({"tool_choice": {"type": "tool", "name": "absent"}},
     "Tool 'absent' not found in provided tools"),
    ({"tools": "abc", "tool_choice": {"type": "any"}}, "tools: Input should be a valid list"),
], ids=["named_absent", "tools_string"])
def test_anthropic_refuses_a_choice_of_a_tool_not_given(
        fake_upstream: FakeUpstream, fields: dict[str, Any], message: str) -> None:
    """Claude cannot be forced to call a tool the request does not define: the
    API answers 400, in its own error shape, rather than a call to it."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": ASK,
            "tools": ANTHROPIC_TOOLS, **fields}
    answer = httpx.post(fake_upstream.base_url("anthropic") + "/v1/messages", json=body,
                        headers=ANTHROPIC_HEADERS)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["type"] == "error" and error["request_id"]
    assert error["error"] == {"type": "invalid_request_error", "message": message}


# -- Gemini ------------------------------------------------------------------------
GEMINI_WEATHER = {"type": "OBJECT", "properties": {
    "city": {"type": "STRING"}, "days": {"type": "INTEGER"}}, "required": ["city", "days"]}


def _gemini_body(config: dict[str, Any] | None, *, snake: bool = False) -> dict[str, Any]:
    declarations = [{"name": "record_city", "parametersJsonSchema": CITY},
                    {"name": "get_weather", "parameters": GEMINI_WEATHER}]
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": "Which city?"}]}],
        "tools": [{"googleSearch": {}}, {"functionDeclarations": declarations}]}
    if config is not None:
        body["toolConfig"] = {"functionCallingConfig": config}
    if snake:
        body["tools"][1] = {"function_declarations": [
            {"name": "record_city", "parameters_json_schema": CITY},
            {"name": "get_weather", "parameters": GEMINI_WEATHER}]}
        body["tool_config"] = {"function_calling_config": {
            "mode": config["mode"],
            "allowed_function_names": config.get("allowedFunctionNames", [])}} if config else {}
        body.pop("toolConfig", None)
    return body


def _gemini(fake: FakeUpstream, body: dict[str, Any],
            method: str) -> list[dict[str, Any]]:
    """The answer's payloads (one when not streamed)."""
    answer = httpx.post(f"{fake.base_url('gemini')}/v1beta/models/gemini-2.5-pro:{method}",
                        json=body, headers=GEMINI_HEADERS)
    assert answer.status_code == 200, answer.text
    if method == "generateContent":
        return [answer.json()]
    if "alt=sse" in method:
        return sse_data(answer.text)
    return list(json.loads(answer.text))


def _parts(payloads: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(every part of every chunk, the last finishReason)."""
    candidates = [p["candidates"][0] for p in payloads]
    return ([part for c in candidates for part in c["content"]["parts"]],
            candidates[-1]["finishReason"])


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent?alt=sse",
                                    "streamGenerateContent"])
@pytest.mark.parametrize(("config", "called"), [
    ({"mode": "ANY"}, "record_city"),
    ({"mode": "ANY", "allowedFunctionNames": ["get_weather"]}, "get_weather"),
    ({"mode": "ANY", "allowedFunctionNames": ["absent", "get_weather", "record_city"]},
     "get_weather"),
], ids=["any", "allowed", "first_allowed_declared"])
def test_gemini_mode_any_answers_one_function_call(
        fake_upstream: FakeUpstream, config: dict[str, Any], called: str, method: str) -> None:
    parts, finish = _parts(_gemini(fake_upstream, _gemini_body(config), method))
    assert [list(p) for p in parts] == [["functionCall"]]
    assert (parts[0]["functionCall"]["name"], finish) == (called, "STOP")
    model = City if called == "record_city" else Weather
    model.model_validate(parts[0]["functionCall"]["args"], strict=True)


def test_gemini_reads_the_snake_case_names(fake_upstream: FakeUpstream) -> None:
    body = _gemini_body({"mode": "ANY", "allowedFunctionNames": ["record_city"]}, snake=True)
    parts, _ = _parts(_gemini(fake_upstream, body, "generateContent"))
    assert parts[0]["functionCall"]["name"] == "record_city"
    City.model_validate(parts[0]["functionCall"]["args"], strict=True)


def test_gemini_only_mode_any_gets_a_call(fake_upstream: FakeUpstream) -> None:
    forced, _ = _parts(_gemini(fake_upstream, _gemini_body({"mode": "ANY"}), "generateContent"))
    assert "functionCall" in forced[0]
    for config in [None, {"mode": "AUTO"}, {"mode": "NONE"}]:
        parts, finish = _parts(_gemini(fake_upstream, _gemini_body(config), "generateContent"))
        assert [list(p) for p in parts] == [["text"]] and finish == "STOP", config
        assert parts[0]["text"].startswith("[simulated gemini-2.5-pro]")


def test_gemini_scripted_answers_win(fake_upstream: FakeUpstream) -> None:
    shaped, _ = _parts(_gemini(fake_upstream, _gemini_body({"mode": "ANY"}), "generateContent"))
    assert shaped[0]["functionCall"]["name"] == "record_city"
    fake_upstream.script(Fault(status=503), provider="gemini")
    refused = httpx.post(f"{fake_upstream.base_url('gemini')}/v1beta/models/gemini-2.5-pro:"
                         "generateContent", json=_gemini_body({"mode": "ANY"}),
                         headers=GEMINI_HEADERS)
    assert refused.status_code == 503
    fake_upstream.reply(Reply(text="just text"), provider="gemini")
    parts, _ = _parts(_gemini(fake_upstream, _gemini_body({"mode": "ANY"}), "generateContent"))
    assert parts == [{"text": "just text"}]
