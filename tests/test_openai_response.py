"""OpenAI chunks rendered from stream deltas: `ChunkRenderer.sse` writes exactly the
bytes of orjson-serialised `ChunkRenderer.chunk` dicts."""

from __future__ import annotations

import orjson
import pytest

from interlock.openai_response import ChunkRenderer, completion_dict
from interlock.types import ChatResponse, StreamDelta, ToolCall, ToolCallDelta, Usage

DELTAS = [
    StreamDelta(id="up-1", model="gpt-x"),  # the first: the role, even when empty
    StreamDelta(usage=Usage(1, 2)),  # shows nothing: no chunk
    StreamDelta(text="hé \"quoted\"\n"),
    StreamDelta(reasoning="thinking", model="gpt-x-2024"),  # the model name changes
    StreamDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", '{"a"'),
                            ToolCallDelta(1, None, None, "")]),
    StreamDelta(text="x", finish_reason="tool_calls"),
    StreamDelta(finish_reason="stop", usage=Usage(3, 4)),
]


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("legacy", [False, True])
def test_sse_is_byte_for_byte_the_serialised_chunks(include_usage: bool, legacy: bool) -> None:
    by_chunk = ChunkRenderer("chatcmpl-1", legacy, include_usage)
    chunks = [c for c in map(by_chunk.chunk, DELTAS) if c is not None]
    expected = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    for split in range(len(DELTAS) + 1):
        by_bytes = ChunkRenderer("chatcmpl-1", legacy, include_usage)
        by_bytes.created = by_chunk.created
        got = by_bytes.sse(DELTAS[:split]) + by_bytes.sse(DELTAS[split:])
        assert got == expected, split
        assert by_bytes.model == by_chunk.model == "gpt-x-2024"
    # Under include_usage every chunk has a null usage, after its choices, as
    # OpenAI's have; the usage chunk that ends such a stream carries the counts.
    assert all(("usage" in c) is include_usage for c in chunks)
    assert all(c.get("usage", None) is None for c in chunks)
    assert by_chunk.usage_chunk(Usage(3, 4))["usage"]["completion_tokens"] == 4
    if include_usage:
        assert expected.count(b'}],"usage":null}\n\n') == len(chunks)


def test_sse_of_nothing_is_empty() -> None:
    assert ChunkRenderer("r").sse([]) == b""


def test_legacy_sse_is_byte_for_byte_its_chunks_with_only_the_first_call() -> None:
    deltas = [*DELTAS[:4],
              StreamDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", '{"a"'),
                                      ToolCallDelta(1, "call_2", "g", "")]),
              StreamDelta(tool_calls=[ToolCallDelta(1, None, None, '{"b": 2}')]),
              StreamDelta(tool_calls=[ToolCallDelta(0, None, None, ": 1}")]),
              StreamDelta(finish_reason="tool_calls", logprobs={"content": []})]
    by_chunk = ChunkRenderer("chatcmpl-1", legacy_functions=True)
    chunks = [c for c in map(by_chunk.chunk, deltas) if c is not None]
    by_bytes = ChunkRenderer("chatcmpl-1", legacy_functions=True)
    by_bytes.created = by_chunk.created
    assert by_bytes.sse(deltas) == b"".join(b"data: " + orjson.dumps(c) + b"\n\n"
                                            for c in chunks)
    # The second call's pieces make no chunk; the first call's come as function_call.
    calls = [c["choices"][0]["delta"].get("function_call") for c in chunks]
    assert [c for c in calls if c] == [{"name": "f", "arguments": '{"a"'},
                                       {"arguments": ": 1}"}]
    assert all("tool_calls" not in c["choices"][0]["delta"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


def test_the_usual_stream_renders_without_the_legacy_shape() -> None:
    # The shape is chosen once a stream: the usual renderer is the base class,
    # whose hot path tests nothing per chunk for the legacy shape.
    assert type(ChunkRenderer("r")) is ChunkRenderer
    assert type(ChunkRenderer("r", False)) is ChunkRenderer
    assert isinstance(ChunkRenderer("r", True), ChunkRenderer)
    renderer = ChunkRenderer("r")
    chunks = [renderer.chunk(d) for d in (
        StreamDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", "{}"),
                                ToolCallDelta(1, "call_2", "g", "{}")]),
        StreamDelta(finish_reason="tool_calls"))]
    assert chunks[0] is not None and chunks[1] is not None
    delta = chunks[0]["choices"][0]["delta"]
    assert [c["id"] for c in delta["tool_calls"]] == ["call_1", "call_2"]
    assert "function_call" not in delta
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"


ANSWER = ChatResponse("up-1", "gpt-x", None, finish_reason="tool_calls", tool_calls=[
    ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
    ToolCall("call_2", "get_time", '{"city": "Tokyo"}')])


def test_a_legacy_answer_has_the_first_call_as_function_call() -> None:
    message = completion_dict(ANSWER, request_id="r", legacy_functions=True)["choices"][0]
    assert message["finish_reason"] == "function_call"
    assert message["message"]["function_call"] == {"name": "get_weather",
                                                   "arguments": '{"city": "Paris"}'}
    assert "tool_calls" not in message["message"]


def test_an_answer_to_tools_keeps_every_call() -> None:
    choice = completion_dict(ANSWER, request_id="r")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["id"] for c in choice["message"]["tool_calls"]] == ["call_1", "call_2"]
    assert "function_call" not in choice["message"]


def test_a_legacy_answer_without_calls_keeps_its_finish_reason() -> None:
    text = ChatResponse("up-1", "gpt-x", "Sunny.", finish_reason="stop")
    choice = completion_dict(text, request_id="r", legacy_functions=True)["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "Sunny."
    assert "function_call" not in choice["message"]


def test_a_message_has_openai_s_refusal_and_annotations_fields() -> None:
    from openai.types.chat import ChatCompletion

    text = ChatResponse("up-1", "gpt-x", "Sunny.", finish_reason="stop")
    body = completion_dict(text, request_id="r")
    message = body["choices"][0]["message"]
    # As OpenAI's documented shape has them: null and an empty list.
    assert (message["refusal"], message["annotations"]) == (None, [])
    assert ChatCompletion.model_validate(body).choices[0].message.annotations == []
