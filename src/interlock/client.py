"""Library facades over the gateway: `Router` (shaped like LiteLLM's Router).

    from interlock import Router
    router = Router(model_list=model_list, num_retries=3, timeout=30)
    resp = await router.acompletion(model="high-quality", messages=[...])

Code written against LiteLLM's Router ports by changing its import line.
Keyword arguments of `acompletion` are the OpenAI request body, parsed by the
same code as the gateway's, so library and gateway behave alike. The sync
methods run on one private event loop thread owned by the Router.

Imports: the standard library, `adapters.http`, `catalog`, `config`, `errors`,
`gateway`, `masking`, `model_group_info`, `openai_*`, `responses`, `routing.decision`,
`specific_deployment`, `types`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from os import PathLike
from typing import Any, TypeVar

from pydantic import ValidationError

from interlock import specific_deployment
from interlock.adapters.http import running_loop
from interlock.catalog import Catalog
from interlock.config import InterlockConfig, config_from_router_kwargs, load_config
from interlock.config.report import config_error, describe_validation_error
from interlock.config.schema import DeploymentParams
from interlock.costs.settings import LedgerSettings
from interlock.errors import ConfigError, InvalidRequest, RouterClosed
from interlock.gateway import Gateway, GatewayStream
from interlock.masking import url_without_credentials
from interlock.model_group_info import model_group_info
from interlock.openai_embeddings import CALL_DEFAULTS as EMBEDDING_CALL_DEFAULTS
from interlock.openai_embeddings import embedding_dict, parse_embedding_request, wants_base64
from interlock.openai_request import (
    call_headers,
    include_usage,
    parse_call_defaults,
    parse_chat_request,
)
from interlock.openai_response import ChunkRenderer, completion_dict
from interlock.responses import (
    EmbeddingResponse,
    ModelResponse,
    ModelResponseChunk,
    OpenAIObject,
    hidden_params,
)
from interlock.routing.decision import RoutingDecision
from interlock.types import ChatRequest, ChatResponse

T = TypeVar("T")
log = logging.getLogger("interlock.client")

# The close tasks of Routers and streams dropped inside a running loop. The loop
# keeps only weak references to its tasks, and nothing else refers to these:
# asyncio's documented way to keep a fire-and-forget task alive. No setting or
# state of any Router lives here.
_closing: set[asyncio.Task[None]] = set()


def _closed_error() -> RouterClosed:
    return RouterClosed(
        "This Router was closed (by close(), aclose() or the end of its `async with` "
        "block) and makes no more calls. Keep one Router open for as long as the "
        "program uses it and close it once at the end (or never: it is closed when "
        "dropped), or create a new one.")


def _close_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None],
                then: Callable[[], None] | None = None) -> None:
    """Run `coro` as a task on `loop`, the loop of this thread, without waiting
    for it; `then()` runs when it is done however it ended (cancelled too, as an
    `asyncio.run` cancels what is left when it ends)."""
    task = loop.create_task(coro)
    _closing.add(task)

    def done(task: asyncio.Task[None]) -> None:
        _closing.discard(task)
        _log_failed_close(task)
        if then is not None:
            then()

    task.add_done_callback(done)


def _close_later(loop: asyncio.AbstractEventLoop,
                 close: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `close()` on `loop` without waiting for it, from any thread: a
    finalizer runs wherever the last reference went, often on the loop's own
    thread, which must never wait on the loop. An ended loop has nothing left
    to close it on."""
    if loop.is_closed():
        return
    if running_loop() is loop:
        _close_task(loop, close())
        return
    coro = close()
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # closed meanwhile
        coro.close()
        return
    future.add_done_callback(_log_failed_close)


class _LoopThread:
    """One event loop in a daemon thread, for the sync API."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._stopped:
            # Starting a new loop would reopen the Router, which nothing would close.
            coro.close()
            raise _closed_error()
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever,
                                                name="interlock-sync", daemon=True)
                self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """`run` for a coroutine on another loop, which waits without blocking it."""
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def submit(self, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `close()` on the loop without waiting for it, from any thread."""
        if self._loop is not None:
            _close_later(self._loop, close)

    @property
    def started(self) -> bool:
        return self._loop is not None

    @property
    def is_current(self) -> bool:
        """True in the loop's own thread, which must never wait on the loop."""
        return self._thread is threading.current_thread()

    def stop(self) -> None:
        self._stopped = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._loop.close()
            self._loop = None


