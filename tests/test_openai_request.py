"""OpenAI request bodies become neutral requests, and bad ones say what is wrong."""

from __future__ import annotations

import pytest

from interlock.errors import InvalidRequest
from interlock.openai_request import _OPTIONAL, parse_chat_request
from interlock.types import ImagePart, TextPart


def body(**over):
    base = {"model": "budget", "messages": [{"role": "user", "content": "hi"}]}
    base.update(over)
    return base


def test_full_request_is_translated_field_by_field():
    req = parse_chat_request(body(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                   "detail": "low"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "look", "arguments": "{\"q\": 1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        ],
        stream=True, temperature=0.2, top_p=0.9, max_completion_tokens=50, stop="END",
        tools=[{"type": "function", "function": {"name": "look", "parameters": {
            "type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "look"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object"}}},
        user="u1", seed=7, fallbacks=["budget"], metadata={"team": "a"},
        timeout=2.5, num_retries=0, mock_response="canned",
    ))
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert isinstance(req.messages[1].parts[1], ImagePart)
    assert req.messages[1].parts[1].detail == "low"
    assert req.messages[2].tool_calls[0].arguments == "{\"q\": 1}"
    assert req.messages[3].tool_call_id == "c1"
    assert req.stream is True and req.temperature == 0.2 and req.top_p == 0.9
    assert req.max_tokens == 50 and req.stop == ["END"]
    assert req.tools[0].name == "look" and req.tool_choice == {"name": "look"}
    assert req.response_format.type == "json_schema"
    assert req.response_format.json_schema == {"type": "object"}
    assert req.extra == {"seed": 7}  # the Interlock-only fields are not sent upstream
    assert (req.timeout, req.num_retries, req.mock_response) == (2.5, 0, "canned")
    assert req.fallbacks == ["budget"] and req.metadata == {"team": "a"}
    assert isinstance(req.messages[0].parts[0], TextPart)


@pytest.mark.parametrize(("over", "param", "words"), [
    ({"model": None}, "model", "required"),
    ({"messages": []}, "messages", "non-empty"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "robot"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "required"),
    ({"temperature": 3}, "temperature", "between 0 and 2"),
    ({"temperature": "hot"}, "temperature", "a number"),
    ({"max_tokens": 0}, "max_tokens", "at least 1"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"stop": [1]}, "stop", "list of strings"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", "string"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "required"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0].type", "audio"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
    ({"stream_options": "yes"}, "stream_options", "an object"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage",
     "true or false"),
    ({"user": 5}, "user", "a string"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls", "true or false"),
    ({"drop_params": 1}, "drop_params", "true or false"),
    ({"timeout": "30s"}, "timeout", "a number"),
    ({"timeout": 0}, "timeout", "more than 0"),
    ({"timeout": 7200}, "timeout", "between 0 and 3600"),
    ({"num_retries": 1.5}, "num_retries", "an integer"),
    ({"num_retries": True}, "num_retries", "a boolean"),
    ({"num_retries": 21}, "num_retries", "between 0 and 20"),
    ({"mock_response": {"content": "x"}}, "mock_response", "a string"),
    ({"api_key": "sk-per-call"}, "api_key", "belong to the deployment"),
    ({"tags": {"team": "a"}}, "tags", "a string or a list of strings"),
    ({"messages": [{"role": "assistant", "content": "x",
                    "thinking_blocks": [{"type": "thinking", "thinking": "t"}]}]},
     "messages[0].thinking_blocks[0]", "as the answer gave it"),
    ({"metadata": {"tags": [1]}}, "metadata.tags", "a string or a list of strings"),
    ({"api_base": "http://elsewhere"}, "api_base", "belong to the deployment"),
    # Only an assistant turn may leave its content out or null (OpenAI's rule).
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "is required"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "is required"),
    # Found by feeding the gateway random bodies: each was a 500 before.
    ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": {"a": 1}, "content": "x"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": "user", "content": "x", "name": 5}]}, "messages[0].name",
     "a string"),
    ({"messages": [{"role": "assistant", "content": "x", "function_call": [1]}]},
     "messages[0].function_call", "an object"),
    ({"messages": [{"role": "assistant", "content": "x", "function_call": {"name": 1}}]},
     "messages[0].function_call.name", "a string"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": 7}]},
     "messages[0].tool_call_id", "a string"),
    ({"functions": 1.5}, "functions", "a list"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": "x"}}},
     "response_format.json_schema.schema", "a JSON schema object"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": [1]}}},
     "response_format.json_schema.name", "a string"),
    ({"tools": [{"type": "function", "function": {"name": "f", "description": False}}]},
     "tools[0].function.description", "a string"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
     "tools[0].function.strict", "true or false"),
])
def test_bad_fields_name_the_field_and_the_fix(over, param, words):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body(**over))
    assert info.value.param == param
    assert words in info.value.message


