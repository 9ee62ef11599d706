"""`DispatchStream`: a stream that has already produced its first delta.

Failover before the first delta happens inside `Dispatcher.open_stream`; once
a caller holds a `DispatchStream`, bytes may have reached its client, so a
later failure is never hidden: it is recorded in `attempts` and raised from
the iterator (the server turns it into an error event and `[DONE]`). With
`stream_continuation: true`, and only when no tool call has been streamed,
the stream may instead continue once on another deployment, which is asked
to carry on from the text already sent.

The stream moves in `DeltaBatch`es, a network read at a time. Adapters that
yield single deltas are batched by `gathered`, which reads ahead in a task.

Imports: the standard library, `types`, `errors`, `catalog`,
`adapters.base`, `dispatch.outcome`, `dispatch.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from interlock.adapters.base import DeltaBatch, StreamAccumulator, flatten
from interlock.catalog import Deployment
from interlock.dispatch.outcome import Attempt
from interlock.dispatch.run import Run, Success
from interlock.errors import ProviderError
from interlock.types import ChatRequest, ChatResponse, StreamDelta

# The adapter's batches, and the first of them (never empty).
Opened = tuple[AsyncIterator[DeltaBatch], DeltaBatch]
# A read-ahead task lets the loop run after this many deltas in a row, so that an
# adapter that never waits cannot starve its consumer.
GATHER_AT_MOST = 256


class StreamOwner(Protocol):
    """What the dispatcher does for a stream at its end (implemented by Dispatcher)."""

    async def stream_finished(self, run: Run, success: Success[Opened],
                              response: ChatResponse | None) -> None: ...

    async def stream_failed(self, run: Run, success: Success[Opened],
                            error: ProviderError, partial: ChatResponse) -> ProviderError: ...

    async def stream_continue(self, run: Run, partial_text: str
                              ) -> tuple[Success[Opened], ChatRequest] | None: ...


@dataclasses.dataclass(slots=True)
class Continued:
    """A stream continued on another deployment: the first attempt's deployment,
    what it had streamed and the error that broke it, the attempts made up to
    then and when (perf_counter), and the request the successor was sent, whose
    prompt carries that text. Each provider bills its own call."""
    deployment: Deployment
    streamed: ChatResponse
    error: ProviderError
    attempts: int
    broke_at: float
    request: ChatRequest


async def close_iterator(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


_END = object()  # the read-ahead task's last item


async def gathered(deltas: AsyncIterator[StreamDelta]) -> AsyncIterator[DeltaBatch]:
    """Batches from an adapter that yields one delta at a time. A task reads
    ahead while the consumer is busy, and each batch is whatever it read
    meanwhile: deltas that arrived in one network read are still handed on (and
    sent) together. The first delta comes alone, as soon as it arrives."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def read_ahead() -> None:
        try:
            count = 0
            async for delta in deltas:
                queue.put_nowait(delta)
                count += 1
                if count == 1 or count % GATHER_AT_MOST == 0:
                    # Let the consumer take the first delta before the rest of its
                    # read is parsed.
                    await asyncio.sleep(0)
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_END)

    task = asyncio.ensure_future(read_ahead())
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            ended = items[-1] is _END
            error = items[-2] if ended and len(items) > 1 else None
            if not isinstance(error, Exception):
                error = None
            batch = [item for item in items if isinstance(item, StreamDelta)]
            if batch or (ended and error is None):
                yield DeltaBatch(batch, final=ended)
            if error is not None:
                raise error
            if ended:
                return
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        await close_iterator(deltas)


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
        self._response: ChatResponse | None = None
        # The attempt this stream continued after it broke (`share`); None if it
        # did not. An attribute, not a property: the gateway reads it at every end.
        self.continued: Continued | None = None

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
        return flatten(self.batches())

    def batches(self, on_end: Callable[[BaseException | None], None] | None = None
                ) -> AsyncIterator[DeltaBatch]:
        """The stream a network read at a time (iterate this or the deltas, once).

        `on_end` is called once when the iteration ends: with None after the last
        batch, else with what ended it (a ProviderError, a cancellation, the
        consumer closing it early). The gateway keeps its books there rather than
        in a generator of its own around this one, a resumption per read."""
        if self._iterating:
            raise RuntimeError("a DispatchStream can be iterated only once")
        self._iterating = True
        return self._iterate(on_end)

    async def _iterate(self, on_end: Callable[[BaseException | None], None] | None
                       ) -> AsyncIterator[DeltaBatch]:
        try:
            try:
                while True:
                    iterator, first = self._success.value
                    yield self._passed(first)
                    error: ProviderError | None = None
                    try:
                        async for batch in iterator:
                            yield self._passed(batch)
                    except ProviderError as exc:
                        error = exc
                    if error is None:
                        break
                    await self._after_failure(error)
                self._done = True
                self._response = self._acc.response()
                await self._owner.stream_finished(self._run, self._success,
                                                  self.share(self._response))
            finally:
                if not self._done:
                    await self.aclose()
        except BaseException as exc:
            if on_end is not None:
                on_end(exc)
            raise
        if on_end is not None:
            on_end(None)

    def _passed(self, batch: DeltaBatch) -> DeltaBatch:
        """`batch`, accumulated. A break that may be continued elsewhere is not an
        end that follows at once: `final` would hold these deltas back meanwhile."""
        self._acc.extend(batch.deltas, texts=batch.texts)
        if batch.final and self._can_continue():
            batch.final = False
        return batch

    async def _after_failure(self, error: ProviderError) -> None:
        """Record the failure; continue on another deployment or raise it."""
        # What had streamed: the provider bills it, so the budgets count it.
        partial = self._acc.response()
        broke_at = time.perf_counter()
        reported = await self._owner.stream_failed(self._run, self._success, error,
                                                   self.share(partial))
        attempts = len(self._run.attempts)  # the failed attempt, now recorded, among them
        successor = None
        # Another error back: the request's own deadline ran out, and with it the
        # time to continue in.
        if reported is error and self._can_continue():
            self._run.continuations += 1
            successor = await self._owner.stream_continue(self._run, self._acc.text)
        if successor is None:
            self._done = True
            raise reported
        first = self._success.picked.deployment
        self._success, request = successor
        self.continued = Continued(first, partial, reported, attempts, broke_at, request)

    def share(self, response: ChatResponse) -> ChatResponse:
        """The current attempt's part of the accumulated `response`, which its gate
        tickets are settled with (and its part of the ledger row, `continued`).
        After a continuation the first attempt's ticket has been settled with
        what it streamed, and the successor's prompt carries that text: counted
        again as the successor's output, it would be charged twice. No tool call
        streamed before a continuation, so all of them are the successor's; a
        usage the first attempt had sent is not the successor's either."""
        if self.continued is None:
            return response
        before = self.continued.streamed
        content, reasoning = response.content, response.reasoning
        return dataclasses.replace(
            response,
            content=None if content is None else content[len(before.content or ""):],
            reasoning=None if reasoning is None else reasoning[len(before.reasoning or ""):],
            usage=None if response.usage is before.usage else response.usage)

    def _can_continue(self) -> bool:
        # One continuation per stream: a second break is reported, not chased.
        return (self._continuation and not self._acc.has_tool_calls
                and self._run.continuations < 1)

    def response(self) -> ChatResponse:
        """The accumulated final response; complete once iteration has ended (and
        then built once: the dispatcher, the ledger and the usage chunk all ask)."""
        return self._response or self._acc.response()

    async def aclose(self) -> None:
        """The client went away: cancel the upstream call and settle what was used."""
        if self._done:
            return
        self._done = True
        iterator, _ = self._success.value
        await close_iterator(iterator)
        self._success.attempt.outcome = "cancelled"
        # What had streamed (and its usage, if that came before the client left):
        # the provider bills it, so the budgets count it, as the ledger does.
        await self._owner.stream_finished(self._run, self._success,
                                          self.share(self._acc.response()))
