"""The OpenAI adapter reads a streamed body with `start_reading`, `next_read` and
`stop_reading`: however the stream ends, reading is stopped (its timers
cancelled), and nothing is read after it stops."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from tests.adapters.fed_stream import Reads, opened

from interlock.adapters.openai.stream_reading import read_batches as _stream_batches
from interlock.catalog import Deployment
from interlock.errors import ConnectionFailed

DEP = Deployment(name="d", group="g", provider="openai", model="m",
                 api_base="http://127.0.0.1:9/v1")


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@contextlib.asynccontextmanager
async def _recorded(feed: Reads, answers: list[Any]) -> AsyncIterator[Any]:
    async with opened(feed) as answer:
        answers.append(answer)
        yield answer


HEAD = _event({"role": "assistant", "content": "a"})
TEXT = _event({"content": "b"})
END = _event({}, "stop") + b"data: [DONE]\n\n"


@pytest.mark.parametrize("reads", [
    (HEAD, TEXT, END),                 # ends at [DONE]
    (HEAD, TEXT, END, b"ignored"),     # [DONE], with more on the wire
    (HEAD + TEXT + END,),              # everything in one read
])
async def test_a_finished_stream_stops_reading(reads: tuple[bytes, ...]) -> None:
    answers: list[Any] = []
    batches = [b async for b in _stream_batches(_recorded(Reads(*reads), answers), DEP)]
    assert batches[-1].final
    assert answers[0].reading is False


async def test_a_stream_cut_mid_answer_stops_reading_and_says_so() -> None:
    answers: list[Any] = []
    with pytest.raises(ConnectionFailed, match="ended without"):
        async for _ in _stream_batches(_recorded(Reads(HEAD, TEXT), answers), DEP):
            pass
    assert answers[0].reading is False


async def test_a_stream_left_after_its_first_delta_stops_reading() -> None:
    answers: list[Any] = []
    batches = _stream_batches(_recorded(Reads(HEAD, TEXT, END), answers), DEP)
    first = await anext(batches)
    assert first.deltas[0].text == "a"
    assert answers[0].reading is True
    await batches.aclose()
    assert answers[0].reading is False
