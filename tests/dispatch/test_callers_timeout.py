"""A request's own `timeout` is the caller's, not the deployment's: when it is
what ran out, the request fails with the Timeout and the deployment's health,
breaker and statistics are left alone (a client could otherwise cool a whole
group down for everyone with a tiny timeout). A timeout set by the
deployment's or the router's own limits counts as it always did."""

from __future__ import annotations

import math

import pytest
from tests.dispatch.fakes import dep, fail, hang, make, ok, request

from interlock.dispatch.deadlines import MIN_REQUEST_TIMEOUT
from interlock.errors import InvalidRequest, Timeout, UpstreamServerError
from interlock.types import StreamDelta


async def test_a_caller_s_tiny_timeout_cools_nothing_and_is_not_retried() -> None:
    # The security review's case: two deployments 0.3 s slow, allowed_fails 2,
    # cooldown 60 s; 8 requests with timeout 0.01 s cooled both for a minute.
    h = make([dep("a"), dep("b")], allowed_fails=2, cooldown_time=60, num_retries=2)
    h.adapter.default = ok(latency=0.3)
    for _ in range(8):
        with pytest.raises(Timeout, match="The request's own timeout") as caught:
            await h.dispatcher.complete(request(timeout=0.01), "g")
        # One call, no retry, no failover: the deadline that ran out is the request's.
        assert [a.outcome for a in caught.value.attempts] == ["Timeout"]
    assert h.adapter.count() == 8
    for row in h.dispatcher.health():
        assert (row.state, row.failures, row.requests) == ("healthy", 0, 0)
    # Everyone else is served as before.
    result = await h.dispatcher.complete(request(), "g")
    assert result.response.content.startswith("hello")


async def test_a_deployment_s_own_timeout_still_counts_against_it() -> None:
    # The deployment's 0.1 s limit is shorter than the caller's 5 s: its Timeout
    # is the deployment's, cools it after allowed_fails and fails over.
    h = make([dep("slow", order=1, timeout=0.1), dep("fast", order=2)],
             allowed_fails=0, cooldown_time=60)
    h.adapter.script("slow", then=ok(latency=0.3))
    result = await h.dispatcher.complete(request(timeout=5.0), "g")
    assert result.deployment.name == "fast"
    assert [a.outcome for a in result.attempts] == ["Timeout", "ok"]
    slow = next(r for r in h.dispatcher.health() if r.deployment == "slow")
    assert (slow.state, slow.reason) == ("cooling", "Timeout")


async def test_the_router_s_deadline_still_counts_when_the_caller_gives_none() -> None:
    h = make([dep("a"), dep("b")], timeout=0.1, allowed_fails=0, cooldown_time=60,
             num_retries=0)
    h.adapter.default = hang()
    with pytest.raises(Timeout):
        await h.dispatcher.complete(request(), "g")
    assert sorted(r.state for r in h.dispatcher.health()) == ["cooling", "healthy"]


async def test_a_caller_s_timeout_equal_to_the_router_s_counts_as_the_router_s() -> None:
    # A gateway client's timeout is held to the router's: naming the same value
    # changes nothing about whose limit it was.
    h = make([dep("a"), dep("b")], timeout=0.1, allowed_fails=0, cooldown_time=60,
             num_retries=0)
    h.adapter.default = hang()
    with pytest.raises(Timeout):
        await h.dispatcher.complete(request(timeout=0.1), "g")
    assert sorted(r.state for r in h.dispatcher.health()) == ["cooling", "healthy"]


async def test_an_earlier_limit_of_the_deployment_counts_inside_a_caller_s_deadline() -> None:
    # The caller's deadline cut the attempt, but the deployment failed before it ran
    # out (here a scripted Timeout at 0.05 s of a 1 s deadline): that is the deployment's.
    h = make([dep("a"), dep("b")], allowed_fails=0, cooldown_time=60, num_retries=0)
    h.adapter.default = fail(Timeout, latency=0.05)
    with pytest.raises(Timeout, match="scripted"):
        await h.dispatcher.complete(request(timeout=1.0), "g")
    assert sorted(r.state for r in h.dispatcher.health()) == ["cooling", "healthy"]


async def test_a_probe_cut_by_its_caller_s_timeout_gives_its_lease_back() -> None:
    # A half-open deployment's probe taken by a request that gives up at once must
    # not hold the lease (probe_timeout) while others are refused "half-open".
    h = make([dep("a"), dep("b")], allowed_fails=0, cooldown_time=1, num_retries=0)
    h.adapter.script("a", fail(UpstreamServerError, 500))
    h.adapter.script("b", fail(UpstreamServerError, 500))
    for _ in range(2):
        with pytest.raises(UpstreamServerError):
            await h.dispatcher.complete(request(), "g")
    assert {r.state for r in h.dispatcher.health()} == {"cooling"}
    await h.clock.sleep(1.5)  # both half-open now
    h.adapter.default = ok(latency=0.3)
    with pytest.raises(Timeout):
        await h.dispatcher.complete(request(timeout=0.01), "g")
    assert {r.state for r in h.dispatcher.health()} == {"half_open"}
    assert not any(h.state.snapshot(n).probing for n in ("a", "b"))
    result = await h.dispatcher.complete(request(), "g")  # probes, and closes one
    assert [a.outcome for a in result.attempts] == ["ok"]


