"""The short ways a streamed call's usual event takes (text-only deltas) give
exactly what the general ways give: the SSE split, the chunk decoding, the
accumulated response and the rendered bytes."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import astuple
from typing import Any

import orjson
import pytest

from interlock.adapters.base import DeltaBatch, SseParser, StreamAccumulator
from interlock.adapters.openai import _stream_batches, chunk_delta, plain_text
from interlock.catalog import Deployment
from interlock.openai_response import ChunkRenderer
from interlock.testing.openai_wire import OpenAIWire
from interlock.testing.script import Reply
from interlock.testing.wire import Route
from interlock.types import StreamDelta, ToolCallDelta, Usage

TEXT = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hé \"q\""}, "logprobs": None,
                     "finish_reason": None}], "usage": None}


def _variant(**changes: Any) -> dict[str, Any]:
    chunk = orjson.loads(orjson.dumps(TEXT))
    choice = chunk["choices"][0]
    for key, value in changes.items():
        if key in ("delta", "finish_reason", "index"):
            choice[key] = value
        else:
            chunk[key] = value
    return chunk


NOT_PLAIN = [
    _variant(usage={"prompt_tokens": 1, "completion_tokens": 2}),
    _variant(finish_reason="stop"),
    _variant(delta={"role": "assistant", "content": "x"}),
    _variant(delta={"content": ""}),
    _variant(delta={"content": 7}),
    _variant(delta={"reasoning_content": "think"}),
    _variant(delta={"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}),
    _variant(index=1),
    _variant(choices=[TEXT["choices"][0], TEXT["choices"][0]]),
    _variant(choices={"0": TEXT["choices"][0]}),
    _variant(choices=["x"]),
    _variant(x_groq={"usage": {"prompt_tokens": 1}}),
    _variant(error={"message": "boom"}),
    [TEXT],
]


def test_plain_text_takes_only_what_chunk_delta_would_make_a_text_delta() -> None:
    assert plain_text(TEXT) == "hé \"q\""
    # OpenAI pads each chunk with an `obfuscation` string: still text only.
    assert plain_text({**TEXT, "obfuscation": "Zx9"}) == "hé \"q\""
    assert astuple(chunk_delta(TEXT, first=False)) == astuple(StreamDelta("hé \"q\""))  # type: ignore[arg-type]
    for chunk in NOT_PLAIN:
        assert plain_text(chunk) is None, chunk


class _OneRead:
    """A response whose whole body arrives in one read."""

    def __init__(self, chunks: list[Any]) -> None:
        self._lines = [line for c in chunks
                       for line in (b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)),
                                    b"")]

    async def line_batches(self) -> AsyncIterator[list[bytes]]:
        yield self._lines


class _LineByLine(_OneRead):
    async def line_batches(self) -> AsyncIterator[list[bytes]]:
        for line in self._lines:
            yield [line]


async def _batches(feed: _OneRead) -> list[DeltaBatch]:
    dep = Deployment(name="d", group="g", provider="openai", model="m",
                     api_base="http://127.0.0.1:9/v1")
    return [b async for b in _stream_batches(feed, dep)]  # type: ignore[arg-type]


STREAM: list[Any] = [
    _variant(delta={"role": "assistant", "content": ""}),
    TEXT, _variant(delta={"content": "b"}), _variant(delta={"content": "c"}),
    _variant(delta={"reasoning_content": "r"}),  # ends the plain run
    _variant(delta={"content": "d"}),
    _variant(delta={}, finish_reason="stop"),
    _variant(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 4}),
    b"[DONE]",
]


async def test_a_read_is_plain_up_to_its_first_other_delta() -> None:
    first, rest = await _batches(_OneRead(STREAM))
    assert first.plain == 0 and first.deltas[0].id == "c1"
    assert rest.plain == 3 and rest.final
    assert [d.text for d in rest.deltas[:3]] == ["hé \"q\"", "b", "c"]
    by_line = [d for b in await _batches(_LineByLine(STREAM)) for d in b.deltas]
    assert [astuple(d) for d in first.deltas + rest.deltas] == [astuple(d) for d in by_line]


async def test_a_stream_of_text_only_is_plain_after_its_first_delta() -> None:
    batches = await _batches(_OneRead([STREAM[0], TEXT, TEXT, b"[DONE]"]))
    assert [(len(b.deltas), b.plain) for b in batches] == [(1, 0), (2, 2)]


def _lines(rng: random.Random) -> list[bytes]:
    vocabulary = [b"data: {\"a\":1}", b"data: x", b"data:y", b"data", b"", b"", b"",
                  b": comment", b"event: ping", b"id: 3", b"data: [DONE]"]
    return [rng.choice(vocabulary) for _ in range(rng.randrange(0, 12))]


def test_sse_data_is_the_same_in_one_read_or_line_by_line_and_from_feed() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        lines = _lines(rng)
        whole, single, events = SseParser(), SseParser(), SseParser()
        got = whole.feed_data(list(lines)) + whole.end_data()
        want = [d for line in lines for d in single.feed_data([line])] + single.end_data()
        assert got == want, lines
        named = events.feed(list(lines)) + events.end()
        assert [e.data.encode() for e in named] == got, lines


def test_sse_after_an_open_event_takes_the_general_way() -> None:
    parser = SseParser()
    assert parser.feed_data([b"data: a"]) == []
    assert parser.feed_data([b"data: b", b"", b"data: c", b""]) == [b"a\nb", b"c"]


DELTAS = [StreamDelta(id="up", model="m"), StreamDelta("a"), StreamDelta("\"b\"\n"),
          StreamDelta("c", finish_reason="stop"), StreamDelta(usage=Usage(1, 2)),
          StreamDelta(tool_calls=[ToolCallDelta(0, "t", "f", "{}")])]


@pytest.mark.parametrize("plain", [0, 1, 2])  # "a" and "\"b\"\n" are text-only
def test_rendered_plain_deltas_are_the_bytes_of_the_general_way(plain: int) -> None:
    head, rest = DELTAS[:1], DELTAS[1:]
    general, short = ChunkRenderer("r"), ChunkRenderer("r")
    short.created = general.created
    want = general.sse(head) + general.sse(rest)
    got = short.sse(head) + short.sse(rest, plain=plain)
    assert got == want


@pytest.mark.parametrize("plain", [0, 1, 2])
def test_accumulated_response_is_the_same_with_plain_batches(plain: int) -> None:
    one_by_one, batched = StreamAccumulator(), StreamAccumulator()
    for delta in DELTAS:
        one_by_one.add(delta)
    batched.extend(DELTAS[:1])
    batched.extend(DELTAS[1:], plain=plain)
    assert batched.response() == one_by_one.response()
    assert batched.deltas == one_by_one.deltas == len(DELTAS)
    assert one_by_one.text == "a\"b\"\nc" and one_by_one.has_tool_calls



@pytest.mark.parametrize("options", [{}, {"include_obfuscation": False}])
async def test_the_fake_pads_chunks_as_openai_does_and_they_stay_plain(
        options: dict[str, Any]) -> None:
    wire = OpenAIWire()
    body = {"model": "gpt-4o", "stream": True, "stream_options": options}
    frames = wire.stream(Route("chat", "gpt-4o", True), body,
                         Reply(text="one two three four", chunk_chars=4))
    chunks = [orjson.loads(f[len(b"data: "):]) for f in frames if f != b"data: [DONE]\n\n"]
    padded = [c.get("obfuscation") for c in chunks]
    assert all(padded) if not options else not any(padded)
    assert len(set(padded)) > 1 or options  # the padding's length varies
    first, *rest = await _batches(_OneRead([*chunks, b"[DONE]"]))
    assert first.plain == 0 and rest[0].plain == 5