def test_more_than_one_choice_is_refused_rather_than_billed_and_lost():
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body(n=3))
    assert info.value.param == "n"
    assert info.value.code == "unsupported_parameter"
    assert "separate requests" in info.value.message
    assert parse_chat_request(body(n=1)).n == 1
    assert parse_chat_request(body(n=3, drop_params=True)).n is None


def test_body_must_be_an_object():
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_chat_request(["not", "an", "object"])


def test_tags_from_the_body_and_metadata_are_one_list_of_whole_tags():
    # LiteLLM takes a lone tag as a string; it must not be read as its letters.
    req = parse_chat_request(body(tags="private-data", metadata={"tags": ["eu", "private-data"]}))
    assert req.metadata["tags"] == ["private-data", "eu"]
    assert req.tags == {"private-data", "eu"}


def test_a_thought_signature_comes_back_from_either_place_clients_keep_it():
    def assistant(call_extra):
        return body(messages=[{"role": "assistant", "content": None, "tool_calls": [{
            "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"},
            **call_extra}]}])

    google = parse_chat_request(assistant(
        {"extra_content": {"google": {"thought_signature": "sig-g"}}}))
    litellm = parse_chat_request(assistant(
        {"provider_specific_fields": {"thought_signature": "sig-l"}}))
    odd = parse_chat_request(assistant({"extra_content": "not an object"}))
    assert google.messages[0].tool_calls[0].thought_signature == "sig-g"
    assert litellm.messages[0].tool_calls[0].thought_signature == "sig-l"
    assert odd.messages[0].tool_calls[0].thought_signature is None


@pytest.mark.parametrize("key", sorted(_OPTIONAL))
def test_every_optional_field_is_read(key: str) -> None:
    # Optional fields are parsed only when present (`_OPTIONAL`): each must still
    # be read, and so refused when mistyped.
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], key: [[]]}
    with pytest.raises(InvalidRequest):
        parse_chat_request(body)


def test_sdk_call_arguments_are_read_as_the_sdks_send_them():
    # extra_body's fields join the body (over the others, as the OpenAI SDK merges
    # them); max_retries is LiteLLM's and the SDK's name for the retries.
    req = parse_chat_request(body(temperature=0.1, max_retries=2,
                                  extra_body={"temperature": 0.5, "top_k": 3}))
    assert req.temperature == 0.5 and req.num_retries == 2
    assert req.extra == {"top_k": 3}
    assert parse_chat_request(body(max_retries=5, num_retries=1)).num_retries == 1
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body(extra_headers={"anthropic-beta": "x"}))
    assert info.value.param == "extra_headers"
    assert "litellm_params.extra_headers" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body(extra_body={"api_key": "sk-other"}))
    assert info.value.param == "api_key"
    with pytest.raises(InvalidRequest, match="'max_retries' must be"):
        parse_chat_request(body(max_retries=-1))


def test_legacy_function_results_answer_the_call_before_them():
    call = {"role": "assistant", "content": None,
            "function_call": {"name": "get_weather", "arguments": "{}"}}
    result = {"role": "function", "name": "get_weather", "content": "sunny"}
    req = parse_chat_request(body(
        messages=[{"role": "user", "content": "weather?"}, call, result,
                  {"role": "user", "content": "and now?"}, call, result],
        functions=[{"name": "get_weather", "parameters": {"type": "object"}}]))
    calls = [m.tool_calls[0].id for m in req.messages if m.role == "assistant"]
    answers = [m.tool_call_id for m in req.messages if m.role == "tool"]
    assert answers == calls  # each result names the call it answers
    assert len(set(calls)) == 2  # and no id repeats (Anthropic refuses that)


def test_a_request_with_functions_alone_is_marked_legacy():
    # Its answer goes back in the legacy shape (message.function_call).
    functions = [{"name": "f", "parameters": {"type": "object"}}]
    tools = [{"type": "function", "function": functions[0]}]
    assert parse_chat_request(body(functions=functions)).legacy_functions
    assert not parse_chat_request(body(tools=tools)).legacy_functions
    assert not parse_chat_request(body(tools=tools, functions=functions)).legacy_functions
    assert not parse_chat_request(body()).legacy_functions
