"""Scripted network reads, opened the way the OpenAI adapter opens a streamed
response: for the stream cases the fake upstream cannot produce."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol


class Feed(Protocol):
    def reads(self) -> AsyncIterator[bytes]: ...


class Reads:
    """A feed whose network reads are the given bytes, one argument a read."""

    def __init__(self, *reads: bytes) -> None:
        self._reads = reads

    async def reads(self) -> AsyncIterator[bytes]:
        for data in self._reads:
            yield data


class _Answered:
    """A 200 event-stream answer whose body is the feed's reads, read the way
    `StreamingResponse` is: start, `next_read` until b"", stop."""

    def __init__(self, reads: Callable[[], AsyncIterator[bytes]]) -> None:
        self.status = 200
        self.headers = {"content-type": "text/event-stream"}
        self._reads = reads()
        self.reading = False

    def start_reading(self) -> None:
        self.reading = True

    def stop_reading(self) -> None:
        self.reading = False

    async def next_read(self) -> bytes:
        assert self.reading, "next_read before start_reading or after stop_reading"
        return await anext(self._reads, b"")


@contextlib.asynccontextmanager
async def opened(feed: Feed) -> AsyncIterator[Any]:
    yield _Answered(feed.reads)
