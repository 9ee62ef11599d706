"""Server-sent events parsed from line batches, however the reads split them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from interlock.adapters.base import ServerSentEvent, SseParser, iter_sse

STREAM = [
    b": keep-alive comment", b"event: message_start", b'data: {"a": 1}', b"",
    b"data: first line", b"data:second line", b"", b"", b"data: [DONE]",
]
EXPECTED = [
    ServerSentEvent("message_start", '{"a": 1}'),
    ServerSentEvent(None, "first line\nsecond line"),
    ServerSentEvent(None, "[DONE]"),  # no closing blank line: emitted at the end
]


async def _batches(lines: list[bytes], size: int) -> AsyncIterator[list[bytes]]:
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


async def test_events_are_the_same_whatever_the_batch_size() -> None:
    for size in (1, 2, 3, len(STREAM)):
        got = [event async for event in iter_sse(_batches(STREAM, size))]
        assert got == EXPECTED, size


def test_parser_keeps_an_event_open_across_batches() -> None:
    parser = SseParser()
    assert parser.feed([b"event: delta", b"data: x"]) == []
    assert parser.feed([b"data: y", b""]) == [ServerSentEvent("delta", "x\ny")]
    assert parser.end() == []


def test_feed_data_gives_the_same_data_undecoded() -> None:
    for size in (1, 2, 3, len(STREAM)):
        parser = SseParser()
        got: list[bytes] = []
        for start in range(0, len(STREAM), size):
            got += parser.feed_data(STREAM[start : start + size])
        got += parser.end_data()
        assert got == [e.data.encode() for e in EXPECTED], size


def test_feed_data_field_forms() -> None:
    parser = SseParser()
    # "data" without a colon is an empty value; other fields and names are skipped.
    lines = [b"data", b"data: x", b"", b"id: 7", b"retry: 10", b"datax: no", b"data:y", b""]
    assert parser.feed_data(lines) == [b"\nx", b"y"]
    assert parser.end_data() == []
