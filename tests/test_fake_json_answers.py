"""The fake upstream answers a request for JSON with JSON, in each provider's own
wire shape, whole and streamed; a scripted answer still wins. Raw HTTP to the
fake: what a client of each real API would read."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from interlock.testing import FakeUpstream, Reply, ScriptedToolCall


class City(BaseModel):
    name: str
    population: int
    coastal: bool
    districts: list[str]


SCHEMA = City.model_json_schema()
ASK = [{"role": "user", "content": "A city, as JSON."}]
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
GEMINI_HEADERS = {"x-goog-api-key": "test-gemini-key"}


def sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: "):]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


# -- OpenAI ------------------------------------------------------------------------
def _openai(fake: FakeUpstream, fmt: dict[str, Any], *, stream: bool = False) -> str:
    """The answer's content, read as an OpenAI client reads it."""
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": ASK, "response_format": fmt}
    answer = httpx.post(fake.base_url("openai") + "/chat/completions",
                        json={**body, "stream": True} if stream else body)
    assert answer.status_code == 200, answer.text
    if not stream:
        message = answer.json()["choices"][0]["message"]
        assert message["refusal"] is None
        return str(message["content"])
    pieces = [c["choices"][0]["delta"].get("content") for c in sse_data(answer.text)]
    pieces = [p for p in pieces if p]
    assert len(pieces) > 1, "the JSON should come over several content deltas"
    return "".join(pieces)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_json_schema_answers_a_value_of_the_schema(
        fake_upstream: FakeUpstream, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "strict": True,
                                                  "schema": SCHEMA}}
    city = City.model_validate_json(_openai(fake_upstream, fmt, stream=stream))
    assert city.name == "simulated name"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_json_object_answers_an_object(fake_upstream: FakeUpstream,
                                              stream: bool) -> None:
    content = json.loads(_openai(fake_upstream, {"type": "json_object"}, stream=stream))
    assert content == {"text": "[simulated gpt-4o-mini] Hello! This is a simulated answer "
                               "from the fake upstream."}


