"""Fault injection (issue 3 §7): the real adapters against the fake upstream.

Every scenario checks that no request is lost: each one ends in a success or
a clear error within its deadline. Times are scaled down tenfold from the
issue where a scenario would otherwise run for tens of seconds (a 10 s 429
phase becomes 1 s, cooldown_time 30 s becomes 3 s, the 60 s window 6 s); the
request counts are the issue's.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from interlock.adapters.http import HttpClient, Timeouts
from interlock.adapters.registry import AdapterRegistry
from interlock.catalog import Catalog, Deployment, Secret
from interlock.dispatch.dispatcher import Dispatcher
from interlock.dispatch.settings import RouterSettings
from interlock.errors import (
    ConnectionFailed,
    InterlockError,
    NoDeploymentAvailable,
    Overloaded,
    ProviderError,
    Timeout,
    UpstreamServerError,
)
from interlock.testing import FakeUpstream, Fault
from interlock.types import ChatRequest, ChatResponse, Message, StreamDelta, TextPart

MODELS = {"anthropic": "claude-sonnet-4", "gemini": "gemini-2.5-flash", "openai": "gpt-4o-mini"}


def deployment(fake: FakeUpstream, name: str, provider: str, group: str = "primary",
               **kw: Any) -> Deployment:
    return Deployment(name=name, group=group, provider=provider,
                      model=kw.pop("model", MODELS[provider]),
                      api_base=kw.pop("api_base", None) or fake.base_url(provider),
                      api_key=Secret("test-key-not-real"), **kw)


def request(text: str = "hello", stream: bool = False) -> ChatRequest:
    return chat(text, stream=stream)


def chat(text: str = "hello", **kw: Any) -> ChatRequest:
    return ChatRequest(model="primary", messages=[Message(role="user", parts=[TextPart(text)])],
                       **kw)


@dataclass
class CallLog:
    """Each upstream call's deployment, start and end (monotonic) and outcome."""

    calls: list[tuple[str, float, float, str]] = field(default_factory=list)

    def starts(self, name: str) -> list[float]:
        return [c[1] for c in self.calls if c[0] == name]


class RecordingRegistry:
    """The real AdapterRegistry, with each complete() call timed."""

    def __init__(self, registry: AdapterRegistry, log: CallLog) -> None:
        self._registry = registry
        self._log = log

    def for_provider(self, provider: str) -> Any:
        return _Recorder(self._registry.for_provider(provider), self._log)


class _Recorder:
    def __init__(self, adapter: Any, log: CallLog) -> None:
        self._adapter = adapter
        self._log = log

    async def complete(self, request: ChatRequest, d: Deployment, t: Timeouts) -> ChatResponse:
        start = time.monotonic()
        outcome = "ok"
        try:
            return await self._adapter.complete(request, d, t)
        except ProviderError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._log.calls.append((d.name, start, time.monotonic(), outcome))

    def stream(self, request: ChatRequest, d: Deployment, t: Timeouts
               ) -> AsyncIterator[StreamDelta]:
        return self._adapter.stream(request, d, t)


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.aclose()


def build(http: HttpClient, deployments: list[Deployment], log: CallLog | None = None,
          **settings: Any) -> Dispatcher:
    registry: Any = AdapterRegistry(http)
    if log is not None:
        registry = RecordingRegistry(registry, log)
    return Dispatcher(Catalog.from_deployments(deployments), registry,
                      RouterSettings(**settings), rng=random.Random(5))


async def run_many(dispatcher: Dispatcher, n: int, concurrency: int, group: str = "primary",
                   deadline: float = 30.0) -> tuple[list[Any], list[float]]:
    """n requests at the given concurrency: results (responses or errors) and durations."""
    sem = asyncio.Semaphore(concurrency)
    durations: list[float] = []

    async def one() -> Any:
        async with sem:
            start = time.monotonic()
            try:
                return await asyncio.wait_for(dispatcher.complete(request(), group), deadline)
            except InterlockError as exc:
                return exc
            finally:
                durations.append(time.monotonic() - start)

    return list(await asyncio.gather(*[one() for _ in range(n)])), durations