def _log_failed_close(future: concurrent.futures.Future[None] | asyncio.Future[None]) -> None:
    exc = None if future.cancelled() else future.exception()
    if exc is not None:  # no caller is left to raise it to
        log.warning("closing a dropped stream or router failed (%s: %s)",
                    type(exc).__name__, exc)


def _release(sync: _LoopThread, gateway: Gateway) -> None:
    """Close what a Router opened: through its sync loop when that ran, then what
    an ended `asyncio.run` left (ledger rows its cancelled writer did not write,
    a pool on its closed loop)."""
    if sync.is_current:
        # The last reference went away inside a call on the sync loop: waiting on
        # that loop from its own thread would hang, so this release is skipped.
        return
    loop = running_loop()
    if loop is not None:
        # Dropped inside a coroutine (a Router made in `async def main()`): waiting
        # here would freeze this thread's loop, so the close runs on it as a task.
        _close_task(loop, _aclose_dropped(sync, gateway),
                    then=functools.partial(_release_the_rest, sync, gateway))
        return
    try:
        if sync.started:
            sync.run(gateway.aclose())
    except Exception as exc:  # at exit there is no one left to raise to
        log.warning("closing the router failed (%s: %s)", type(exc).__name__, exc)
    _release_the_rest(sync, gateway)


async def _aclose_dropped(sync: _LoopThread, gateway: Gateway) -> None:
    if sync.started:  # the sync API's ledger writer and pool live on its loop
        await sync.arun(gateway.aclose())
    else:
        await gateway.aclose()


def _release_the_rest(sync: _LoopThread, gateway: Gateway) -> None:
    """What a close left, or all of it when cancelled before it began: ledger
    rows still buffered, written on this thread, and the pool, closed without
    waiting on this thread's loop. Then the sync loop's thread ends."""
    try:
        gateway.close_from_outside()
    except Exception as exc:  # no caller is left to raise it to
        log.warning("closing the router failed (%s: %s)", type(exc).__name__, exc)
    finally:
        sync.stop()


def ledger_settings(ledger: str | Mapping[str, Any] | None) -> LedgerSettings:
    """The `ledger=` argument as settings; a bad one is a ConfigError naming the
    problem, as a config file's would be (not pydantic's own error)."""
    if ledger is None:
        return LedgerSettings(database=None)
    try:
        if isinstance(ledger, str):
            return LedgerSettings(database=ledger)
        return LedgerSettings.model_validate(dict(ledger))
    except ValidationError as exc:
        problems = [f"ledger.{line}" for line in describe_validation_error(exc, LedgerSettings)]
        raise config_error("(the ledger argument)", problems) from None


# Deployment settings that LiteLLM also takes as call arguments, and that a
# call's defaults must not set: here they belong to the deployment alone.
_NOT_REQUEST_DEFAULTS = (frozenset(DeploymentParams.model_fields) | {"messages"}) - {
    "timeout", "max_tokens", "drop_params", "mock_response"}


