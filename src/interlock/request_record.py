"""The ledger row of each request the gateway handles, and what goes into it:
who answered, the cost, the timings, and the rows of requests that failed, were
cut short or were refused before routing.

Imports: the standard library, `mocked`, `catalog`, `costs.ledger`,
`costs.prices`, `dispatch.dispatcher`, `errors`, `response_meta`, `tokens`, `types`,
`usage_counters`.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from types import TracebackType
from typing import Any

from interlock.catalog import Catalog, Deployment
from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.prices import PriceBook
from interlock.dispatch.dispatcher import Attempt, DispatchResult
from interlock.errors import (
    ClientDisconnected,
    GatewayShuttingDown,
    InterlockError,
    InternalError,
    ProviderError,
    UnknownModel,
)
from interlock.mocked import mock_text
from interlock.response_meta import ResponseMeta, new_request_id
from interlock.tokens import estimate_prompt_tokens
from interlock.types import ChatRequest, Usage
from interlock.usage_counters import UsageCounters

# The longest model name a ledger row keeps of what a client asked for.
MODEL_NAME_LIMIT = 128
# The message the server cancels requests with when its drain time runs out
# (`server.drain`), so that their ledger rows say why they ended.
SHUTTING_DOWN = "the gateway is shutting down"


def interruption(exc: BaseException) -> InterlockError:
    """The error a request's row records when it was cancelled rather than failed:
    the drain's cut, or uvicorn's own at the end of its graceful shutdown (its
    workers under --workers N have no drain; it says "graceful shutdown"), is the
    shutdown; any other cancellation is the client (or library caller) leaving."""
    if isinstance(exc, asyncio.CancelledError) and exc.args and (
            SHUTTING_DOWN in exc.args or "shutdown" in str(exc.args[0]).lower()):
        return GatewayShuttingDown()
    return ClientDisconnected("the client disconnected")


def outside_ms(attempts: list[Attempt], waits: list[float]) -> float:
    """What a request's time owes to others: its upstream calls, and the waits
    the dispatcher made on purpose (a backoff, a cooldown, a slot)."""
    upstream = sum(a.duration_ms for a in attempts)
    return upstream + sum(waits) * 1000 if waits else upstream


def fill_answerer(meta: ResponseMeta, deployment: Deployment, group: str,
                  attempts: list[Attempt]) -> None:
    """Who answered (or was last tried), and the attempts that led there."""
    meta.deployment = deployment.name
    meta.provider = deployment.provider
    meta.group = group
    meta.attempts = attempts


class RequestRecorder:
    """Fills in a request's `ResponseMeta` as it ends and writes its ledger row
    (none without a ledger; a limited client key's hold is let go, and the
    request counted in `usage` for /metrics, either way)."""

    def __init__(self, catalog: Catalog, prices: PriceBook, ledger: Ledger | None,
                 log_payloads: bool) -> None:
        self.catalog = catalog
        self.prices = prices
        self.ledger = ledger
        self._log_payloads = log_payloads
        self.usage = UsageCounters()
        self._count = self.usage.count  # bound once: called on every request

    def record_refused(self, error: InterlockError, *, model: Any, key_id: str | None,
                       stream: bool = False, request_id: str | None = None) -> None:
        """The row of a request the server refused before routing it (a body that
        is not a valid request, a model its client key may not use): no upstream
        call, so it cost nothing, but the key's attempts still show in spend."""
        self._count(None, Usage(), Decimal(0), error)
        if self.ledger is None:
            return
        row = LedgerRow(request_id or new_request_id())
        row.api_key_id = key_id
        # As the client gave it, if it gave a name; bounded, since any client can
        # write it into the operator's ledger.
        row.requested_model = model[:MODEL_NAME_LIMIT] if isinstance(model, str) else None
        row.status = "error"
        row.error_class = type(error).__name__
        row.attempts = 0
        row.cost_usd = Decimal(0)
        row.stream = stream
        self.ledger.record(row)

    def recording_failure(self, meta: ResponseMeta, started: float, request: ChatRequest,
                          key_id: str | None) -> _RecordingFailure:
        """A failed or abandoned request still leaves its ledger row."""
        return _RecordingFailure(self, meta, started, request, key_id)

    def answered(self, meta: ResponseMeta, started: float, request: ChatRequest,
                 result: DispatchResult[Any], usage: Usage | None,
                 service_tier: str | None = None) -> None:
        """A whole (not streamed) answer: who gave it, its cost and timings (the
        caller records its ledger row)."""
        fill_answerer(meta, result.deployment, result.group, result.attempts)
        meta.cost_usd = self.cost(request, result.deployment, usage, service_tier)
        meta.service_tier = service_tier
        meta.latency_ms = (time.perf_counter() - started) * 1000
        meta.overhead_ms = max(0.0, meta.latency_ms - outside_ms(result.attempts, meta.waits))

    def finish_error(self, meta: ResponseMeta, exc: InterlockError, started: float,
                     request: ChatRequest, key_id: str | None) -> None:
        meta.attempts = list(exc.attempts)
        meta.latency_ms = (time.perf_counter() - started) * 1000
        meta.overhead_ms = max(0.0, meta.latency_ms - outside_ms(meta.attempts, meta.waits))
        usage = None
        if isinstance(exc, ProviderError):
            meta.deployment = exc.deployment or None
            meta.provider = exc.provider or None
        elif meta.attempts and meta.attempts[-1].status is None and meta.attempts[-1].called:
            # Cut off in the middle of a call (the client left): the provider has
            # the prompt and bills it, so the row names the deployment and carries
            # the prompt's estimate, marked as one, rather than nothing.
            usage = self._interrupted_call(meta, request)
        if usage is None and all(not a.called or (a.status or 0) >= 400 for a in meta.attempts):
            # No provider was called, or each one called answered with an error
            # status, which providers do not bill: the cost is known, and nothing
            # (a timeout or a broken connection stays unknown: it may be billed).
            meta.cost_usd = Decimal(0)
            meta.nothing_billed = True
        exc.meta = meta  # type: ignore[attr-defined]
        self.record(meta, request, usage, None, key_id, stream=request.stream, error=exc)

    def _interrupted_call(self, meta: ResponseMeta, request: ChatRequest) -> Usage | None:
        last = meta.attempts[-1]
        try:
            deployment = self.catalog.deployment(last.deployment)
        except KeyError:
            return None
        fill_answerer(meta, deployment, last.group, meta.attempts)
        usage = Usage(input_tokens=estimate_prompt_tokens(request))
        meta.usage_estimated = True
        meta.cost_usd = self.cost(request, deployment, usage, None)
        return usage

    def record(self, meta: ResponseMeta, request: ChatRequest, usage: Usage | None,
               content: str | None, key_id: str | None, stream: bool,
               error: BaseException | None = None, continued_call: bool = False) -> None:
        """`continued_call`: the row of a stream's first call, broken by `error` and
        continued on another deployment (`gateway_stream`): status `continued`, a
        billed call of the request whose own row follows, not a request of its own."""
        # `stream` and `error` may be given by position: the server's partials do,
        # since a partial holding keywords merges them into a dict at each call.
        if meta.key_ticket is not None:  # each request comes here once: its limits let go
            meta.key_ticket.done(usage)
            meta.key_ticket = None
        usage = usage or Usage()
        self._count(meta.deployment, usage, meta.cost_usd, error, not continued_call)
        ledger = self.ledger
        if ledger is None:
            return
        decision = meta.decision
        attempts = meta.attempts
        # Set field by field: a class call packs its keyword arguments into a dict
        # and unpacks it again for __init__, about 500 instructions each (11,000
        # for this row's 23; "Gateway overhead: findings" in docs/benchmarks.md).
        row = LedgerRow(meta.request_id)
        row.api_key_id = key_id
        # Bounded, and an unknown name kept out of the groups: any client can
        # write it into the operator's ledger and reports.
        row.requested_model = request.model[:MODEL_NAME_LIMIT]
        row.router = decision.router
        row.routed_group = None if isinstance(error, UnknownModel) else decision.group
        row.route_score = decision.score
        row.deployment = meta.deployment
        row.provider = meta.provider
        row.model = self._deployment_model(meta.deployment)
        if error is not None:
            row.status = "continued" if continued_call else "error"
            row.error_class = type(error).__name__
        row.attempts = meta.upstream_calls
        # The usual single attempt without building two sets.
        row.fallbacks = (int(attempts[0].group != decision.group) if len(attempts) == 1
                         else len({a.group for a in attempts} - {decision.group}))
        row.input_tokens = usage.input_tokens
        row.cached_input_tokens = usage.cached_input_tokens
        row.output_tokens = usage.output_tokens
        row.reasoning_tokens = usage.reasoning_tokens
        row.web_searches = usage.web_searches
        row.service_tier = meta.service_tier
        row.cost_usd = meta.cost_usd
        row.latency_ms = meta.latency_ms
        row.ttft_ms = meta.ttft_ms
        row.stream = stream
        row.usage_estimated = meta.usage_estimated
        row.end_user = request.user or None  # "" names no end user
        # LiteLLM's `no-log` asks that this call's text be kept nowhere.
        if self._log_payloads and "no-log" not in request.ignored_params:
            row.prompt = request.prompt_text
            row.response = content
        ledger.record(row)

    def cost(self, request: ChatRequest, deployment: Deployment, usage: Usage | None,
              service_tier: str | None) -> Decimal | None:
        # A mocked answer was billed by no one, whatever its estimated tokens.
        if mock_text(request, deployment) is not None:
            return Decimal(0)
        return self.prices.cost(deployment, usage, service_tier)

    def _deployment_model(self, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            return self.catalog.deployment(name).model
        except KeyError:
            return None


class _RecordingFailure:
    """`RequestRecorder.recording_failure`: records the ledger row of a request that
    fails (an InterlockError), is cancelled (the client left) or is cut short by
    a bug, and lets the exception go on. A class rather than a generator-based context manager:
    it is entered on every request, and a generator costs three times the work."""

    __slots__ = ("_key_id", "_meta", "_recorder", "_request", "_started")

    def __init__(self, recorder: RequestRecorder, meta: ResponseMeta, started: float,
                 request: ChatRequest, key_id: str | None) -> None:
        self._recorder = recorder
        self._meta = meta
        self._started = started
        self._request = request
        self._key_id = key_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if isinstance(exc, InterlockError):
            error = exc
        elif isinstance(exc, asyncio.CancelledError):
            error = interruption(exc)
            error.attempts = self._meta.attempts  # as far as the dispatcher got
        elif isinstance(exc, Exception):
            # A bug: the exception goes on (a gateway client gets a 500), and the
            # request still leaves its row, naming the call it cut if it cut one.
            error = InternalError(f"{type(exc).__name__} inside Interlock")
            error.attempts = self._meta.attempts
        else:
            return
        self._recorder.finish_error(self._meta, error, self._started, self._request,
                                    self._key_id)