@pytest.mark.slow
async def test_primary_429_for_a_while_then_recovers(fake_upstream, http) -> None:
    """The seed's fallback set-up (Claude order 1, Gemini order 2, cooldown_time=30,
    allowed_fails=2, pre-call checks on), scaled by 1/10 in time: Claude answers 429
    with Retry-After for 1 s and recovers; 2,000 requests at concurrency 50."""
    fake_upstream.app.record = False
    latency = Fault(latency=0.06, times=None)  # paces the load over ~3 s
    log = CallLog()
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", order=1),
                     deployment(fake_upstream, "gemini", "gemini", order=2)], log,
              enable_pre_call_checks=True, cooldown_time=3.0, allowed_fails=2,
              allowed_fails_window=6.0, timeout=10)
    fake_upstream.script(Fault(status=429, retry_after=1, times=None), provider="anthropic")
    fake_upstream.script(latency, provider="gemini")
    fake_upstream.script(latency, provider="anthropic")
    started = time.monotonic()
    recovered_at: list[float] = []

    async def recover() -> None:
        # Before the earliest probe (1 s after the first 429 is answered): at 1.0 s
        # the recovery raced the probe, and a probe that won the race met a 429,
        # tripped the 3 s cooldown and left no call to succeed before the load ended.
        await asyncio.sleep(0.8)
        fake_upstream.app.script.clear()
        recovered_at.append(time.monotonic())
        fake_upstream.script(latency, provider="gemini")
        fake_upstream.script(latency, provider="anthropic")

    recovery = asyncio.create_task(recover())
    results, durations = await run_many(d, 2000, 50)
    await recovery
    fake_upstream.app.record = True

    assert all(isinstance(r, object) and not isinstance(r, Exception) for r in results), [
        r for r in results if isinstance(r, Exception)][:3]
    assert max(durations) < 10
    claude = [c for c in log.calls if c[0] == "claude"]
    first_429_answered = min(c[2] for c in claude if c[3] == "RateLimited")
    cooling_calls = [c for c in claude if first_429_answered <= c[1] < first_429_answered + 1.0]
    # While it cools (Retry-After: 1 s), only probes reach the primary: within
    # allowed_fails + 1 per window.
    assert len(cooling_calls) <= 2 + 1
    first_ok_after = min(c[1] for c in claude if c[3] == "ok" and c[1] >= recovered_at[0])
    assert first_ok_after - recovered_at[0] <= 3.0 + 0.1  # cooldown_time + 1 s, scaled
    served_by = [r.deployment.name for r in results]
    assert served_by.count("gemini") > 0 and served_by.count("claude") > 0
    assert time.monotonic() - started < 20


async def test_primary_hangs_requests_fail_over_after_their_timeout(fake_upstream, http
                                                                   ) -> None:
    fake_upstream.script(Fault(hang=True, times=None), provider="anthropic")
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", order=1, timeout=0.3),
                     deployment(fake_upstream, "gemini", "gemini", order=2)],
              allowed_fails=2, cooldown_time=30, timeout=5)
    results, durations = await run_many(d, 200, 20)
    assert all(not isinstance(r, Exception) for r in results)
    assert {r.deployment.name for r in results} == {"gemini"}
    assert max(durations) < 0.3 + 1.0
    # The first wave waits for its timeout; after allowed_fails + 1 timeouts the
    # breaker is open and later requests skip the primary without waiting.
    assert fake_upstream.calls("anthropic") <= 20 + 3
    fast = [t for t in durations if t < 0.25]
    assert len(fast) >= 150


@pytest.mark.slow
async def test_5xx_mix_at_30_percent_matches_the_policy(fake_upstream, http) -> None:
    """Every call fails with probability 0.3 (500, 503 or 529). With num_retries=2 and
    breakers out of the way, a request fails only when all 3 of its calls fail
    (p = 0.027), and makes 1 + 0.3 + 0.09 = 1.39 calls on average."""
    fake_upstream.app.record = False
    rng = random.Random(11)
    for provider in ("openai", "anthropic"):
        for _ in range(3000):
            fault = (Fault(status=rng.choice([500, 503, 529]), times=1) if rng.random() < 0.3
                     else Fault(times=1))
            fake_upstream.script(fault, provider=provider)
    d = build(http, [deployment(fake_upstream, "a", "openai"),
                     deployment(fake_upstream, "b", "anthropic")],
              num_retries=2, allowed_fails=10**6, backoff_base=0.001, backoff_max=0.01)
    n = 1000
    results, _ = await run_many(d, n, 20)
    fake_upstream.app.record = True
    ok = [r for r in results if not isinstance(r, Exception)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, UpstreamServerError | Overloaded) for e in failed)
    assert all(sum(a.called for a in e.attempts) == 3 for e in failed)
    # Binomial(1000, 0.027): mean 27, sd 5.1; a 4-sd band.
    assert 6 <= len(failed) <= 48
    calls = sum(r.upstream_calls for r in ok) + 3 * len(failed)
    assert calls == fake_upstream.calls()
    assert 1.39 * n * 0.93 <= calls <= 1.39 * n * 1.07
    assert calls <= 3 * n  # the amplification bound


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_fails_over(fake_upstream, http) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/openai/v1"
    d = build(http, [deployment(fake_upstream, "dead", "openai", order=1, api_base=base),
                     deployment(fake_upstream, "live", "gemini", order=2)],
              allowed_fails=2, cooldown_time=30)
    results, _ = await run_many(d, 100, 10)
    assert all(not isinstance(r, Exception) for r in results)
    refused = [a for r in results for a in r.attempts if a.deployment == "dead" and a.called]
    assert all(a.outcome == "ConnectionFailed" for a in refused)
    assert len(refused) <= 10 + 3  # the first wave, then the breaker is open


