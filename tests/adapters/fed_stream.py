"""Scripted network reads, opened the way the OpenAI adapter opens a streamed
response: for the stream cases the fake upstream cannot produce."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol


class Feed(Protocol):
    def reads(self) -> AsyncIterator[bytes]: ...


class _Answered:
    """A 200 event-stream answer whose body is the feed's reads."""

    def __init__(self, reads: Callable[[], AsyncIterator[bytes]]) -> None:
        self.status = 200
        self.headers = {"content-type": "text/event-stream"}
        self.reads = reads


@contextlib.asynccontextmanager
async def opened(feed: Feed) -> AsyncIterator[Any]:
    yield _Answered(feed.reads)
