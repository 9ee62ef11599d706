"""The short ways a streamed call's usual event takes (text-only deltas) give
exactly what the general ways give: the SSE split, the chunk decoding, the
accumulated response and the rendered bytes."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import astuple
from typing import Any

import orjson
import pytest
from tests.adapters.fed_stream import Reads, opened

from interlock.adapters.base import DeltaBatch, SseParser, StreamAccumulator, decode_texts
from interlock.adapters.openai import chunk_delta, plain_text
from interlock.adapters.openai.stream_reading import _TextEvents
from interlock.adapters.openai.stream_reading import read_batches as _stream_batches
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


def _frame(chunk: Any) -> bytes:
    return b"data: " + (chunk if isinstance(chunk, bytes) else orjson.dumps(chunk)) + b"\n\n"


class _Reads(Reads):
    """A response body cut into network reads at the given offsets."""

    def __init__(self, chunks: list[Any], cuts: list[int] | None = None) -> None:
        body = b"".join(_frame(c) for c in chunks)
        edges = [0, *sorted(cuts or []), len(body)]
        super().__init__(*[body[a:b] for a, b in itertools.pairwise(edges) if b > a])


class _ByteByByte(_Reads):
    """Every byte its own read: no event is ever whole in one read."""

    async def reads(self) -> AsyncIterator[bytes]:
        for data in self._reads:
            for i in range(len(data)):
                yield data[i:i + 1]


async def _batches(feed: Reads) -> list[DeltaBatch]:
    dep = Deployment(name="d", group="g", provider="openai", model="m",
                     api_base="http://127.0.0.1:9/v1")
    return [b async for b in _stream_batches(opened(feed), dep)]


def _deltas(batches: list[DeltaBatch]) -> list[tuple[Any, ...]]:
    """Every delta of the batches in order, literals decoded, as tuples."""
    out = []
    for batch in batches:
        out += [astuple(StreamDelta(text)) for text in decode_texts(batch.texts)]
        out += [astuple(d) for d in batch.deltas]
    return out


STREAM: list[Any] = [
    _variant(delta={"role": "assistant", "content": ""}),
    TEXT, _variant(delta={"content": "b"}), _variant(delta={"content": "c"}),
    _variant(delta={"reasoning_content": "r"}),  # ends the run of texts
    _variant(delta={"content": "d"}),
    _variant(delta={}, finish_reason="stop"),
    _variant(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 4}),
    b"[DONE]",
]


async def test_a_read_is_texts_up_to_its_first_other_delta() -> None:
    first, rest = await _batches(_Reads(STREAM))
    assert not first.texts and first.deltas[0].id == "c1"
    assert decode_texts(rest.texts) == ["hé \"q\"", "b", "c"] and rest.final
    assert [d.reasoning or d.text or d.finish_reason or d.usage for d in rest.deltas][:3] == [
        "r", "d", "stop"]
    by_byte = _deltas(await _batches(_ByteByByte(STREAM)))
    assert _deltas([first, rest]) == by_byte


async def test_a_stream_of_text_only_is_texts_after_its_first_delta() -> None:
    batches = await _batches(_Reads([STREAM[0], TEXT, TEXT, b"[DONE]"]))
    assert [(len(b.deltas), len(b.texts)) for b in batches] == [(1, 0), (0, 2)]


# Text events in OpenAI's own layout (as the fake sends them), which the adapter
# takes off the wire in one regex pass without decoding them.
def _openai_text(literal: bytes, *, extra: bytes = b"", role: bool = False) -> bytes:
    delta = (b'"role":"assistant",' if role else b"") + b'"content":' + literal
    return (b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":17,"model":"m",'
            b'"service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,'
            b'"delta":{' + delta + b'},"logprobs":null,"finish_reason":null}],"usage":null'
            + extra + b"}")


def _taken(event: bytes) -> list[bytes]:
    """The literal `_TextEvents` takes from this event (a chunk's JSON), if any:
    met first in a stream, where the whole event is matched, and after a text
    event of each test layout, where an event that starts with the same bytes is
    matched from its literal on. The two ways must agree."""
    alone, _ = _TextEvents().take(_frame(event))
    for teacher in (orjson.dumps(TEXT), _openai_text(b'"x"')):
        events = _TextEvents()
        assert events.take(_frame(teacher))[0]
        assert events.take(_frame(event))[0] == alone, teacher
    return alone


async def test_openai_layout_text_events_are_taken_as_literals() -> None:
    literals = [b'"plain"', rb'"caf\u00e9 \ud83d\ude00"', '"naïve ✓"'.encode(),
                rb'"q\"uote\\ \/ \n\t"']
    events = [_openai_text(lit) for lit in literals]
    events.append(_openai_text(b'"padded"', extra=b',"obfuscation":"Zx9"'))
    events.append(_openai_text(b'"with role"', role=True))  # as Ollama repeats it
    stream = [STREAM[0], *events, STREAM[6], b"[DONE]"]
    first, rest = await _batches(_Reads(stream))  # one read: the first delta, then texts
    assert list(rest.texts) == [*literals, b'"padded"', b'"with role"']
    assert _deltas([first, rest]) == _deltas(await _batches(_ByteByByte(stream)))
    assert decode_texts(rest.texts)[:4] == ["plain", "café 😀", "naïve ✓", 'q"uote\\ / \n\t']


@pytest.mark.parametrize("literal", [
    rb'"\ud800 lone"',     # a lone surrogate escape: orjson refuses it
    rb'"\udc00"',         # a low surrogate first
    rb'"bad \x escape"',   # an escape JSON does not have
    b'"raw \x01 byte"',   # a raw control character
    b'""',                 # empty: no text, so no text delta
    b'"a" "b"',            # not one string
])
def test_events_that_are_not_valid_text_are_left_to_the_decoder(literal: bytes) -> None:
    assert not _taken(_openai_text(literal))


def test_no_event_the_decoder_would_not_make_a_text_delta_is_taken() -> None:
    assert _taken(orjson.dumps(TEXT))
    with_role = _variant(delta={"role": "assistant", "content": "x"})
    # Not plain_text's short way, but a text delta all the same after the first.
    assert astuple(chunk_delta(with_role, first=False)) == astuple(StreamDelta("x"))  # type: ignore[arg-type]
    assert _taken(orjson.dumps(with_role))
    for chunk in NOT_PLAIN:
        if chunk is not with_role and chunk != with_role:
            assert not _taken(orjson.dumps(chunk)), chunk
    # The layout's other fields with other values are not text-only either.
    for old, new in [(b'"finish_reason":null', b'"finish_reason":"stop"'),
                     (b'"usage":null', b'"usage":{"prompt_tokens":1}'),
                     (b'"index":0', b'"index":1'),
                     (b'"object":"chat.completion.chunk"', b'"object":"other"')]:
        event = _openai_text(b'"x"').replace(old, new)
        assert not _taken(event), new


def test_later_events_are_matched_whole_when_their_start_differs() -> None:
    events = _TextEvents()
    first = _openai_text(b'"a"', extra=b',"obfuscation":"Zx9"')
    other_id = _openai_text(b'"b"').replace(b"chatcmpl-1", b"chatcmpl-2")
    quoted = _openai_text(rb'"\"},\"logprobs\":null"')  # what follows a literal, escaped
    forged = _openai_text(b'"c"},"logprobs":null,"finish_reason":null}],"usage":null,"d":"e"')
    tail = [b"data: [DONE]", b""]
    body = b"\n\n".join([b"data: " + e for e in (first, other_id, quoted, forged)] + tail)
    texts, rest = events.take(body)
    # The second event differs before its literal: matched whole, and taken.
    assert texts == [b'"a"', b'"b"', rb'"\"},\"logprobs\":null"']
    assert rest == b"data: " + forged + b"\n\n" + b"\n\n".join(tail)
    assert events.take(b"data: " + first + b"\n\ndata: " + first[:40]) == (
        [b'"a"'], b"data: " + first[:40])
    assert events.take(b"data: [DONE]\n\n") == ([], b"data: [DONE]\n\n")


async def test_reads_cut_anywhere_give_the_same_deltas() -> None:
    rng = random.Random(11)
    texts = [_openai_text(lit) for lit in (b'"a"', rb'"b\u00e9"', '"c✓"'.encode())] * 3
    stream = [STREAM[0], *texts, TEXT, STREAM[4], *texts, STREAM[6], STREAM[7], b"[DONE]"]
    want = _deltas(await _batches(_ByteByByte(stream)))
    size = len(b"".join(_frame(c) for c in stream))
    for _ in range(300):
        cuts = rng.sample(range(1, size), rng.randrange(0, 12))
        assert _deltas(await _batches(_Reads(stream, cuts))) == want, cuts


async def test_text_bytes_that_are_not_utf8_are_read_with_replacement() -> None:
    bad = _openai_text(b'"a\xff"')
    batches = await _batches(_Reads([STREAM[0], bad, STREAM[6], b"[DONE]"]))
    assert [d[0] for d in _deltas(batches)][1:3] == ["a\ufffd", None]


async def test_crlf_events_take_the_general_way_with_the_same_result() -> None:
    stream = [STREAM[0], _openai_text(b'"a"'), _openai_text(b'"b"'), b"[DONE]"]
    body = b"".join(_frame(c) for c in stream).replace(b"\n", b"\r\n")
    assert [d[0] for d in _deltas(await _batches(Reads(body)))] == [None, "a", "b"]


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


def _as_texts(count: int) -> tuple[list[bytes], list[StreamDelta]]:
    """DELTAS[1:] as a batch whose first `count` deltas (text-only) are literals."""
    rest = DELTAS[1:]
    return [orjson.dumps(d.text) for d in rest[:count]], rest[count:]


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("count", [0, 1, 2])  # "a" and "\"b\"\n" are text-only
def test_rendered_texts_are_the_bytes_of_the_general_way(count: int,
                                                          include_usage: bool) -> None:
    general = ChunkRenderer("r", False, include_usage)
    short = ChunkRenderer("r", False, include_usage)
    short.created = general.created
    want = general.sse(DELTAS[:1]) + general.sse(DELTAS[1:])
    texts, deltas = _as_texts(count)
    assert short.sse(DELTAS[:1]) + short.sse(deltas, texts) == want


def test_texts_before_the_first_chunk_are_rendered_the_general_way() -> None:
    general, short = ChunkRenderer("r"), ChunkRenderer("r")
    short.created = general.created
    assert short.sse([], [b'"a"', b'"\\u00e9"']) == general.sse(
        [StreamDelta("a"), StreamDelta("\u00e9")])


def test_a_literal_goes_out_as_it_came_and_parses_to_the_same_chunk() -> None:
    general, short = ChunkRenderer("r"), ChunkRenderer("r")
    short.created = general.created
    head = DELTAS[:1]
    want = general.sse(head) + general.sse([StreamDelta("café")])
    got = short.sse(head) + short.sse([], [b'"caf\\u00e9"'])
    assert b"caf\\u00e9" in got
    def chunks(sse: bytes) -> list[Any]:
        return [orjson.loads(event[len(b"data: "):]) for event in sse.split(b"\n\n") if event]
    assert chunks(got) == chunks(want)


@pytest.mark.parametrize("count", [0, 1, 2])
def test_accumulated_response_is_the_same_with_texts(count: int) -> None:
    one_by_one, batched = StreamAccumulator(), StreamAccumulator()
    for delta in DELTAS:
        one_by_one.add(delta)
    batched.extend(DELTAS[:1])
    texts, deltas = _as_texts(count)
    batched.extend(deltas, texts=texts)
    assert batched.response() == one_by_one.response()
    assert batched.deltas == one_by_one.deltas == len(DELTAS)
    assert one_by_one.text == batched.text == "a\"b\"\nc" and one_by_one.has_tool_calls


def test_texts_and_text_deltas_keep_their_order() -> None:
    acc = StreamAccumulator()
    acc.extend([StreamDelta("b")], texts=[b'"a"'])
    acc.extend([], texts=[b'"c"'])
    assert acc.text == "abc"
    acc.extend([StreamDelta("e")], texts=[b'"d"'])
    assert acc.response().content == "abcde"


def test_decode_texts_reads_a_broken_literal_leniently() -> None:
    assert decode_texts([b'"a"', rb'"\ud800"', b'"c"']) == ["a", "\\ud800", "c"]


@pytest.mark.parametrize("options", [{}, {"include_obfuscation": False}])
async def test_the_fake_pads_chunks_as_openai_does_and_they_are_taken_as_texts(
        options: dict[str, Any]) -> None:
    wire = OpenAIWire()
    body = {"model": "gpt-4o", "stream": True, "stream_options": options}
    frames = wire.stream(Route("chat", "gpt-4o", True), body,
                         Reply(text="one two three four", chunk_chars=4))
    chunks = [orjson.loads(f[len(b"data: "):]) for f in frames if f != b"data: [DONE]\n\n"]
    padded = [c.get("obfuscation") for c in chunks]
    assert all(padded) if not options else not any(padded)
    assert len(set(padded)) > 1 or options  # the padding's length varies
    # The wire's own bytes, in two reads.
    first, rest = await _batches(Reads(frames[0], b"".join(frames[1:])))
    assert not first.texts and len(rest.texts) == 5
    assert "".join(decode_texts(rest.texts)) == "one two three four"