def test_openai_compatible_servers_answer_json_too(fake_upstream: FakeUpstream) -> None:
    body = {"model": "llama", "messages": ASK, "response_format": {
        "type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}}
    answer = httpx.post(fake_upstream.base_url("openai-compatible") + "/chat/completions",
                        json=body)
    City.model_validate_json(answer.json()["choices"][0]["message"]["content"])


def test_a_scripted_text_wins_over_the_json(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="not JSON at all"), provider="openai")
    assert _openai(fake_upstream, {"type": "json_object"}) == "not JSON at all"


def test_a_scripted_reply_without_text_still_gets_the_json(
        fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(input_tokens=7, output_tokens=3), provider="openai")
    body = {"model": "gpt-4o-mini", "messages": ASK, "response_format": {
        "type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}}
    answer = httpx.post(fake_upstream.base_url("openai") + "/chat/completions", json=body)
    City.model_validate_json(answer.json()["choices"][0]["message"]["content"])
    assert answer.json()["usage"]["completion_tokens"] == 3


def test_a_request_for_text_gets_the_simulated_sentence(fake_upstream: FakeUpstream) -> None:
    assert _openai(fake_upstream, {"type": "text"}).startswith("[simulated gpt-4o-mini]")


# -- Anthropic ---------------------------------------------------------------------
def _anthropic(fake: FakeUpstream, **fields: Any) -> httpx.Response:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": ASK, **fields}
    answer = httpx.post(fake.base_url("anthropic") + "/v1/messages", json=body,
                        headers=ANTHROPIC_HEADERS)
    assert answer.status_code == 200, answer.text
    return answer


def test_anthropic_output_config_answers_a_text_block_of_json(
        fake_upstream: FakeUpstream) -> None:
    fmt = {"format": {"type": "json_schema", "schema": SCHEMA}}
    message = _anthropic(fake_upstream, output_config=fmt).json()
    assert [b["type"] for b in message["content"]] == ["text"]
    assert message["stop_reason"] == "end_turn"
    City.model_validate_json(message["content"][0]["text"])
    streamed = sse_data(_anthropic(fake_upstream, output_config=fmt, stream=True).text)
    pieces = [e["delta"]["text"] for e in streamed if e["type"] == "content_block_delta"]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == json.loads(message["content"][0]["text"])


def test_anthropic_forced_tool_is_called_with_a_value_of_its_input_schema(
        fake_upstream: FakeUpstream) -> None:
    tools = [{"name": "record_city", "description": "Records a city.", "input_schema": SCHEMA}]
    forced = {"tools": tools, "tool_choice": {"type": "tool", "name": "record_city"}}
    message = _anthropic(fake_upstream, **forced).json()
    assert [b["type"] for b in message["content"]] == ["tool_use"]
    assert (message["content"][0]["name"], message["stop_reason"]) == ("record_city",
                                                                       "tool_use")
    City.model_validate(message["content"][0]["input"])
    streamed = sse_data(_anthropic(fake_upstream, **forced, stream=True).text)
    fragments = [e["delta"]["partial_json"] for e in streamed
                 if e["type"] == "content_block_delta"]
    assert json.loads("".join(fragments)) == message["content"][0]["input"]


def test_anthropic_json_mode_tool_gets_an_open_object(fake_upstream: FakeUpstream) -> None:
    # The tool OpenAI's JSON mode reaches Claude as: any object will do.
    tools = [{"name": "json_answer", "input_schema": {"type": "object"}}]
    message = _anthropic(fake_upstream, tools=tools,
                         tool_choice={"type": "tool", "name": "json_answer"}).json()
    assert message["content"][0]["input"]["text"].startswith("[simulated claude-sonnet-4-5]")


def test_anthropic_scripted_answers_win(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply(Reply(text="plain"), provider="anthropic")
    fmt = {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert _anthropic(fake_upstream, output_config=fmt).json()["content"] == [
        {"type": "text", "text": "plain"}]
    tools = [{"name": "record_city", "input_schema": SCHEMA}]
    forced = {"tools": tools, "tool_choice": {"type": "tool", "name": "record_city"}}
    # Scripted text to a forced tool: the documented `{"text": ...}` input.
    assert _anthropic(fake_upstream, **forced).json()["content"][0]["input"] == {
        "text": "plain"}
    fake_upstream.reply(Reply(tool_calls=[ScriptedToolCall("record_city", {"name": "Oslo"})]),
                        provider="anthropic")
    assert _anthropic(fake_upstream, **forced).json()["content"][0]["input"] == {
        "name": "Oslo"}


# -- Gemini ------------------------------------------------------------------------
GEMINI_SCHEMA = {  # Google's OpenAPI subset, as responseSchema takes it
    "type": "OBJECT", "properties": {
        "name": {"type": "STRING"}, "population": {"type": "INTEGER"},
        "coastal": {"type": "BOOLEAN"},
        "districts": {"type": "ARRAY", "items": {"type": "STRING"}}},
    "required": ["name", "population", "coastal", "districts"],
    "propertyOrdering": ["name", "population", "coastal", "districts"]}


def _gemini_text(fake: FakeUpstream, config: dict[str, Any], *, stream: bool) -> str:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "A city, as JSON."}]}],
            "generationConfig": config}
    answer = httpx.post(f"{fake.base_url('gemini')}/v1beta/models/gemini-2.5-pro:{method}",
                        json=body, headers=GEMINI_HEADERS)
    assert answer.status_code == 200, answer.text
    payloads = sse_data(answer.text) if stream else [answer.json()]
    if stream:
        assert len(payloads) > 1
    return "".join(p["candidates"][0]["content"]["parts"][0]["text"] for p in payloads)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("config", [
    {"responseMimeType": "application/json", "responseSchema": GEMINI_SCHEMA},
    {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA},
    {"response_mime_type": "application/json", "response_json_schema": SCHEMA},
], ids=["responseSchema", "responseJsonSchema", "snake_case"])
def test_gemini_json_mime_type_answers_a_value_of_the_schema(
        fake_upstream: FakeUpstream, config: dict[str, Any], stream: bool) -> None:
    City.model_validate_json(_gemini_text(fake_upstream, config, stream=stream))


def test_gemini_json_without_a_schema_answers_an_object(fake_upstream: FakeUpstream) -> None:
    text = _gemini_text(fake_upstream, {"responseMimeType": "application/json"}, stream=False)
    assert json.loads(text)["text"].startswith("[simulated gemini-2.5-pro]")
    plain = _gemini_text(fake_upstream, {"responseMimeType": "text/plain"}, stream=False)
    assert plain.startswith("[simulated gemini-2.5-pro]")


def test_the_fake_imports_nothing_of_the_code_it_checks() -> None:
    # It knows the providers' schemas on its own: sharing the adapters' code
    # would let a mistake there pass here too.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, interlock.testing.schema_instance, "
         "interlock.testing.fake_upstream; interlock.testing.fake_upstream._wire_formats(); "
         "print(' '.join(m for m in sys.modules if m.startswith('interlock.')))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert loaded and all(m.startswith("interlock.testing") for m in loaded), loaded
