"""OpenAI chunks rendered from stream deltas: `ChunkRenderer.sse` writes exactly the
bytes of orjson-serialised `ChunkRenderer.chunk` dicts."""

from __future__ import annotations

import orjson

from interlock.openai_response import ChunkRenderer
from interlock.types import StreamDelta, ToolCallDelta, Usage

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


def test_sse_is_byte_for_byte_the_serialised_chunks() -> None:
    by_chunk = ChunkRenderer("chatcmpl-1")
    expected = b"".join(b"data: " + orjson.dumps(c) + b"\n\n"
                        for c in map(by_chunk.chunk, DELTAS) if c is not None)
    for split in range(len(DELTAS) + 1):
        by_bytes = ChunkRenderer("chatcmpl-1")
        by_bytes.created = by_chunk.created
        got = by_bytes.sse(DELTAS[:split]) + by_bytes.sse(DELTAS[split:])
        assert got == expected, split
        assert by_bytes.model == by_chunk.model == "gpt-x-2024"


def test_sse_of_nothing_is_empty() -> None:
    assert ChunkRenderer("r").sse([]) == b""


def test_legacy_sse_is_byte_for_byte_its_chunks_with_only_the_first_call() -> None:
    deltas = [*DELTAS[:4],
              StreamDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", '{"a"'),
                                      ToolCallDelta(1, "call_2", "g", "")]),
              StreamDelta(tool_calls=[ToolCallDelta(1, None, None, '{"b": 2}')]),
              StreamDelta(tool_calls=[ToolCallDelta(0, None, None, ": 1}")],
                          finish_reason="tool_calls")]
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
