"""A scriptable fake Adapter and helpers for dispatcher unit tests.

The adapter's behaviour per deployment is a queue of steps (then a default
step); it sleeps on the injected clock, so tests run in virtual time.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from interlock.adapters.http import Timeouts
from interlock.catalog import Catalog, Deployment
from interlock.dispatch.clock import Clock, FakeClock
from interlock.dispatch.dispatcher import Dispatcher
from interlock.dispatch.settings import RouterSettings
from interlock.dispatch.state import MemoryStateBackend
from interlock.errors import ProviderError, Timeout
from interlock.types import ChatRequest, ChatResponse, Message, StreamDelta, TextPart, Usage

Step = Callable[["ScriptedAdapter", ChatRequest, Deployment, Timeouts], Awaitable[ChatResponse]]


def ok(text: str = "hello", latency: float = 0.0, tokens: int = 10) -> Step:
    async def step(a: ScriptedAdapter, r: ChatRequest, d: Deployment, t: Timeouts
                   ) -> ChatResponse:
        if latency:
            if t.total is not None and latency > t.total:
                await a.clock.sleep(t.total)
                raise Timeout("timed out", provider=d.provider, deployment=d.name)
            await a.clock.sleep(latency)
        return ChatResponse(id="r", model=d.model, content=f"{text} from {d.name}",
                            usage=Usage(tokens, tokens))
    return step


def fail(cls: type[ProviderError], status: int | None = None, retry_after: float | None = None,
         latency: float = 0.0) -> Step:
    async def step(a: ScriptedAdapter, r: ChatRequest, d: Deployment, t: Timeouts
                   ) -> ChatResponse:
        if latency:
            # A real adapter gives up at its total timeout, whatever the upstream does.
            if t.total is not None and latency > t.total:
                await a.clock.sleep(t.total)
                raise Timeout("timed out", provider=d.provider, deployment=d.name)
            await a.clock.sleep(latency)
        raise cls(f"scripted {cls.__name__}", provider=d.provider, deployment=d.name,
                  status=status, retry_after=retry_after)
    return step


def hang() -> Step:
    async def step(a: ScriptedAdapter, r: ChatRequest, d: Deployment, t: Timeouts
                   ) -> ChatResponse:
        await a.clock.sleep(t.total if t.total is not None else 3600)
        raise Timeout("hung", provider=d.provider, deployment=d.name)
    return step


@dataclass
class Call:
    deployment: str
    at: float
    timeouts: Timeouts
    request: ChatRequest


@dataclass
class ScriptedAdapter:
    clock: Clock
    provider = "fake"
    default: Step = field(default_factory=ok)
    queues: dict[str, list[Step]] = field(default_factory=dict)
    defaults: dict[str, Step] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # Stream scripts: deployment -> (chunks, fail_after or None, error)
    streams: dict[str, tuple[list[str], int | None, ProviderError | None]] = field(
        default_factory=dict)

    def script(self, deployment: str, *steps: Step, then: Step | None = None) -> None:
        self.queues.setdefault(deployment, []).extend(steps)
        if then is not None:
            self.defaults[deployment] = then

    def _step(self, name: str) -> Step:
        queue = self.queues.get(name)
        if queue:
            return queue.pop(0)
        return self.defaults.get(name, self.default)

    def count(self, deployment: str | None = None) -> int:
        return sum(1 for c in self.calls if deployment in (None, c.deployment))

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        self.calls.append(Call(deployment.name, self.clock.now(), timeouts, request))
        return await self._step(deployment.name)(self, request, deployment, timeouts)

    def stream(self, request: ChatRequest, deployment: Deployment,
               timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        self.calls.append(Call(deployment.name, self.clock.now(), timeouts, request))
        return self._stream(request, deployment, timeouts)

    async def _stream(self, request: ChatRequest, deployment: Deployment,
                      timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        script = self.streams.get(deployment.name)
        if script is None:
            response = await self._step(deployment.name)(self, request, deployment, timeouts)
            script = ([response.content or ""], None, None)
        chunks, fail_after, error = script
        for i, chunk in enumerate(chunks):
            if fail_after is not None and i >= fail_after and error is not None:
                raise error
            yield StreamDelta(text=chunk)
        yield StreamDelta(finish_reason="stop", usage=Usage(5, len(chunks)))


class Registry:
    def __init__(self, adapter: ScriptedAdapter) -> None:
        self.adapter = adapter

    def for_provider(self, provider: str) -> ScriptedAdapter:
        return self.adapter


def dep(name: str, group: str = "g", **kw: Any) -> Deployment:
    return Deployment(name=name, group=group, provider=kw.pop("provider", "fake"),
                      model=kw.pop("model", name), **kw)


def request(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(model="g", messages=[Message(role="user", parts=[TextPart(text)])], **kw)


@dataclass
class Harness:
    dispatcher: Dispatcher
    adapter: ScriptedAdapter
    clock: FakeClock
    state: MemoryStateBackend


def make(deployments: list[Deployment], *, seed: int = 1, gates: Any = (),
         auto_advance: bool = True, **settings: Any) -> Harness:
    """`auto_advance=False`: virtual time moves only when the test advances it."""
    clock = FakeClock(auto_advance=auto_advance)
    adapter = ScriptedAdapter(clock)
    state = MemoryStateBackend(clock.now)
    settings.setdefault("backoff_base", 0.1)
    dispatcher = Dispatcher(Catalog.from_deployments(deployments), Registry(adapter),
                            RouterSettings(**settings), state=state, clock=clock,
                            rng=random.Random(seed), gates=gates)
    return Harness(dispatcher, adapter, clock, state)