async def test_mid_stream_disconnect_is_an_error_not_a_truncation(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", order=1),
                     deployment(fake_upstream, "gemini", "gemini", order=2)])
    fake_upstream.script(Fault(disconnect_after=3, chunk_interval=0.02), provider="anthropic")
    stream = await d.open_stream(request(stream=True), "primary")
    seen = []
    with pytest.raises(ProviderError) as info:
        async for delta in stream:
            seen.append(delta)
    assert seen and isinstance(info.value, ConnectionFailed | UpstreamServerError)
    assert [a.deployment for a in info.value.attempts] == ["claude"]
    assert info.value.attempts[0].outcome == type(info.value).__name__
    assert fake_upstream.calls("gemini") == 0


async def test_disconnect_before_the_first_byte_fails_over(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", order=1),
                     deployment(fake_upstream, "gemini", "gemini", order=2)])
    fake_upstream.script(Fault(disconnect_after=0), provider="anthropic")
    stream = await d.open_stream(request(stream=True), "primary")
    text = "".join([x.text or "" async for x in stream])
    assert "gemini-2.5-flash" in text
    assert [a.deployment for a in stream.attempts] == ["claude", "gemini"]


async def test_mid_stream_disconnect_with_continuation(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", order=1),
                     deployment(fake_upstream, "gemini", "gemini", order=2)],
              stream_continuation=True)
    fake_upstream.script(Fault(disconnect_after=4, chunk_interval=0.02), provider="anthropic")
    stream = await d.open_stream(request(stream=True), "primary")
    text = "".join([x.text or "" async for x in stream])
    assert "gemini-2.5-flash" in text and text.startswith("[simulated claud[simulated gemini")
    assert [(a.deployment, a.outcome != "ok") for a in stream.attempts] == [
        ("claude", True), ("gemini", False)]
    continued = next(r for r in fake_upstream.received if r.provider == "gemini")
    assert "Continue" in str(continued.body)


async def test_malformed_chunk(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "a", "openai", order=1),
                     deployment(fake_upstream, "b", "gemini", order=2)])
    fake_upstream.script(Fault(malformed_at=2), provider="openai")
    stream = await d.open_stream(request(stream=True), "primary")
    with pytest.raises(ProviderError):
        async for _ in stream:
            pass
    assert stream.attempts[0].outcome != "ok"
    # Malformed before the first delta: a transparent failover.
    fake_upstream.script(Fault(malformed_at=0), provider="openai")
    stream = await d.open_stream(request(stream=True), "primary")
    assert "gemini" in "".join([x.text or "" async for x in stream])


async def test_slow_first_token_fails_over(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", order=1),
                     deployment(fake_upstream, "gemini", "gemini", order=2)],
              first_token_timeout=0.3)
    fake_upstream.script(Fault(first_token_delay=2.0), provider="anthropic")
    start = time.monotonic()
    stream = await d.open_stream(request(stream=True), "primary")
    text = "".join([x.text or "" async for x in stream])
    assert "gemini" in text
    assert [a.outcome for a in stream.attempts] == ["Timeout", "ok"]
    assert time.monotonic() - start < 1.5


async def test_context_window_fallback_without_calling_the_primary(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "claude", "anthropic", max_input_tokens=1000),
                     deployment(fake_upstream, "gemini-pro", "gemini", group="long-context",
                                max_input_tokens=1_000_000)],
              enable_pre_call_checks=True, context_window_fallbacks={"primary": ["long-context"]})
    result = await d.complete(request("word " * 4000), "primary")
    assert result.group == "long-context"
    assert fake_upstream.calls("anthropic") == 0 and fake_upstream.calls("gemini") == 1


