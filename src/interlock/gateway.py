"""The one place where the parts are wired together: decide -> dispatch -> record.

`Gateway` is built from a loaded config. The HTTP server and the library
facades (`Router`, `Controller`) both call it, so a request behaves the same
whichever way it came in. Everything request-scoped is measured here: the
routing decision, the attempts, the cost, and the overhead Interlock added on
top of the upstream time.

Its parts: `response_meta` (what is known of a request, and the results handed
back), `request_record` (the ledger row of each request), `gateway_stream`
(a streamed answer), `gateway_budgets` (the budget gate and what feeds it).

Imports: everything below it (config, catalog, routing, dispatch, adapters, costs).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interlock.adapters.http import HttpClient, Timeouts
from interlock.adapters.mock import is_failure_sentinel
from interlock.adapters.registry import AdapterRegistry
from interlock.catalog import Catalog
from interlock.config import InterlockConfig, build_catalog
from interlock.costs.context_windows import listed_context_window
from interlock.costs.ledger import Ledger
from interlock.costs.prices import PriceBook, unknown_price
from interlock.dispatch.dispatcher import Dispatcher
from interlock.errors import ConfigError, InvalidRequest, UnknownModel
from interlock.gateway_budgets import new_budget_gate, run_time_key_budgets
from interlock.gateway_stream import GatewayStream
from interlock.key_limits import KeyLimits
from interlock.key_names import NOT_SHOWN, shown_name
from interlock.openai_request import TESTING_SWITCH
from interlock.request_record import RequestRecorder, fill_answerer, outside_ms
from interlock.response_meta import Completion, Embeddings, ResponseMeta, new_request_id
from interlock.routing.decision import RoutingDecision, direct
from interlock.routing.policy import RoutingPolicy, parse_router_alias
from interlock.types import ChatRequest, EmbeddingRequest, EmbeddingResult, Message, TextPart

if TYPE_CHECKING:
    from interlock.costs.budgets import BudgetGate
    from interlock.key_store import KeyStore

log = logging.getLogger("interlock.gateway")


def _no_mock_failures(request: ChatRequest) -> None:
    """Refuse a gateway client's LiteLLM testing switches that fail a call: a mocked
    failure counts as the deployment's own (its cooldown and error rate, shared
    with every tenant through Redis), and `mock_timeout` holds a slot for the whole
    timeout. A library caller owns its router and may test its fallbacks so; a
    mocked answer (`mock_response` text) harms no one and stays allowed."""
    if request.mock_response is not None and is_failure_sentinel(request.mock_response):
        asked = "mock_response"
    elif request.mock_failures:
        asked = "mock_testing_rate_limit_error"
    elif request.mock_timeout:
        asked = "mock_timeout"
    elif request.mock_group_failure:
        asked = TESTING_SWITCH[request.mock_group_failure]
    else:
        return
    raise InvalidRequest(
        f"'{asked}' asks the gateway to fail a call on purpose, which would count "
        "against a real deployment for every client; LiteLLM's testing switches "
        "work in the library (interlock.Router), not through the gateway. Remove it.",
        param=asked, code="testing_switch_not_allowed")


class Gateway:
    """Routing, dispatch, pricing and the ledger for one process."""

    def __init__(self, config: InterlockConfig, *, environ: Mapping[str, str] | None = None,
                 http: HttpClient | None = None, dispatcher: Dispatcher | None = None,
                 server: bool = False) -> None:
        """`server`: the gateway of a process `interlock serve` owns, whose ledger
        writes from a child process unless `ledger.writer` is "thread"."""
        self.config = config
        # Known context windows fill the input limits the config leaves unset, as
        # LiteLLM's model table does: resolved here, once, from the data the price
        # book reads anyway, so dispatch and catalog need not know of `costs`.
        self.catalog: Catalog = build_catalog(config, environ=environ,
                                              context_windows=listed_context_window)
        self.http = http or HttpClient(
            max_connections=config.router_settings.max_upstream_connections,
            max_per_host=config.router_settings.max_upstream_connections_per_host)
        self.adapters = AdapterRegistry(self.http)
        self.prices = PriceBook.build(self.catalog, config.prices)
        # Only with budgets to count: the gate costs every attempt an await.
        self.budgets: BudgetGate | None = (
            new_budget_gate(config, self.catalog, self.prices) if config.budgets else None)
        self.dispatcher = dispatcher or Dispatcher(
            self.catalog, self.adapters, config.router_settings,
            gates=[self.budgets] if self.budgets is not None else [])
        self.key_limits = KeyLimits(config.general_settings.api_keys, self.dispatcher.state)
        # The client keys with limits of their own: one set lookup a request.
        self._limited_keys = self.key_limits.limited
        # Client keys made at run time, for the server's /key/* API (`use_key_store`).
        self.keys: KeyStore | None = None
        # What was warned of once (a name in the config and the store; a key's bad budget).
        self._warned_names: set[str | tuple[str, str]] = set()
        self.routing = RoutingPolicy.from_config(config.routing, self.catalog,
                                                 ask=self._ask_for_router,
                                                 embed=self._embed_for_router,
                                                 prices=self.prices.price_for)
        self._aliases = config.router_settings.group_aliases()
        self.ledger: Ledger | None = None
        if config.ledger and config.ledger.database:
            self.ledger = Ledger(config.ledger,
                                 in_process=server and config.ledger.writer == "process")
        self.recorder = RequestRecorder(self.catalog, self.prices, self.ledger,
                                        bool(config.ledger and config.ledger.log_payloads))
        # Bound once: the request path calls them without a lookup through the recorder.
        self._record = self.recorder.record
        self._answered = self.recorder.answered
        self._recording_failure = self.recorder.recording_failure
        self.record_refused = self.recorder.record_refused
        self._started = False
        for warning in config.warnings:
            log.warning("%s", warning)
        for name in self.prices.unknown():  # the book's own list, priced once
            log.warning("no known price for deployment %s: %s", name,
                        unknown_price(self.catalog.deployment(name)))

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self._started and (self.ledger is None or not self.ledger.needs_writer):
            return
        self._started = True
        if self.ledger is not None:
            await self.ledger.start()
        if self.keys is not None:
            await self.keys.start()  # first: the keys bring budgets of their own
        if self.budgets is not None:
            # Counted in memory, the budgets begin from the ledger's record.
            await self.budgets.start()

    async def aclose(self) -> None:
        if self.keys is not None:
            await self.keys.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.budgets is not None:
            await self.budgets.aclose()
        await self.dispatcher.aclose()
        await self.http.aclose()
        self._started = False

    def close_from_outside(self) -> None:
        """Without `aclose` (a program ending, or a dropped Router's close task
        that was stopped): write the ledger rows still buffered and close the
        connection pool on whichever loop it belongs to. The ledger write blocks
        the calling thread, a running loop's too: it runs once, at the end."""
        if self.ledger is not None:
            self.ledger.write_pending()
        self.http.close_from_outside()

    def use_key_store(self, **settings: Any) -> KeyStore:
        """Keep client keys made at run time in the ledger's database (the server's
        /key/* API); their limits apply as a config key's. `settings` go to
        `KeyStore` (refresh_interval, clock)."""
        from interlock.key_store import KeyStore

        if self.config.ledger is None or not self.config.ledger.database:
            raise ConfigError("client keys made at run time are kept in the ledger's "
                              "database: set ledger.database")
        self.keys = KeyStore(self.config.ledger, on_change=self._run_time_keys_read,
                             **settings)
        return self.keys

    def _run_time_keys_read(self, found: Mapping[bytes, Any]) -> None:
        keys = list(found.values())
        self.key_limits.set_run_time_keys(keys)
        self._use_key_budgets(keys)
        # A config key added after a run-time key of the same name was made: both
        # authenticate, and the ledger cannot tell their requests apart.
        config_names = {k.name for k in self.config.general_settings.api_keys}
        for name in sorted({k.name for k in keys} & config_names - self._warned_names):
            self._warned_names.add(name)
            shown = shown_name(name)
            # A name that looks like a key is left out of the command too.
            command = "interlock keys delete NAME" if shown == NOT_SHOWN else (
                f"interlock keys delete {shown}")
            log.warning("the client key %s is both in the config and made at run time: the "
                        "ledger records both as one; rename the config's or delete the "
                        "other (%s)", shown, command)

    def _use_key_budgets(self, keys: list[Any]) -> None:
        """Hand the run-time keys' budgets to the budget gate, made for them if
        the config has no budgets."""
        budgets = run_time_key_budgets(keys, self._warned_names)
        if budgets and self.budgets is None:
            # The first run-time key with a budget: from now on every attempt
            # passes the budget gate (which a config without budgets spared it).
            self.budgets = new_budget_gate(self.config, self.catalog, self.prices)
            self.dispatcher.add_gate(self.budgets)
        if self.budgets is not None:
            self.budgets.set_key_budgets(budgets)
            if self._started:  # past the start that begins a gate's counting
                self.budgets.begin()

    # -- what clients can ask for ----------------------------------------------
    def model_names(self) -> list[str]:
        shown = {name for name, alias in self._aliases.items() if not alias.hidden}
        return sorted(set(self.catalog.group_names) | set(self.routing.public_names()) | shown)

    # -- one request -----------------------------------------------------------
    def bounded_for_client(self, request: ChatRequest) -> ChatRequest:
        """`request` with its own timeout held to the router's, and its own
        num_retries marked to be held to each group's retry policy.

        A library caller owns its router and may lengthen either; a gateway
        client may only shorten them, so that the operator's settings bound
        how long one request runs and how many upstream calls it makes.

        Nor may it make Interlock fail its deployments on purpose (`_no_mock_failures`)."""
        if (request.mock_response is not None or request.mock_failures
                or request.mock_timeout or request.mock_group_failure):
            _no_mock_failures(request)
        if request.timeout is None and request.num_retries is None:
            return request
        limit = self.config.router_settings.request_timeout(stream=request.stream)
        timeout = request.timeout
        if timeout is not None and limit is not None:
            timeout = min(timeout, limit)
        return dataclasses.replace(request, timeout=timeout,
                                   retries_bounded=request.num_retries is not None)

    def owned_fallbacks(self, request: ChatRequest) -> ChatRequest:
        """A library caller's request, whose own `fallbacks` (and context-window
        and content-policy chains) apply as given (it owns the config), with each
        name checked and an alias read as its group: a name that is no model group
        would otherwise be a failover silently lost."""
        if request.fallbacks is None and request.kind_fallbacks is None:
            return request  # nothing to read as given: the configured chains apply
        fallbacks = request.fallbacks
        if fallbacks is not None:
            fallbacks = self._fallback_chains(fallbacks, "fallbacks")
        kinds = request.kind_fallbacks
        if kinds is not None:
            kinds = {param: self._fallback_chains(chains, param)
                     for param, chains in kinds.items()}
        return dataclasses.replace(request, fallbacks=fallbacks, kind_fallbacks=kinds,
                                   fallbacks_as_given=True)

    def _fallback_chains(self, wanted: list[str] | dict[str, list[str]], param: str
                         ) -> list[str] | dict[str, list[str]]:
        if isinstance(wanted, dict):
            return {(name if name == "*" else self._fallback_groups([name], param)[0]):
                    self._fallback_groups(chain, param) for name, chain in wanted.items()}
        return self._fallback_groups(wanted, param)

    def _fallback_groups(self, names: list[str], param: str) -> list[str]:
        groups = []
        for name in names:
            alias = self._aliases.get(name)
            group = alias.model if alias is not None else name
            if group not in self.catalog.groups:
                raise InvalidRequest(
                    f"'{param}' names {name!r}, which is not a model group; fallbacks "
                    f"are model groups: {', '.join(sorted(self.catalog.group_names))}.",
                    param=param, code="model_not_found")
            groups.append(group)
        return groups

    async def decide(self, request: ChatRequest) -> RoutingDecision:
        alias = self._aliases.get(request.model)
        if alias is None:
            try:
                return await self.routing.decide(request,
                                                 available=self.dispatcher.group_available)
            except UnknownModel as exc:
                # The policy lists groups and routed names; clients may also use
                # the visible model_group_alias names, which only the gateway knows.
                raise UnknownModel(exc.model, self.model_names(), exc.hint) from None
        # LiteLLM's model_group_alias: route as the target, record what was asked for.
        decision = await self.routing.decide(dataclasses.replace(request, model=alias.model),
                                             available=self.dispatcher.group_available)
        return dataclasses.replace(
            decision, requested=request.model,
            reason=f"{request.model!r} is an alias of {alias.model!r}; {decision.reason}")

    async def complete(self, request: ChatRequest, *, request_id: str | None = None,
                       key_id: str | None = None, arrived: float | None = None,
                       settle_later: bool = False) -> Completion:
        """`arrived` (perf_counter) is when the server received the request, so the
        overhead it reports includes parsing; the library leaves it unset.

        With `settle_later` the answer's ledger row is left to `Completion.settle`,
        which the caller must call (in a `finally`): the server answers the client
        first, so the row's work is not in the client's wait. A failure is recorded
        here either way."""
        started, meta = await self._begin(request, request_id, arrived, key_id)
        with self._recording_failure(meta, started, request, key_id):
            if key_id in self._limited_keys:
                meta.key_ticket = await self.key_limits.admit(key_id, request)
            meta.decision = await self.decide(request)
            result = await self.dispatcher.complete(request, meta.decision.group, meta.attempts,
                                                    meta.waits)
        response = result.response
        self._answered(meta, started, request, result, response.usage, response.service_tier)
        record = functools.partial(self._record, meta, request, response.usage,
                                   response.content, key_id, False)  # stream=False
        if settle_later:
            return Completion(response, meta, record)
        record()
        return Completion(response, meta)

    async def stream(self, request: ChatRequest, *, request_id: str | None = None,
                     key_id: str | None = None, arrived: float | None = None,
                     settle_later: bool = False) -> GatewayStream:
        """Open a stream; failover before the first byte happens in here.

        With `settle_later` the ledger row of a stream that ends is written by
        `GatewayStream.aclose`, which the caller must await (in a `finally`), so
        that the stream's last bytes go out first."""
        started, meta = await self._begin(request, request_id, arrived, key_id)
        with self._recording_failure(meta, started, request, key_id):
            if key_id in self._limited_keys:
                meta.key_ticket = await self.key_limits.admit(key_id, request)
            meta.decision = await self.decide(request)
            upstream = await self.dispatcher.open_stream(request, meta.decision.group,
                                                         meta.attempts, meta.waits)
        fill_answerer(meta, upstream.deployment, upstream.group, upstream.attempts)
        meta.ttft_ms = (time.perf_counter() - started) * 1000
        # Headers go out now, so overhead is what came before the first byte.
        meta.overhead_ms = max(0.0, meta.ttft_ms - outside_ms(upstream.attempts, meta.waits))
        return GatewayStream(self.recorder, request, upstream, meta, started, key_id,
                             settle_later=settle_later)

    async def embed(self, request: EmbeddingRequest, *, request_id: str | None = None,
                    key_id: str | None = None, arrived: float | None = None) -> Embeddings:
        """Embeddings from the named model group, with retries, fallbacks and a
        ledger row (input tokens only) like a completion's."""
        routing = request.routing
        started, meta = await self._begin(routing, request_id, arrived, key_id)
        with self._recording_failure(meta, started, routing, key_id):
            if key_id in self._limited_keys:
                meta.key_ticket = await self.key_limits.admit(key_id, routing)
            meta.decision = self._embedding_decision(routing.model)
            result = await self.dispatcher.embed(request, meta.decision.group)
        self._answered(meta, started, routing, result, result.response.usage)
        meta.usage_estimated = result.response.usage_estimated
        self._record(meta, routing, result.response.usage, None, key_id, stream=False)
        return Embeddings(result.response, result.deployment.model, meta)

    def _embedding_decision(self, name: str) -> RoutingDecision:
        """Embeddings go to a model group (or an alias of one) by name: routers
        choose between chat models by the prompt, which says nothing here."""
        alias = self._aliases.get(name)
        group = alias.model if alias is not None else name
        if group in self.catalog.groups:
            decision = direct(group)
            return decision if alias is None else dataclasses.replace(
                decision, requested=name, reason=f"{name!r} is an alias of {group!r}")
        embedding_groups = self._embedding_groups()
        if name in self.model_names() or parse_router_alias(name) is not None:
            raise InvalidRequest(
                f"{name!r} is a router, which picks between chat models; embeddings need a "
                f"model group by name: one of {embedding_groups}.",
                param="model", code="model_not_supported")
        raise UnknownModel(name, embedding_groups)

    def _embedding_groups(self) -> list[str]:
        """The groups worth suggesting for embeddings: those with a deployment whose
        provider has an embeddings API (a chat-only group would fail anyway)."""
        def embeds(provider: str) -> bool:
            return callable(getattr(self.adapters.for_provider(provider), "embeddings", None))

        return sorted(g.name for g in self.catalog.groups.values()
                      if any(embeds(d.provider) for d in g.deployments))

    async def _begin(self, request: ChatRequest, request_id: str | None,
                     arrived: float | None, key_id: str | None) -> tuple[float, ResponseMeta]:
        """(start time, metadata) of one request; the decision is filled in later.
        The caller's key id goes with the request, for budgets per client key."""
        await self.start()
        request.api_key_id = key_id
        meta = ResponseMeta(request_id or new_request_id(),
                            self.routing.placeholder(request.model))
        return arrived or time.perf_counter(), meta

    async def _embed_for_router(self, group: str, texts: list[str]) -> list[list[float]]:
        """Embeddings for a router trained on an embeddings endpoint: the first usable
        deployment of `group` whose adapter can embed."""
        settings = self.config.router_settings
        request = EmbeddingRequest(ChatRequest(model=group, messages=[]), texts)
        for d in self.catalog.group(group).deployments:
            adapter = self.adapters.for_provider(d.provider)
            embeddings = getattr(adapter, "embeddings", None)
            if d.available and embeddings is not None:
                timeouts = Timeouts(connect=settings.connect_timeout,
                                    total=d.timeout or settings.timeout)
                result: EmbeddingResult = await embeddings(request, d, timeouts)
                return result.vectors
        raise InvalidRequest(f"model group {group!r} has no usable embeddings deployment "
                             "(an OpenAI-compatible or Gemini one with a key)")

    async def _ask_for_router(self, group: str, prompt: str) -> str:
        """Lets the `llm` router ask a cheap model group, without importing the gateway."""
        question = Message(role="user", parts=[TextPart(prompt)])
        request = ChatRequest(model=group, messages=[question], max_tokens=8, temperature=0.0)
        result = await self.dispatcher.complete(request, group)
        return result.response.content or ""
