"""The dispatcher: the one place that retries, falls back and cools deployments down.

For one request and its model group it walks the candidates: deployments of
the group in `selection.rank` order, each admitted by its cap on calls in
flight (`max_parallel_requests`), the breaker, rpm/tpm (`state`) and the
attempt gates, then the fallback groups the `FallbackPlan` queues. When
nothing could be called, the request waits for a slot (as the deadline
allows) or a recovery (only up to `max_cooldown_wait`, logged), or gets
`NoDeploymentAvailable`. After each failed attempt the
`RetryPolicy` decides (a return value): retry in the group, try another
deployment, fall back, or raise. A deployment whose provider cannot take one
of the request's parameters (`UnsupportedParameter`) is passed over, as a skip;
the request gets that error only when no candidate can take it. Amplification
is bounded: a group gets at most `1 + max retries` upstream calls, so a request
makes at most (num_retries + 1) x (1 + fallback groups called) of them. One deadline
(`timeout`, or `stream_timeout` for streams) bounds everything, waits and
backoffs included, and every attempt's own timeouts are cut to what is left
of it; a Timeout of the request's own deadline fails it at once and counts
against no deployment (`deadlines`). An attempt whose request or deployment
sets `mock_response` is answered by `adapters.mock`, not the provider.

Imports: the standard library, `types`, `tokens`, `errors`, `catalog`, `adapters.base`,
`adapters.http`, `adapters.mock`, `mocked`, `dispatch.*`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from interlock.adapters.base import Adapter, DeltaBatch
from interlock.adapters.http import Timeouts
from interlock.adapters.mock import MockAdapter
from interlock.catalog import Catalog, Deployment
from interlock.dispatch.clock import Clock, MonotonicClock
from interlock.dispatch.deadlines import (
    callers_timeout,
    checked_request_timeout,
    deployment_limit,
    ran_out_for_the_caller,
)
from interlock.dispatch.fallbacks import FallbackConfig, forced_failure
from interlock.dispatch.gates import AttemptGate, GateTicket, Refusal
from interlock.dispatch.health import (
    CooldownTracker,
    DeploymentHealth,
    DeploymentStats,
    health_row,
    sole_deployments,
)
from interlock.dispatch.outcome import Attempt, DispatchResult
from interlock.dispatch.retry import Action, FallbackKind, RetryDecision, RetryPolicy, retry_class
from interlock.dispatch.run import Picked, Run, Success
from interlock.dispatch.selection import estimate_request_tokens, fits, limit_said, rank
from interlock.dispatch.settings import RouterSettings
from interlock.dispatch.state import StateBackend, build_state
from interlock.dispatch.streaming import DispatchStream, Opened, close_iterator, gathered
from interlock.errors import (
    BudgetExceeded,
    ContextWindowExceeded,
    GatewayShuttingDown,
    InterlockError,
    InvalidRequest,
    NoDeploymentAvailable,
    ProviderError,
    Timeout,
    UnsupportedParameter,
)
from interlock.mocked import mock_text
from interlock.tokens import estimate_text_tokens
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    Message,
    StreamDelta,
    TextPart,
)

__all__ = ["Attempt", "DispatchResult", "DispatchStream", "Dispatcher"]

log = logging.getLogger("interlock.dispatch")

T = TypeVar("T")
# (adapter, the request as this deployment gets it, deployment, timeouts)
AttemptCall = Callable[[Adapter, ChatRequest, Deployment, Timeouts],
                       Awaitable[tuple[T, ChatResponse | None]]]
# The tag that untagged requests go to, when a group has deployments carrying it.
DEFAULT_TAG = "default"
# Waiting for recovery happens at most this often per request.
MAX_RECOVERY_WAITS = 3
# The dispatcher's own guard on a call, beyond the adapter's timeouts.
GUARD_GRACE = 1.0
# Why a deployment at its max_parallel_requests is skipped (Skip.why, Attempt outcome).
AT_CAPACITY = "max_parallel_requests"
# The skip of a deployment whose provider cannot take one of the request's parameters.
UNSUPPORTED = "unsupported_parameter"
CONTINUE_PROMPT = ("Your previous answer was cut off. Continue it exactly where it stopped, "
                   "without repeating anything.")


class AdapterSource(Protocol):
    """What the dispatcher needs of an AdapterRegistry."""

    def for_provider(self, provider: str) -> Adapter: ...


class Dispatcher:
    def __init__(self, catalog: Catalog, adapters: AdapterSource, settings: RouterSettings, *,
                 state: StateBackend | None = None, clock: Clock | None = None,
                 rng: random.Random | None = None, gates: Sequence[AttemptGate] = ()) -> None:
        self._catalog = catalog
        self._adapters = adapters
        self._settings = settings
        self._clock = clock or MonotonicClock()
        self._rng = rng or random.Random()
        self._gates = list(gates)
        self.state: StateBackend = (state if state is not None
                                    else build_state(settings, self._clock.now))
        self.policy = RetryPolicy.from_settings(settings)
        self._group_policies = {
            group: RetryPolicy.from_settings(settings.model_copy(update={"retry_policy": p}))
            for group, p in settings.model_group_retry_policy.items()}
        self._fallbacks = FallbackConfig(settings)
        self.tracker = CooldownTracker(
            settings, self.state, self._clock,
            sole=sole_deployments(catalog, self._fallbacks.has_fallbacks))
        self._stats: dict[str, DeploymentStats] = {}
        # The requests waiting for a slot of a capped deployment, each a future
        # that the end of a call to it sets (True) or its deadline does (False).
        self._slot_waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self._mock = MockAdapter()

    # -- public API ---------------------------------------------------------
    async def complete(self, request: ChatRequest, group: str,
                       attempts: list[Attempt] | None = None,
                       waits: list[float] | None = None) -> DispatchResult[ChatResponse]:
        """`attempts`: a list of the caller's that the attempts are appended to as
        they are made, so that a caller whose task is cancelled mid-call (a client
        that left) still knows which deployment it was calling. `waits`: one the
        seconds of each deliberate wait are appended to (`Run.waits`)."""
        run = self._new_run(request, group, stream=False, attempts=attempts, waits=waits)

        async def call(adapter: Adapter, request: ChatRequest, d: Deployment,
                       timeouts: Timeouts) -> tuple[ChatResponse, ChatResponse | None]:
            response = await adapter.complete(request, d, timeouts)
            return response, response

        return await self._dispatch(run, call)

    async def open_stream(self, request: ChatRequest, group: str,
                          attempts: list[Attempt] | None = None,
                          waits: list[float] | None = None) -> DispatchStream:
        """`attempts` and `waits` as for `complete`."""
        run = self._new_run(request, group, stream=True, attempts=attempts, waits=waits)
        success = await self._execute(run, self._stream_call())
        return DispatchStream(self, run, success,
                              continuation=self._settings.stream_continuation)

    async def embed(self, request: EmbeddingRequest, group: str
                    ) -> DispatchResult[EmbeddingResult]:
        """Embeddings with the same retries, fallbacks and cooldowns as a completion.

        An embedding model's context window bounds each input, not their sum,
        so deployments are fitted to the longest input."""
        longest = max(estimate_text_tokens(t) for t in request.inputs)
        run = self._new_run(request.routing, group, stream=False, prompt_tokens=longest)

        async def call(adapter: Adapter, _: ChatRequest, d: Deployment, timeouts: Timeouts
                       ) -> tuple[EmbeddingResult, ChatResponse | None]:
            embeddings = getattr(adapter, "embeddings", None)
            if embeddings is None:
                raise InvalidRequest(
                    f"Deployment {d.name} cannot embed: the {d.provider} provider has no "
                    "embeddings API. Name a model group of OpenAI-compatible or Gemini "
                    "embedding deployments.", param="model", code="model_not_supported")
            result: EmbeddingResult = await embeddings(request, d, timeouts)
            # The usage settles tpm counters and budget gates as a completion's does.
            return result, ChatResponse(id="", model=d.model, content=None,
                                        usage=result.usage)

        return await self._dispatch(run, call)

    def health(self) -> list[DeploymentHealth]:
        return [health_row(d, self.tracker.view(d), self._stat(d))
                for d in self._catalog.deployments()]

    def group_available(self, group: str) -> bool:
        model_group = self._catalog.groups.get(group)
        if model_group is None:
            return False
        return any(d.available and self.tracker.view(d).state != "open"
                   for d in model_group.deployments)

    def add_gate(self, gate: AttemptGate) -> None:
        """Ask `gate` too before each attempt from now on (the gateway's budgets,
        once a client key made at run time has one)."""
        if gate not in self._gates:
            self._gates.append(gate)

    async def aclose(self) -> None:
        await self.state.aclose()

    # -- one request --------------------------------------------------------
    def _new_run(self, request: ChatRequest, group: str, *, stream: bool,
                 prompt_tokens: int | None = None,
                 attempts: list[Attempt] | None = None,
                 waits: list[float] | None = None) -> Run:
        self._catalog.group(group)  # UnknownModel for a name that is not configured
        limit = self._settings.request_timeout(stream=stream)
        now = self._clock.now()
        deadline = None if limit is None else now + limit
        # Positionally, in Run's field order (request, origin, stream, deadline, plan,
        # known_prompt_tokens): a class call's keyword arguments go through a dict,
        # about 500 instructions each, on every request. A test pins the order.
        run = Run(request, group, stream, deadline,
                  self._fallbacks.plan(group, request), prompt_tokens)
        if request.timeout is not None:  # the caller's deadline replaces the router's
            run.router_deadline = deadline
            run.deadline = now + checked_request_timeout(request.timeout)
        if attempts is not None:
            run.attempts = attempts
        if waits is not None:
            run.waits = waits
        return run

    async def _dispatch(self, run: Run, call: AttemptCall[T]) -> DispatchResult[T]:
        success = await self._execute(run, call)
        return DispatchResult(success.value, success.picked.deployment, success.group,
                              run.attempts)

    async def _execute(self, run: Run, call: AttemptCall[T]) -> Success[T]:
        while True:
            success = await self._walk(run, call)
            if success is not None:
                return success
            await self._wait_or_raise(run)

    async def _walk(self, run: Run, call: AttemptCall[T]) -> Success[T] | None:
        group: str | None = run.origin
        while group is not None:
            forced = forced_failure(run.request, group, run.origin)
            if forced is not None:  # a test of the fallbacks: this group fails, uncalled
                success, (run.last_error, kind) = None, forced
            else:
                success, kind = await self._try_group(run, group, call)
            if success is not None:
                return success
            run.plan.failed(group, kind)
            group = run.plan.next_group()
        return None

    async def _try_group(self, run: Run, group: str, call: AttemptCall[T]
                         ) -> tuple[Success[T] | None, FallbackKind]:
        deployments = self._fitting(run, group)
        if deployments is None:
            return None, FallbackKind.CONTEXT_WINDOW
        calls = 0
        retry_owed = False
        run.retries.clear()  # every group gets its own retries (the amplification bound)
        policy = self._policy_for(run, group)
        while calls <= policy.max_retries and not run.expired(self._clock.now()):
            picked = await self._pick(run, group, deployments)
            if picked is None and retry_owed and await self._wait_in_group(run, group):
                retry_owed = False
                continue
            if picked is None or not await self._backoff(run, picked):
                break
            success, error = await self._attempt(run, group, picked, call)
            if success is None and error is None:
                continue  # the deployment cannot take this request: no call was made
            calls += 1
            run.plan.mark_called(group)
            if success is not None:
                return success, FallbackKind.GENERAL
            assert error is not None
            kind = self._apply(run, picked.deployment, error, policy)
            if kind is not None:
                return None, kind
            retry_owed = True
        return None, FallbackKind.GENERAL

    async def _wait_in_group(self, run: Run, group: str) -> bool:
        """A retry is owed but every deployment of the group is cooling (say a 429 with
        Retry-After): wait for the earliest one to recover if the deadline allows."""
        waits = [s.retry_after for s in run.skips.values()
                 if s.group == group and s.retry_after is not None]
        if not waits:
            return False
        wait = min(waits)
        if wait > self.policy.retry_after_cap or not self._may_wait(run, wait):
            return False
        await self._sleep_for_recovery(run, wait, group)
        run.delays.clear()  # the wait was the backoff
        return True

    def _may_wait(self, run: Run, wait: float) -> bool:
        """Whether a request may wait `wait` seconds for a cooling deployment: never
        longer than max_cooldown_wait (a longer cooldown is said to the caller at once,
        with its Retry-After, rather than slept through) nor past the deadline."""
        remaining = run.remaining(self._clock.now())
        return (wait <= self._settings.max_cooldown_wait
                and (remaining is None or wait < remaining))

    async def _sleep_for_recovery(self, run: Run, wait: float, groups: str) -> None:
        # Logged because the caller sees only a slow answer, not why.
        log.info("A request for %r waits %.1fs for a cooling deployment of %s",
                 run.origin, wait, groups)
        await self._clock.sleep(wait + 0.001)
        run.waits.append(wait + 0.001)

    def _policy_for(self, run: Run, group: str) -> RetryPolicy:
        """The group's policy (model_group_retry_policy) or the router's, with the
        request's own num_retries, when it gives one, for every error class (for a
        gateway client's request, only where that is fewer)."""
        policy = self._group_policies.get(group, self.policy)
        retries = run.request.num_retries
        if retries is None:
            return policy
        return policy.at_most(retries) if run.request.retries_bounded \
            else policy.with_retries(retries)

    def _apply(self, run: Run, d: Deployment, error: ProviderError,
               policy: RetryPolicy) -> FallbackKind | None:
        """Carry out the retry decision: None to stay in the group, else the fallback kind."""
        cls = retry_class(error)
        decision: RetryDecision = policy.decide(
            error, retries_used=run.retries.get(cls, 0), rng=self._rng)
        if decision.action is Action.RAISE:
            raise self._with_attempts(error, run)
        if decision.action is Action.RETRY:
            run.retries[cls] = run.retries.get(cls, 0) + 1
            run.delays[d.name] = decision.delay
            return None
        if decision.action is Action.NEXT:
            run.excluded.add(d.name)
            return None
        return decision.fallback

    def _fitting(self, run: Run, group: str) -> list[Deployment] | None:
        """The group's deployments that can take the prompt (None: none can)."""
        model_group = self._catalog.groups.get(group)
        if model_group is None:
            return []
        deployments = model_group.deployments
        if run.request.deployment is not None:  # specific_deployment: that one alone
            deployments = [d for d in deployments if d.name == run.request.deployment]
        if self._settings.enable_tag_filtering:
            deployments = self._tagged(run, group, deployments)
        if not self._settings.enable_pre_call_checks:
            return deployments
        margin = self._settings.pre_call_safety_margin
        fit = []
        for d in deployments:
            if fits(d, run.prompt_tokens, margin):
                fit.append(d)
            else:
                run.skip(group, d, "context_window",
                         f"~{run.prompt_tokens} prompt tokens do not fit {limit_said(d)}")
        return fit or None

    @staticmethod
    def _tagged(run: Run, group: str, deployments: list[Deployment]) -> list[Deployment]:
        """The deployments this request's tags allow (LiteLLM's tag filtering)."""
        wanted = run.request.tags or (
            {DEFAULT_TAG} if any(DEFAULT_TAG in d.tags for d in deployments) else None)
        if wanted is None:
            return deployments
        kept = []
        for d in deployments:
            if d.tags & wanted:
                kept.append(d)
            else:
                run.skip(group, d, "tags", f"serves tags {sorted(d.tags) or '(none)'}, "
                         f"not {sorted(wanted)}")
        return kept

    async def _pick(self, run: Run, group: str, deployments: list[Deployment]
                    ) -> Picked | None:
        candidates = [d for d in deployments if d.name not in run.excluded]
        ranked = rank(candidates, strategy=self._settings.routing_strategy, stats=self._stats,
                      rng=self._rng, failed=run.failed)
        for d in ranked:
            # A mocked attempt calls no provider, so it needs no key (LiteLLM's
            # mock_response answers without one; tests are written that way).
            if not d.available and mock_text(run.request, d) is None:
                run.skip(group, d, "unavailable", d.unavailable_reason or "")
                continue
            stats = self._stat(d)
            cap = d.max_parallel_requests
            if cap is not None and stats.in_flight >= cap:
                run.skip(group, d, AT_CAPACITY, f"{cap} calls in flight")
                continue
            # Counted from here, before the awaits below, so that a request picking
            # meanwhile sees the slot taken; given back with `_free_slot` on every
            # way out but a call (a cancelled request's too: a slot lost is lost
            # for good).
            stats.in_flight += 1
            # Inline rather than a coroutine of its own: one fewer a request.
            try:
                tokens = estimate_request_tokens(run.request, run.prompt_tokens) if d.tpm else 0
                admission = await self.tracker.admit(d, tokens)
                if admission.admitted:
                    try:
                        tickets = await self._open_gates(run, group, d)
                    except BaseException:  # cancelled: the admission is not used either
                        await self.tracker.release(admission)
                        raise
                    if tickets is not None:
                        return Picked(d, admission, tickets)
                    await self.tracker.release(admission)
                else:
                    run.skip(group, d, admission.refused_by, admission.reason,
                             admission.retry_after)
            except BaseException:
                self._free_slot(d)
                raise
            self._free_slot(d)
        return None

    def _free_slot(self, d: Deployment) -> None:
        """A picked call to `d` is over (or was never made): one fewer in flight,
        and the requests waiting for a slot of a capped deployment may look again."""
        self._stats[d.name].in_flight -= 1  # made by the pick
        if d.max_parallel_requests is not None:
            # All of them look again (one may want another deployment, and a
            # woken request that finds no slot waits again); each resumes at the
            # loop's next turn, with no task in between.
            for waiter in self._slot_waiters.pop(d.name, ()):
                if not waiter.done():
                    waiter.set_result(True)

    async def _wait_for_slot(self, run: Run) -> bool:
        """No candidate could be called and some were at their max_parallel_requests:
        wait until a call to one of those ends (as LiteLLM's semaphore waits), within
        the request's deadline. False when there were none or the deadline passed."""
        full = [self._catalog.deployment(s.deployment) for s in run.skips.values()
                if s.why == AT_CAPACITY]
        if not full or not self._settings.wait_for_recovery:
            return False
        remaining = run.remaining(self._clock.now())
        if remaining is not None and remaining <= 0:
            return False
        if any(self._stat(d).in_flight < (d.max_parallel_requests or 0) for d in full):
            return True  # one ended since it was skipped
        woken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for d in full:
            self._slot_waiters.setdefault(d.name, []).append(woken)
        timer = None if remaining is None else asyncio.ensure_future(
            self._expire(woken, remaining))
        began = self._clock.now()
        try:
            return await woken
        finally:
            run.waits.append(self._clock.now() - began)
            if timer is not None:
                timer.cancel()
            for d in full:
                waiting = self._slot_waiters.get(d.name)
                if waiting and woken in waiting:
                    waiting.remove(woken)

    async def _expire(self, woken: asyncio.Future[bool], seconds: float) -> None:
        # On the dispatcher's clock, as every other wait here.
        await self._clock.sleep(seconds)
        if not woken.done():
            woken.set_result(False)

    async def _open_gates(self, run: Run, group: str, d: Deployment
                          ) -> list[GateTicket] | None:
        tickets: list[GateTicket] = []
        for gate in self._gates:
            try:
                ticket = await gate.acquire(d, run.request)
            except GatewayShuttingDown as error:  # closed: no candidate is tried after it
                await _release_tickets(tickets, None)
                raise self._with_attempts(error, run) from None
            except BaseException:  # cancelled at a later gate: the earlier ones' go back
                await _release_tickets(tickets, None)
                raise
            if ticket is None or isinstance(ticket, str):
                await _release_tickets(tickets, None)
                run.skip(group, d, gate.name, ticket or "")
                return None
            tickets.append(ticket)
        return tickets

    async def _backoff(self, run: Run, picked: Picked) -> bool:
        """Wait the backoff owed before calling a deployment that failed; False when
        the deadline does not leave time for it (the admission is given back)."""
        name = picked.deployment.name
        delay = run.delays.pop(name, 0.0) if name in run.failed else 0.0
        if delay <= 0:
            return True
        remaining = run.remaining(self._clock.now())
        if remaining is not None and delay >= remaining:
            await self._give_back(picked)
            return False
        try:
            await self._clock.sleep(delay)
        except BaseException:  # cancelled while waiting: the call will not be made
            await self._give_back(picked)
            raise
        run.waits.append(delay)
        return True

    async def _give_back(self, picked: Picked, cut: ChatResponse | None = None) -> None:
        """An attempt not made, or `cut` off midway (what it had answered)."""
        self._free_slot(picked.deployment)
        await self.tracker.release(picked.admission)
        await _release_tickets(picked.tickets, cut)

    # -- one attempt --------------------------------------------------------
    async def _attempt(self, run: Run, group: str, picked: Picked, call: AttemptCall[T]
                       ) -> tuple[Success[T] | None, ProviderError | None]:
        """The call, and what came of it: its success, or its error, or neither when
        the deployment turned out unable to take the request (and is skipped)."""
        d = picked.deployment
        adapter = (self._mock if mock_text(run.request, d) is not None
                   else self._adapters.for_provider(d.provider))
        timeouts = self._timeouts(run, d)
        started = self._clock.now()
        try:
            request = (run.request if d.call_defaults is None
                       else run.request.with_defaults(d.call_defaults))
            value, final = await (
                call(adapter, request, d, timeouts) if getattr(adapter, "keeps_time", False)
                else self._guarded(call(adapter, request, d, timeouts), timeouts, d))
        except ProviderError as error:
            self._free_slot(d)
            return None, await self._failed(run, group, picked, error, started)
        except UnsupportedParameter as error:
            # This deployment's provider cannot take a parameter (drop_params off):
            # another deployment, or a fallback group, may. Refused by them all, the
            # request gets this error (`_nothing_available`).
            await self._give_back(picked)
            run.excluded.add(d.name)
            run.unsupported = run.unsupported or error
            run.skip(group, d, UNSUPPORTED, error.message)
            return None, None
        except InvalidRequest as error:
            await self._give_back(picked)
            run.attempts.append(Attempt(d.name, d.provider, group, type(error).__name__,
                                        error.status_code, self._ms_since(started)))
            raise self._with_attempts(error, run) from None
        except BaseException as error:
            # Cancelled (the client left) or a bug: the call was made, and the
            # provider may bill it, so it is listed with the rest.
            run.attempts.append(Attempt(d.name, d.provider, group, _interrupted(error), None,
                                        self._ms_since(started), picked.admission.probe))
            # Nothing came back: the budgets count the prompt, as the ledger row does.
            await self._give_back(picked, ChatResponse(id="", model=d.model, content=None))
            raise
        duration = self._ms_since(started)
        attempt = Attempt(d.name, d.provider, group, "ok", 200, duration,
                          picked.admission.probe)
        run.attempts.append(attempt)
        self._stats[d.name].observe(ok=True, duration_ms=duration,
                                    alpha=self._settings.latency_ewma_alpha)
        if final is not None:
            self._free_slot(d)  # the call is over
        try:
            await self.tracker.record_success(d, probe=picked.admission.probe)
            if final is not None:
                await self._settle(picked, final)
        except BaseException:
            if final is None:  # a stream that will never reach its end's bookkeeping
                self._free_slot(d)
            raise
        return Success(value, picked, group, attempt, started), None

    async def _guarded(self, call: Awaitable[tuple[T, ChatResponse | None]], timeouts: Timeouts,
                       d: Deployment) -> tuple[T, ChatResponse | None]:
        """A last guard for adapters that overrun their own timeouts."""
        if timeouts.total is None:
            return await call
        try:
            # asyncio.timeout runs the call in this task; 3.11's wait_for wrapped
            # it in a task of its own on every attempt.
            async with asyncio.timeout(timeouts.total + GUARD_GRACE):
                return await call
        except TimeoutError:
            raise Timeout(f"{d.name} overran its {timeouts.total:.1f}s timeout",
                          provider=d.provider, deployment=d.name) from None

    async def _failed(self, run: Run, group: str, picked: Picked, error: ProviderError,
                      started: float) -> ProviderError:
        d, probe = picked.deployment, picked.admission.probe
        self._claim(error, d)
        duration = self._ms_since(started)
        run.attempts.append(Attempt(d.name, d.provider, group, type(error).__name__,
                                    error.status, duration, probe))
        run.failed.add(d.name)
        run.last_error = error
        callers = self._callers_deadline(run, d, error, started)
        if callers:
            if probe:  # no verdict on the deployment: the next caller may probe it
                await self.tracker.release(dataclasses.replace(picked.admission, bucket=None))
        else:
            await self._count_failure(d, error, probe, duration)
        await self.tracker.settle(picked.admission, 0)
        await _release_tickets(picked.tickets, None)
        if callers:  # nothing is left of the deadline to retry or fall back in
            raise self._with_attempts(callers_timeout(error, run), run) from None
        return error

    def _claim(self, error: ProviderError, d: Deployment) -> None:
        """`error` as `d`'s, with its Retry-After held to `max_upstream_retry_after`
        before the breaker or the caller sees it (a NaN or negative one dropped)."""
        error.deployment = error.deployment or d.name
        error.provider = error.provider or d.provider
        seconds = error.retry_after
        if seconds is not None:
            cap = self._settings.max_upstream_retry_after
            error.retry_after = min(seconds, cap) if seconds >= 0 else None  # NaN: False

    def _callers_deadline(self, run: Run, d: Deployment, error: ProviderError,
                          started: float) -> bool:
        """Whether `error` is a Timeout of the request's own deadline (`dispatch.deadlines`),
        which says nothing about the deployment."""
        return ran_out_for_the_caller(
            run, error, deployment_limit(self._settings, d, stream=run.stream), started,
            self._clock.now())

    async def _count_failure(self, d: Deployment, error: ProviderError, probe: bool,
                             duration_ms: float) -> None:
        """The failure in the breaker and the error rate."""
        view = await self.tracker.record_failure(d, error, probe=probe)
        if view is None:
            # Nothing for the breaker (a 400 about the request, or a failure of a
            # deployment that is never cooled): as a probe's verdict, it may be called.
            await self.tracker.record_success(d, probe=probe)
        if self.tracker.is_deployment_fault(error):
            self._stat(d).observe(ok=False, duration_ms=duration_ms,
                                  alpha=self._settings.latency_ewma_alpha)

    async def _settle(self, picked: Picked, response: ChatResponse | None) -> None:
        if response is not None and response.usage is not None:
            await self.tracker.settle(picked.admission, response.usage.total_tokens)
        if picked.tickets:  # most requests pass no gates: no coroutine for nothing
            await _release_tickets(picked.tickets, response)

    def _timeouts(self, run: Run, d: Deployment) -> Timeouts:
        s = self._settings
        total = deployment_limit(s, d, stream=run.stream)
        remaining = run.remaining(self._clock.now())
        if remaining is not None:
            total = max(0.001, remaining if total is None else min(total, remaining))
        connect = s.connect_timeout if total is None else min(s.connect_timeout, total)
        # Positionally, in Timeouts' field order (connect, total, first_token, idle),
        # as `Run` above; a test pins the order.
        if not run.stream:
            return Timeouts(connect, total)
        first = s.first_token_timeout
        if total is not None:
            first = total if first is None else min(first, total)
        return Timeouts(connect, total, first, s.stream_idle_timeout)

    def _stat(self, d: Deployment) -> DeploymentStats:
        stats = self._stats.get(d.name)
        if stats is None:
            stats = self._stats[d.name] = DeploymentStats()
        return stats

    def _ms_since(self, started: float) -> float:
        return (self._clock.now() - started) * 1000.0

    # -- giving up ----------------------------------------------------------
    async def _wait_or_raise(self, run: Run) -> None:
        """Nothing answered: raise the last upstream error, or, when no call was made
        at all, wait for a slot of a full deployment or the earliest recovery if
        the deadline allows, else raise."""
        if run.last_error is not None:
            raise self._with_attempts(run.last_error, run)
        if await self._wait_for_slot(run):
            run.plan = self._fallbacks.plan(run.origin, run.request)
            return
        wait = run.earliest_recovery()
        if (self._settings.wait_for_recovery and wait is not None and self._may_wait(run, wait)
                and run.recovery_waits < MAX_RECOVERY_WAITS):
            run.recovery_waits += 1
            await self._sleep_for_recovery(
                run, wait, ", ".join(dict.fromkeys(s.group for s in run.skips.values())))
            run.plan = self._fallbacks.plan(run.origin, run.request)
            return
        raise self._with_attempts(self._nothing_available(run), run)

    def _nothing_available(self, run: Run) -> InterlockError:
        skips = list(run.skips.values())
        whys = {s.why for s in skips}
        listing = "; ".join(
            f"{_where(s.group, s.deployment)}: {s.why}"
            + (f" ({s.detail})" if s.detail else "")
            + (f", back in {s.retry_after:.1f}s" if s.retry_after is not None else "")
            for s in skips) or "no deployments configured"
        groups = ", ".join(dict.fromkeys(s.group for s in skips)) or run.origin
        if whys == {"budget"}:
            # When the first budget that refused one of them begins a new period.
            resets = [s.detail.resets_in for s in skips
                      if isinstance(s.detail, Refusal) and s.detail.resets_in is not None]
            return BudgetExceeded(f"No budget left for any candidate of {groups}: {listing}",
                                  retry_after=min(resets) if resets else None)
        if whys == {"tags"}:
            return InvalidRequest(
                f"No deployment of {groups} serves this request's tags "
                f"(router_settings.enable_tag_filtering): {listing}.", param="tags",
                code="no_deployment_for_tags")
        if whys == {UNSUPPORTED} and run.unsupported is not None:
            return run.unsupported  # no candidate could take the parameter: the 400 says which
        if whys == {"context_window"}:
            return ContextWindowExceeded(
                f"The prompt (~{run.prompt_tokens} tokens) is too long for every candidate "
                f"of {groups}: {listing}", status=400)
        retry_after = run.earliest_recovery()
        hint = f" Retry after {retry_after:.1f}s." if retry_after is not None else ""
        return NoDeploymentAvailable(
            f"No deployment is available for {run.origin!r} (groups tried: {groups}): "
            f"{listing}.{hint}",
            retry_after=retry_after, tried=[_where(s.group, s.deployment) for s in skips])

    def _with_attempts(self, error: InterlockError, run: Run) -> InterlockError:
        error.attempts = run.attempts
        return error

    # -- streams ------------------------------------------------------------
    def _stream_call(self) -> AttemptCall[Opened]:
        async def call(adapter: Adapter, request: ChatRequest, d: Deployment,
                       timeouts: Timeouts) -> tuple[Opened, ChatResponse | None]:
            by_read = getattr(adapter, "stream_batches", None)
            iterator: AsyncIterator[DeltaBatch] = (
                by_read(request, d, timeouts).__aiter__() if by_read is not None
                else gathered(adapter.stream(request, d, timeouts).__aiter__()))
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                first = DeltaBatch([StreamDelta()], final=True)
            except BaseException:
                await close_iterator(iterator)
                raise
            return (iterator, first), None

        return call

    async def stream_finished(self, run: Run, success: Success[Opened],
                              response: ChatResponse | None) -> None:
        self._free_slot(success.picked.deployment)
        success.attempt.duration_ms = self._ms_since(success.started)
        await self._settle(success.picked, response)

    async def stream_failed(self, run: Run, success: Success[Opened],
                            error: ProviderError, partial: ChatResponse) -> ProviderError:
        """Record a break after the first delta; the error its caller gets: `error`,
        or, when the request's own deadline is what ran out, a Timeout saying so
        (as a whole answer's does), since the deployment's text would advise
        raising a limit that was not the one that ran out."""
        picked = success.picked
        self._free_slot(picked.deployment)
        attempt = success.attempt
        attempt.outcome, attempt.status = type(error).__name__, error.status
        attempt.duration_ms = self._ms_since(success.started)
        self._claim(error, picked.deployment)
        error.attempts = run.attempts
        run.failed.add(picked.deployment.name)
        callers = self._callers_deadline(run, picked.deployment, error, success.started)
        if not callers:
            await self._count_failure(picked.deployment, error, False, attempt.duration_ms)
        await _release_tickets(picked.tickets, partial)
        if not callers:
            return error
        reported = callers_timeout(error, run)
        reported.attempts = run.attempts
        return reported

    async def stream_continue(self, run: Run, partial_text: str
                              ) -> tuple[Success[Opened], ChatRequest] | None:
        """Open a stream elsewhere that carries on from `partial_text`, and the
        request it was sent; None if none can."""
        original = run.request
        request = _continuation_request(original, partial_text)
        run.request = request
        run.excluded.update(run.failed)
        run.last_error = None
        run.plan = self._fallbacks.plan(run.origin, original)
        try:
            success = await self._walk(run, self._stream_call())
        except InterlockError:
            return None
        finally:
            run.request = original
        return None if success is None else (success, request)


def _continuation_request(request: ChatRequest, partial_text: str) -> ChatRequest:
    from dataclasses import replace

    messages = [*request.messages,
                Message(role="assistant", parts=[TextPart(partial_text)]),
                Message(role="user", parts=[TextPart(CONTINUE_PROMPT)])]
    return replace(request, messages=messages)


async def _release_tickets(tickets: list[GateTicket], response: ChatResponse | None) -> None:
    """Every ticket released, even when the request is cancelled during one of
    them: the cancellation is raised after the last."""
    cancelled: asyncio.CancelledError | None = None
    for ticket in tickets:
        try:
            await ticket.release(response)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled


def _interrupted(error: BaseException) -> str:
    """The outcome of a call that neither answered nor failed upstream."""
    return "Cancelled" if isinstance(error, asyncio.CancelledError) else type(error).__name__


def _where(group: str, deployment: str) -> str:
    """`group/deployment` for messages, without repeating the group when the
    deployment's generated name already starts with it (`budget/gemini/...`)."""
    return deployment if deployment.startswith(f"{group}/") else f"{group}/{deployment}"
