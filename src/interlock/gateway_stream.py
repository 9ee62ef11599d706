"""`GatewayStream`: a streamed answer as the gateway hands it out, which writes
its ledger row exactly once when it ends, breaks or is closed early.

Imports: the standard library, `adapters.base`, `dispatch.dispatcher`,
`dispatch.streaming`, `errors`,
`request_record`, `response_meta`, `tokens`, `types`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Callable

from interlock.adapters.base import DeltaBatch, flatten
from interlock.dispatch.dispatcher import DispatchStream
from interlock.dispatch.streaming import Continued
from interlock.errors import ClientDisconnected, InterlockError, InternalError, ProviderError
from interlock.request_record import RequestRecorder, fill_answerer, interruption
from interlock.response_meta import ResponseMeta
from interlock.tokens import billed_usage
from interlock.types import ChatRequest, ChatResponse, StreamDelta, Usage


class GatewayStream:
    """A stream that is already flowing; iterate it for deltas. When it ends
    (or breaks) the cost is computed and the ledger row written, exactly once."""

    def __init__(self, recorder: RequestRecorder, request: ChatRequest, upstream: DispatchStream,
                 meta: ResponseMeta, started: float, key_id: str | None, *,
                 settle_later: bool = False) -> None:
        self._recorder = recorder
        self._request = request
        self._upstream = upstream
        self.meta = meta
        self._started = started
        self._key_id = key_id
        self._done = False
        self._settle_later = settle_later
        self._unsettled: Callable[[], None] | None = None
        self.error: ProviderError | None = None
        self._shown_usage: Usage | None = None  # set when the stream ends (`_finish`)

    def __aiter__(self) -> AsyncIterator[StreamDelta]:
        return flatten(self.batches())

    def batches(self) -> AsyncIterator[DeltaBatch]:
        """The stream a network read at a time (iterate this or the deltas, once)."""
        return self._upstream.batches(on_end=self._ended)

    def _ended(self, exc: BaseException | None) -> None:
        if exc is None:
            self._finish()
        elif isinstance(exc, ProviderError):
            self.error = exc
            self._finish(error=exc)
        elif isinstance(exc, InterlockError):
            self._finish(error=exc)
        elif isinstance(exc, Exception):  # a bug: still one ledger row
            self._finish(error=InternalError(f"{type(exc).__name__} inside Interlock"))
        else:  # cancelled (the client went away, or shutdown) or closed early
            self._finish(error=interruption(exc))

    @property
    def request(self) -> ChatRequest:
        """The request this stream answers."""
        return self._request

    def response(self) -> ChatResponse:
        """The answer as assembled; after a continuation, with both calls' usage
        (`shown_usage`), once the stream has ended."""
        response = self._upstream.response()
        if self._done and self._upstream.continued is not None:
            return dataclasses.replace(response, usage=self._shown_usage)
        return response

    def shown_usage(self) -> Usage | None:
        """The usage a client's final chunk reports: the provider's, as it sent it;
        after a continuation, both calls', as the ledger row and `cost_usd` count
        them (the successor's alone would not add up to the cost shown beside it)."""
        return self._shown_usage if self._done else self._upstream.response().usage

    def _finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        meta = self.meta
        upstream = self._upstream
        fill_answerer(meta, upstream.deployment, upstream.group, upstream.attempts)
        response = upstream.response()
        meta.service_tier = response.service_tier
        meta.latency_ms = (time.perf_counter() - self._started) * 1000
        continued = upstream.continued
        if continued is not None:
            record = self._continued_rows(continued, response, error)
        else:
            self._shown_usage = response.usage
            # The usage may never have come: the client left, or the stream broke,
            # before the provider's last chunk (or it sends none). The provider still
            # bills the prompt and what it had generated, so the ledger records
            # Interlock's estimate of those, marked as one, rather than nothing.
            usage = billed_usage(self._request, response)
            if response.usage is None:
                meta.usage_estimated = True
            meta.cost_usd = self._recorder.cost(self._request, upstream.deployment, usage,
                                                response.service_tier)
            record = functools.partial(self._recorder.record, meta, self._request, usage,
                                       response.content, self._key_id, True, error)
        if self._settle_later:
            self._unsettled = record
        else:
            record()

    def _continued_rows(self, continued: Continued, response: ChatResponse,
                        error: BaseException | None) -> Callable[[], None]:
        """The ledger rows of a stream continued on another deployment, to write:
        each provider billed its own call, so each call has its own row under the
        request's id, at its deployment's price and under its deployment's name
        (budgets seed a deployment's, a provider's and a group's spend from those
        names): the first for the prompt and what it streamed, ended by its
        break; the successor's for a prompt carrying that text and what it added.
        Each is the call's usage, or Interlock's estimate of it when the usage
        never came, as each attempt's budget ticket was settled. What the client
        is told (`meta`'s cost, `shown_usage`) is both calls together."""
        upstream, meta, recorder = self._upstream, self.meta, self._recorder
        first, second = continued.streamed, upstream.share(response)
        first_usage = billed_usage(self._request, first)
        second_usage = billed_usage(continued.request, second)
        first_cost = recorder.cost(self._request, continued.deployment, first_usage,
                                   first.service_tier)
        second_cost = recorder.cost(continued.request, upstream.deployment, second_usage,
                                    response.service_tier)
        # The client key's hold on its limits is let go once, with both calls.
        ticket, meta.key_ticket = meta.key_ticket, None
        split = continued.attempts
        answer = dataclasses.replace(meta, cost_usd=second_cost, attempts=meta.attempts[split:],
                                     usage_estimated=second.usage is None)
        broken = dataclasses.replace(
            meta, group=continued.deployment.group, deployment=continued.deployment.name,
            provider=continued.deployment.provider, attempts=meta.attempts[:split],
            cost_usd=first_cost, usage_estimated=first.usage is None,
            service_tier=first.service_tier,
            latency_ms=(continued.broke_at - self._started) * 1000)
        meta.cost_usd = None if first_cost is None or second_cost is None \
            else first_cost + second_cost
        meta.usage_estimated = broken.usage_estimated or answer.usage_estimated
        both = self._shown_usage = first_usage + second_usage
        request, key_id = self._request, self._key_id

        def record() -> None:
            try:
                recorder.record(broken, request, first_usage, first.content, key_id, True,
                                continued.error, True)  # a call of the request, not one
            finally:
                try:  # the request's own row, whatever became of the first call's
                    recorder.record(answer, request, second_usage, response.content,
                                    key_id, True, error)
                finally:
                    if ticket is not None:
                        ticket.done(both)
        return record

    async def aclose(self, reason: InterlockError | None = None) -> None:
        """End the stream; one not read to its end is recorded as ended by
        `reason` (by default, its client leaving)."""
        if not self._done:
            self._finish(error=reason or ClientDisconnected("the client disconnected"))
        unsettled, self._unsettled = self._unsettled, None
        try:
            if unsettled is not None:
                unsettled()
        finally:
            await self._upstream.aclose()
