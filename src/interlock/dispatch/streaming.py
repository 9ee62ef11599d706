"""`DispatchStream`: a stream that has already produced its first delta.

Failover before the first delta happens inside `Dispatcher.open_stream`; once
a caller holds a `DispatchStream`, bytes may have reached its client, so a
later failure is never hidden: it is recorded in `attempts` and raised from
the iterator (the server turns it into an error event and `[DONE]`). With
`stream_continuation: true`, and only when no tool call has been streamed,
the stream may instead continue once on another deployment, which is asked
to carry on from the text already sent.

Imports: the standard library, `types`, `errors`, `catalog`,
`adapters.base`, `dispatch.outcome`, `dispatch.run`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from interlock.adapters.base import StreamAccumulator
from interlock.catalog import Deployment
from interlock.dispatch.outcome import Attempt
from interlock.dispatch.run import Run, Success
from interlock.errors import ProviderError
from interlock.types import ChatResponse, StreamDelta

Opened = tuple[AsyncIterator[StreamDelta], StreamDelta]


class StreamOwner(Protocol):
    """What the dispatcher does for a stream at its end (implemented by Dispatcher)."""

    async def stream_finished(self, run: Run, success: Success[Opened],
                              response: ChatResponse | None) -> None: ...

    async def stream_failed(self, run: Run, success: Success[Opened],
                            error: ProviderError) -> None: ...

    async def stream_continue(self, run: Run, partial_text: str
                              ) -> Success[Opened] | None: ...


async def close_iterator(iterator: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class DispatchStream:
    def __init__(self, owner: StreamOwner, run: Run, success: Success[Opened],
                 *, continuation: bool = False) -> None:
        self._owner = owner
        self._run = run
        self._success = success
        self._continuation = continuation
        self._acc = StreamAccumulator()
        self._done = False
        self._iterating = False

    @property
    def deployment(self) -> Deployment:
        return self._success.picked.deployment

    @property
    def group(self) -> str:
        return self._success.group

    @property
    def attempts(self) -> list[Attempt]:
        return self._run.attempts

    def __aiter__(self) -> AsyncIterator[StreamDelta]:
        if self._iterating:
            raise RuntimeError("a DispatchStream can be iterated only once")
        self._iterating = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamDelta]:
        try:
            while True:
                iterator, first = self._success.value
                self._acc.add(first)
                yield first
                error: ProviderError | None = None
                try:
                    async for delta in iterator:
                        self._acc.add(delta)
                        yield delta
                except ProviderError as exc:
                    error = exc
                if error is None:
                    break
                await self._after_failure(error)
            self._done = True
            await self._owner.stream_finished(self._run, self._success, self._acc.response())
        finally:
            if not self._done:
                await self.aclose()

    async def _after_failure(self, error: ProviderError) -> None:
        """Record the failure; continue on another deployment or raise it."""
        await self._owner.stream_failed(self._run, self._success, error)
        successor = None
        if self._can_continue():
            self._run.continuations += 1
            successor = await self._owner.stream_continue(self._run, self._acc.text)
        if successor is None:
            self._done = True
            raise error
        self._success = successor

    def _can_continue(self) -> bool:
        # One continuation per stream: a second break is reported, not chased.
        return (self._continuation and not self._acc.has_tool_calls
                and self._run.continuations < 1)

    def response(self) -> ChatResponse:
        """The accumulated final response; complete once iteration has ended."""
        return self._acc.response()

    async def aclose(self) -> None:
        """The client went away: cancel the upstream call and settle what was used."""
        if self._done:
            return
        self._done = True
        iterator, _ = self._success.value
        await close_iterator(iterator)
        self._success.attempt.outcome = "cancelled"
        await self._owner.stream_finished(self._run, self._success, None)