async def test_a_stream_cut_by_its_caller_s_timeout_cools_nothing() -> None:
    h = make([dep("a"), dep("b")], allowed_fails=0, cooldown_time=60)
    h.adapter.default = ok(latency=0.3)
    for _ in range(3):
        with pytest.raises(Timeout, match="The request's own timeout"):
            await h.dispatcher.open_stream(request(timeout=0.01, stream=True), "g")
    assert {r.state for r in h.dispatcher.health()} == {"healthy"}


@pytest.mark.parametrize("continuation", [False, True])
async def test_a_stream_cut_mid_way_by_its_caller_s_timeout_says_so_and_cools_nothing(
        continuation: bool) -> None:
    # The stream had begun when the request's own 1 s ran out. The client was told
    # the deployment "did not finish the stream" and to raise stream_timeout: advice
    # about a limit that was not the one that ran out.
    h = make([dep("a", order=1), dep("b", order=2)], allowed_fails=0, cooldown_time=60,
             stream_continuation=continuation)

    async def stalls(request, deployment, timeouts):
        yield StreamDelta(text="one ")
        await h.clock.sleep(timeouts.total)  # as an adapter gives up at its total
        raise Timeout(f"{deployment.name} did not finish the stream in "
                      f"{timeouts.total}s; raise `stream_timeout`",
                      provider=deployment.provider, deployment=deployment.name)

    h.adapter._stream = stalls  # type: ignore[method-assign]
    stream = await h.dispatcher.open_stream(request(timeout=1.0, stream=True), "g")
    seen: list[str | None] = []
    with pytest.raises(Timeout, match="The request's own timeout of 1") as caught:
        async for delta in stream:
            seen.append(delta.text)
    assert seen == ["one "]
    assert "stream_timeout" not in caught.value.message
    assert caught.value.deployment == "a"
    assert [(a.deployment, a.outcome) for a in caught.value.attempts] == [("a", "Timeout")]
    assert h.adapter.count() == 1  # nothing is left of the deadline to continue in
    for row in h.dispatcher.health():
        assert (row.state, row.failures, row.in_flight) == ("healthy", 0, 0)


@pytest.mark.parametrize("first_token_timeout", [None, 0.5])
async def test_a_hanging_deployment_is_caught_only_by_its_own_limits(
        first_token_timeout: float | None) -> None:
    # The blind spot docs/reliability.md names: when every client sends a `timeout`
    # below the deployment's own limits, a deployment that never answers fails each
    # request on the caller's deadline and is never counted. A limit of its own
    # shorter than the clients' (here first_token_timeout) still catches it, and the
    # request fails over inside its deadline.
    h = make([dep("a", order=1), dep("b", order=2)], allowed_fails=0, cooldown_time=60,
             first_token_timeout=first_token_timeout)
    answers = h.adapter._stream

    def stream(request, deployment, timeouts):
        return hangs(deployment, timeouts) if deployment.name == "a" else answers(
            request, deployment, timeouts)

    async def hangs(deployment, timeouts):
        await h.clock.sleep(timeouts.first_token)
        raise Timeout("sent no first token", provider="fake", deployment=deployment.name)
        yield  # an async generator, as an adapter's stream is

    h.adapter._stream = stream  # type: ignore[method-assign]
    if first_token_timeout is None:
        for _ in range(3):
            with pytest.raises(Timeout, match="The request's own timeout"):
                await h.dispatcher.open_stream(request(timeout=1.0, stream=True), "g")
        a = next(r for r in h.dispatcher.health() if r.deployment == "a")
        assert (a.state, a.failures) == ("healthy", 0)
        assert h.adapter.count("b") == 0
    else:
        stream_ = await h.dispatcher.open_stream(request(timeout=1.0, stream=True), "g")
        assert stream_.deployment.name == "b"
        a = next(r for r in h.dispatcher.health() if r.deployment == "a")
        assert (a.state, a.reason) == ("cooling", "Timeout")


@pytest.mark.parametrize("timeout", [0.0, -1.0, 1e-300, MIN_REQUEST_TIMEOUT / 2, math.nan])
async def test_a_timeout_too_short_to_call_anything_is_a_clear_invalid_request(
        timeout: float) -> None:
    # 1e-300 gave a 503 "no deployments configured": the deadline had passed
    # before the first deployment was looked at.
    h = make([dep("a")])
    with pytest.raises(InvalidRequest, match="'timeout' must be at least") as caught:
        await h.dispatcher.complete(request(timeout=timeout), "g")
    assert caught.value.param == "timeout"
    assert h.adapter.count() == 0