def request_defaults(defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """LiteLLM's `default_litellm_params`: arguments every call gets unless it
    gives its own, checked now so that a mistake fails at construction."""
    if defaults is None:
        return {}
    if not isinstance(defaults, Mapping):
        raise ConfigError("default_litellm_params must be a dict of call arguments, "
                          f"got {type(defaults).__name__}.")
    misplaced = sorted(k for k in defaults if k in _NOT_REQUEST_DEFAULTS)
    if misplaced:
        raise ConfigError(
            f"default_litellm_params: {', '.join(misplaced)} belong to a deployment, not to "
            "a call; set them in model_list[].litellm_params.")
    try:
        parse_call_defaults(defaults)
    except InvalidRequest as exc:
        raise ConfigError(f"default_litellm_params: {exc.message}") from None
    return dict(defaults)


def _with_defaults(defaults: Mapping[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The call's own arguments win; `metadata` is merged, as LiteLLM merges it."""
    if not defaults:
        return body
    merged = {**defaults, **body}
    if isinstance(defaults.get("metadata"), Mapping) and isinstance(body.get("metadata"),
                                                                     Mapping):
        merged["metadata"] = {**defaults["metadata"], **body["metadata"]}
    return merged


def _api_base(catalog: Catalog, deployment: str | None) -> str | None:
    """The answering deployment's base URL, for LiteLLM's `_hidden_params`."""
    if deployment is None:
        return None
    base = catalog.deployment(deployment).api_base
    return url_without_credentials(base) if base else None


def _fill_hidden(hidden: dict[str, Any], stream: GatewayStream, catalog: Catalog) -> None:
    """Bring a stream's `_hidden_params` up to what it knows now: the deployment
    once it opened (another one if `stream_continuation` carried it on), the cost
    once it ended. Updated in place: every chunk refers to this one dict."""
    meta = stream.meta
    hidden.update(hidden_params(meta.deployment, meta.provider, meta.cost_usd,
                                _api_base(catalog, meta.deployment)))


async def _rendered(stream: GatewayStream, include_usage: bool, hidden: dict[str, Any],
                    catalog: Catalog) -> AsyncGenerator[ModelResponseChunk, None]:
    # A function, not a method: a generator holding its CompletionStream would
    # make a cycle, and a stream dropped unfinished would wait for the cyclic
    # collector to be closed and recorded.
    render = ChunkRenderer(stream.meta.request_id,
                           legacy_functions=stream.request.legacy_functions,
                           include_usage=include_usage)
    try:
        async for delta in stream:
            chunk = render.chunk(delta)
            if chunk is not None:
                yield ModelResponseChunk(chunk, hidden)
    finally:
        await stream.aclose()
        _fill_hidden(hidden, stream, catalog)
    if include_usage:
        yield ModelResponseChunk(render.usage_chunk(stream.shown_usage(),
                                                    stream.meta.stream_summary()), hidden)


async def _aclose_stream(chunks: AsyncGenerator[ModelResponseChunk, None],
                         stream: GatewayStream, hidden: dict[str, Any],
                         catalog: Catalog) -> None:
    try:
        await chunks.aclose()
    finally:
        # A generator closed before its first chunk never ran its `finally`.
        await stream.aclose()
        _fill_hidden(hidden, stream, catalog)


class CompletionStream:
    """What `acompletion(..., stream=True)` returns: iterate it for chunks.

    After iteration, `response()` is the assembled final answer and
    `interlock` the metadata (deployment, attempts, cost). `_hidden_params`
    holds LiteLLM's keys, as a response's: the deployment from the start, the
    `response_cost` once the stream has ended (read to its end or closed); its
    chunks share that dict. `aclose()` ends it early; one dropped unfinished is
    closed on its loop, and either way it gives its deployment's slot back and
    leaves its ledger row."""

    def __init__(self, stream: GatewayStream, include_usage: bool, catalog: Catalog) -> None:
        self._stream = stream
        self._catalog = catalog
        # LiteLLM's stream wrapper keeps this as an attribute, which ported code
        # reads (`stream._hidden_params["model_id"]`).
        self._hidden_params: dict[str, Any] = {}
        _fill_hidden(self._hidden_params, stream, catalog)
        # One generator for the stream's life, so that `anext()` and `async for`
        # share a position and its `finally` closes and records the stream once.
        self._chunks = _rendered(stream, include_usage, self._hidden_params, catalog)
        # A stream dropped before its end (never iterated, or left without
        # aclose) would keep its slot for good: nothing else closes a generator
        # that never started. Must not hold `self`; scheduled, never awaited, as
        # collection often happens on the loop's own thread.
        self._finalizer = weakref.finalize(
            self, _close_later, asyncio.get_running_loop(),
            functools.partial(_aclose_stream, self._chunks, stream, self._hidden_params,
                              catalog))

    @property
    def interlock(self) -> dict[str, Any]:
        return self._stream.meta.as_dict()

    def response(self) -> ChatResponse:
        return self._stream.response()

    def __aiter__(self) -> CompletionStream:
        return self

    async def __anext__(self) -> ModelResponseChunk:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finalizer.detach()  # the generator's `finally` has closed it
            raise

    async def aclose(self) -> None:
        self._finalizer.detach()
        await _aclose_stream(self._chunks, self._stream, self._hidden_params, self._catalog)


class SyncCompletionStream:
    """What `completion(..., stream=True)` returns: an iterator of chunks over a
    stream `completion` has already opened, so that routing and provider errors
    raise from the call, as in LiteLLM and the OpenAI SDK.

    `close()` ends it early; one dropped unfinished is closed on the Router's
    loop, and either way the stream leaves its ledger row."""

    def __init__(self, stream: CompletionStream, sync: _LoopThread) -> None:
        self._stream = stream
        self._sync = sync
        # Must not hold `self`. Collection may happen on the loop thread itself,
        # which cannot wait on its loop, so the close is scheduled, not awaited.
        self._finalizer = weakref.finalize(self, sync.submit, stream.aclose)

    @property
    def interlock(self) -> dict[str, Any]:
        return self._stream.interlock

    @property
    def _hidden_params(self) -> dict[str, Any]:
        """The async stream's, as `CompletionStream` describes it."""
        return self._stream._hidden_params

    def response(self) -> ChatResponse:
        return self._stream.response()

    def __iter__(self) -> SyncCompletionStream:
        return self

    def __next__(self) -> ModelResponseChunk:
        try:
            return self._sync.run(self._stream.__anext__())
        except StopAsyncIteration:
            self._finalizer.detach()  # the generator's `finally` has closed it
            raise StopIteration from None

    def close(self) -> None:
        if self._finalizer.detach() is not None:
            self._sync.run(self._stream.aclose())


class Router:
    """Route, dispatch and record chat completions and embeddings in-process.

    Takes LiteLLM's `model_list` and router keyword arguments, or `config=` a
    YAML path / dict in Interlock's config format."""

    def __init__(self, model_list: list[dict[str, Any]] | None = None, *,
                 config: str | PathLike[str] | Mapping[str, Any] | InterlockConfig | None = None,
                 environ: Mapping[str, str] | None = None, **router_settings: Any) -> None:
        if config is not None and model_list is not None:
            raise TypeError("pass either model_list (with router settings) or config, not both")
        self._defaults: dict[str, Any] = {}
        self._warned_params: set[str] = set()
        self._embedding_defaults: dict[str, Any] = {}
        if isinstance(config, InterlockConfig):
            loaded = config
        elif config is not None:
            loaded = load_config(config, environ=environ)
        else:
            ledger = router_settings.pop("ledger", None)
            self._defaults = request_defaults(router_settings.pop("default_litellm_params", None))
            self._embedding_defaults = {k: v for k, v in self._defaults.items()
                                        if k in EMBEDDING_CALL_DEFAULTS}
            loaded = config_from_router_kwargs(model_list or [], environ=environ,
                                               **router_settings)
            # In-process use writes no file unless asked: Router(..., ledger="spend.sqlite").
            loaded.ledger = ledger_settings(ledger)
        self.config = loaded
        self._gateway = Gateway(loaded, environ=environ)
        self._sync = _LoopThread()
        # Using a Router after its close would reopen its pool and ledger writer,
        # and nothing would close them again: such calls raise RouterClosed.
        self._closed = False
        # A program that never calls close() (LiteLLM's Router needs none) still
        # gets its connections closed and ledger rows flushed when it ends, and no
        # "Unclosed client session" noise. The finalizer must not hold `self`.
        self._finalizer = weakref.finalize(self, _release, self._sync, self._gateway)

    @property
    def gateway(self) -> Gateway:
        return self._gateway

    @property
    def model_names(self) -> list[str]:
        return self._gateway.model_names()

    def get_model_names(self) -> list[str]:
        """The model groups a request can name (LiteLLM's spelling)."""
        return self.model_names

    def get_model_list(self, model_name: str | None = None) -> list[dict[str, Any]]:
        """The configured deployments as `model_list` entries, of one group when
        `model_name` is given (LiteLLM's spelling). A `model_group_alias` name
        gives its group's entries under the alias's name, as LiteLLM's does. API
        keys come back masked. Each entry's `model_info.id` is its deployment's
        name, as LiteLLM's Router gives every entry an id: the one
        `get_model_info` takes."""
        listed = self._listed_entries()
        if model_name is None:
            return listed
        group = self._group_of(model_name)
        return [{**entry, "model_name": model_name} for entry in listed
                if entry["model_name"] == group]

    def get_model_ids(self, model_name: str | None = None) -> list[str]:
        """The `model_info.id` of every deployment, or of one group's (or alias's)."""
        return [entry["model_info"]["id"] for entry in self.get_model_list(model_name)]

    def get_model_info(self, id: str) -> dict[str, Any] | None:
        """The `model_list` entry (as `get_model_list` gives it) of the deployment
        whose `model_info.id` is `id` (LiteLLM's parameter name); None when no
        deployment has it."""
        return next((listed for listed in self._listed_entries()
                     if listed["model_info"]["id"] == id), None)

    def get_deployment(self, model_id: str) -> OpenAIObject | None:
        """LiteLLM's `get_deployment`: the deployment whose `model_info.id` is
        `model_id`, as `get_model_info` gives it but with attribute access too
        (`.model_name`, `.litellm_params.model`); None when no deployment has it."""
        found = self.get_model_info(model_id)
        return OpenAIObject(found) if found is not None else None

    def get_model_group_info(self, model_group: str) -> OpenAIObject | None:
        """LiteLLM's `get_model_group_info`: a group's (or an alias's) providers,
        context and output limits, prices per token and rpm/tpm
        (`model_group_info`); None for a name that is neither."""
        group = self._gateway.catalog.groups.get(self._group_of(model_group))
        if group is None:
            return None
        return model_group_info(model_group, group, self._gateway.prices)

    def _group_of(self, name: str) -> str:
        """The model group a name stands for: an alias's target, else itself."""
        alias = self.config.router_settings.group_aliases().get(name)
        return alias.model if alias is not None else name

    def _listed_entries(self) -> list[dict[str, Any]]:
        config = self.config
        out = []
        for entry, name in zip(config.model_list, config.deployment_names(), strict=True):
            listed = entry.model_dump(mode="json", exclude_none=True)
            listed["model_info"] = {**listed.get("model_info", {}), "id": name}
            out.append(listed)
        return out

    @property
    def model_list(self) -> list[dict[str, Any]]:
        """Every configured deployment as a `model_list` entry, keys masked: LiteLLM's
        Router keeps its `model_list` as an attribute, which ported code reads."""
        return self.get_model_list()

    def health(self) -> list[Any]:
        """Each deployment's state: healthy, cooling (until when, why), half-open."""
        return self._gateway.dispatcher.health()

    async def adecide(self, model: str, messages: list[dict[str, Any]],
                      **kwargs: Any) -> RoutingDecision:
        """Which model group `acompletion` would send this to, without calling it."""
        self._refuse_if_closed()
        return await self._gateway.decide(self._parsed(model, messages, kwargs)[0])

    def decide(self, model: str, messages: list[dict[str, Any]],
               **kwargs: Any) -> RoutingDecision:
        """The sync twin of `adecide`."""
        return self._sync.run(self.adecide(model, messages, **kwargs))

    async def awin_rates(self, router: str, prompts: list[str]) -> list[float]:
        """The strong-win probability a learned router gives each prompt, the score
        `router-<router>-<threshold>` compares with its threshold."""
        self._refuse_if_closed()
        return await self._gateway.routing.win_rates(router, prompts)

    def win_rates(self, router: str, prompts: list[str]) -> list[float]:
        """The sync twin of `awin_rates`."""
        return self._sync.run(self.awin_rates(router, prompts))

    def _parsed(self, model: str, messages: list[dict[str, Any]], kwargs: dict[str, Any]
                ) -> tuple[ChatRequest, dict[str, Any]]:
        """(request, body) of a call: its arguments over the Router's defaults, parsed
        as the gateway parses a body. `extra_headers` is taken out first: HTTP
        headers for the provider, which a library call may send (a gateway's
        client may not) and which are no field of the body; so is
        `specific_deployment`, which a library call may use (`_pinned`)."""
        headers = call_headers(kwargs.pop("extra_headers", None))
        pin = specific_deployment.wanted(kwargs.pop("specific_deployment", None))
        body = _with_defaults(self._defaults, {"model": model, "messages": messages, **kwargs})
        request = self._gateway.owned_fallbacks(parse_chat_request(body))
        request.extra_headers = headers
        self._warn_ignored(request.ignored_params)
        return (self._pinned(request) if pin else request), body

    def _pinned(self, request: ChatRequest) -> ChatRequest:
        """The request to the one deployment its `model` names (LiteLLM's
        specific_deployment=True)."""
        found = specific_deployment.find_deployment(self.config, self._gateway.catalog,
                                                    request.model)
        return specific_deployment.pinned(request, found)

    def _warn_ignored(self, names: tuple[str, ...]) -> None:
        """Once per argument and Router: a LiteLLM call argument with no effect here."""
        for name in names:
            if name == "no-log":  # it does act: the ledger keeps none of the call's text
                continue
            if name not in self._warned_params:
                self._warned_params.add(name)
                log.warning("acompletion(%s=...): a LiteLLM argument accepted for "
                            "compatibility; it has no effect in Interlock and is not sent "
                            "to the provider", name)

    async def acompletion(self, model: str, messages: list[dict[str, Any]],
                          **kwargs: Any) -> Any:
        """A chat completion; with stream=True a `CompletionStream` of chunks."""
        self._refuse_if_closed()
        request, body = self._parsed(model, messages, kwargs)
        if request.stream:
            return CompletionStream(await self._gateway.stream(request), include_usage(body),
                                    self._gateway.catalog)
        done = await self._gateway.complete(request)
        return ModelResponse(completion_dict(done.response, request_id=done.meta.request_id,
                                             legacy_functions=request.legacy_functions),
                             interlock=done.meta.as_dict(),
                             api_base=_api_base(self._gateway.catalog, done.meta.deployment))

    def completion(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        """The sync twin of `acompletion`; with stream=True a `SyncCompletionStream`."""
        answer = self._sync.run(self.acompletion(model, messages, **kwargs))
        if isinstance(answer, CompletionStream):
            return SyncCompletionStream(answer, self._sync)
        return answer

    async def aembedding(self, model: str, input: str | list[str], **kwargs: Any
                         ) -> EmbeddingResponse:
        """Embeddings from a model group, with retries, fallbacks and a ledger row;
        keyword arguments are the rest of the OpenAI embeddings body, and
        `extra_headers` as `acompletion` takes them."""
        self._refuse_if_closed()
        headers = call_headers(kwargs.pop("extra_headers", None))
        pin = specific_deployment.wanted(kwargs.pop("specific_deployment", None))
        body = _with_defaults(self._embedding_defaults,
                              {"model": model, "input": input, **kwargs})
        request = parse_embedding_request(body)
        request.routing = self._gateway.owned_fallbacks(request.routing)
        request.routing.extra_headers = headers
        self._warn_ignored(request.routing.ignored_params)
        if pin:
            request.routing = self._pinned(request.routing)
        done = await self._gateway.embed(request)
        return EmbeddingResponse(
            embedding_dict(done.result, model=done.model, base64_out=wants_base64(body)),
            interlock=done.meta.as_dict())

    def embedding(self, model: str, input: str | list[str], **kwargs: Any
                  ) -> EmbeddingResponse:
        """The sync twin of `aembedding`."""
        return self._sync.run(self.aembedding(model, input, **kwargs))

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise _closed_error()

    async def aclose(self) -> None:
        """Release connections and write buffered ledger rows; the Router makes no
        more calls after this (RouterClosed)."""
        self._closed = True
        await self._gateway.aclose()

    def close(self) -> None:
        """Release connections and the sync loop thread (from sync code); the
        Router makes no more calls after this (RouterClosed)."""
        self._closed = True
        self._finalizer()

    async def __aenter__(self) -> Router:
        self._refuse_if_closed()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Router(model_groups={self.model_names!r})"