async def test_context_window_error_from_the_provider_falls_back(fake_upstream, http) -> None:
    d = build(http, [deployment(fake_upstream, "claude", "anthropic"),
                     deployment(fake_upstream, "gemini-pro", "gemini", group="long-context")],
              context_window_fallbacks={"primary": ["long-context"]})
    fake_upstream.script(Fault(status=400, kind="context_window"), provider="anthropic")
    result = await d.complete(request(), "primary")
    assert result.group == "long-context"
    assert [a.outcome for a in result.attempts] == ["ContextWindowExceeded", "ok"]


async def test_every_deployment_down_gives_503_with_retry_after_in_time(fake_upstream, http
                                                                      ) -> None:
    fake_upstream.script(Fault(status=503, times=None))
    d = build(http, [deployment(fake_upstream, "claude", "anthropic"),
                     deployment(fake_upstream, "gemini", "gemini", group="backup")],
              # Each group falls back to the other, so each one's only deployment is
              # cooled (with nowhere else to go it would not be).
              fallbacks={"primary": ["backup"], "backup": ["primary"]}, allowed_fails=1,
              cooldown_time=20, timeout=2.0)
    results, durations = await run_many(d, 40, 8, deadline=10)
    assert all(isinstance(r, InterlockError) for r in results)
    assert max(durations) <= 2.0 + 0.5
    unavailable = [r for r in results if isinstance(r, NoDeploymentAvailable)]
    assert unavailable, [type(r).__name__ for r in results]
    for r in unavailable:
        assert r.status_code == 503 and r.retry_after is not None and r.retry_after > 0
        assert {"primary/claude", "backup/gemini"} <= set(r.tried)
    assert all(getattr(r, "status_code", 0) in (503, 502) for r in results)


async def test_every_deployment_hanging_ends_inside_the_deadline(fake_upstream, http) -> None:
    fake_upstream.script(Fault(hang=True, times=None))
    d = build(http, [deployment(fake_upstream, "claude", "anthropic"),
                     deployment(fake_upstream, "gemini", "gemini", group="backup")],
              fallbacks={"primary": ["backup"]}, timeout=0.8, num_retries=3)
    results, durations = await run_many(d, 10, 10, deadline=5)
    assert all(isinstance(r, InterlockError) for r in results)
    assert max(durations) <= 0.8 + 0.4


async def test_clients_tiny_timeouts_leave_a_slow_group_up_for_everyone(
        fake_upstream, http) -> None:
    """The security review's case, with the real adapters: 8 requests with
    timeout 0.01 s to two deployments 0.3 s slow (allowed_fails 2, cooldown 60 s)
    cooled both, and a normal request then got a 503. Now each fails alone with
    its own Timeout and cools nothing."""
    await _tiny_timeouts_then_a_normal_request(fake_upstream, http, None)


async def test_clients_tiny_timeouts_cool_no_replica_through_redis(
        fake_upstream, http, redis_backends) -> None:
    # Shared through Redis, the cooldown reached every replica.
    await _tiny_timeouts_then_a_normal_request(fake_upstream, http, redis_backends())


async def _tiny_timeouts_then_a_normal_request(fake: FakeUpstream, http: HttpClient,
                                               state: Any) -> None:
    fake.script(Fault(latency=0.3, times=None), provider="openai")
    deployments = [deployment(fake, "a", "openai"),
                   deployment(fake, "b", "openai", model="gpt-4o")]
    d = Dispatcher(Catalog.from_deployments(deployments), AdapterRegistry(http),
                   RouterSettings(allowed_fails=2, cooldown_time=60), state=state)
    for i in range(8):
        with pytest.raises(Timeout, match="The request's own timeout"):
            if i % 2:
                stream = await d.open_stream(chat(timeout=0.01, stream=True), "primary")
                async for _ in stream:
                    pass
            else:
                await d.complete(chat(timeout=0.01), "primary")
    # Cut in the middle of a stream, after its first chunk, by the caller's deadline:
    # said as the caller's, not as the deployment's "did not finish the stream".
    fake.reset()
    fake.script(Fault(chunk_interval=0.2, times=None), provider="openai")
    for _ in range(3):
        # Opened inside the check: on a busy machine the opening itself may outlast
        # 0.1 s, and that timeout is the caller's too.
        with pytest.raises(Timeout, match=r"The request's own timeout of 0\.1"):
            stream = await d.open_stream(chat(timeout=0.1, stream=True), "primary")
            async for _ in stream:
                pass
    assert {h.state for h in d.health()} == {"healthy"}
    assert sum(h.failures for h in d.health()) == 0
    fake.reset()
    result = await d.complete(chat(), "primary")
    assert result.response.content
