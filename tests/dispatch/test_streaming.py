"""DispatchStream against the scripted adapter: failover before the first delta,
a visible failure after it, opt-in continuation, cancellation."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from tests.dispatch.fakes import dep, fail, make, request

from interlock.catalog import Catalog
from interlock.costs.budgets import BudgetGate
from interlock.costs.prices import PriceBook
from interlock.costs.settings import Budget
from interlock.dispatch.streaming import gathered
from interlock.errors import ConnectionFailed, Overloaded, UpstreamServerError
from interlock.tokens import estimated_usage
from interlock.types import StreamDelta, ToolCallDelta, Usage


async def _collect(stream) -> list[str]:
    return [d.text for d in [x async for x in stream] if d.text]


async def test_failure_before_first_delta_fails_over_transparently() -> None:
    h = make([dep("a", order=1), dep("b", order=2)])
    h.adapter.streams["a"] = (["x"], 0, Overloaded("down", status=503))
    h.adapter.streams["b"] = (["one ", "two"], None, None)
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    assert stream.deployment.name == "b"
    assert await _collect(stream) == ["one ", "two"]
    assert [(a.deployment, a.outcome) for a in stream.attempts] == [
        ("a", "Overloaded"), ("b", "ok")]
    assert stream.response().content == "one two"
    assert stream.response().usage == Usage(5, 2)


async def test_failure_after_first_delta_is_raised_and_recorded() -> None:
    h = make([dep("a", order=1), dep("b", order=2)])
    h.adapter.streams["a"] = (["one ", "two ", "three"], 2,
                              ConnectionFailed("reset", status=None))
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    seen: list[str] = []
    with pytest.raises(ConnectionFailed) as info:
        async for delta in stream:
            seen.append(delta.text or "")
    assert seen == ["one ", "two "]
    assert [(a.deployment, a.outcome) for a in info.value.attempts] == [
        ("a", "ConnectionFailed")]
    assert h.adapter.count("b") == 0  # never silently switched


async def test_stream_continuation_is_opt_in_and_continues_elsewhere() -> None:
    h = make([dep("a", order=1), dep("b", order=2)], stream_continuation=True)
    h.adapter.streams["a"] = (["one ", "two ", "three"], 2, UpstreamServerError("x"))
    h.adapter.streams["b"] = (["three"], None, None)
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    assert await _collect(stream) == ["one ", "two ", "three"]
    assert [(a.deployment, a.outcome) for a in stream.attempts] == [
        ("a", "UpstreamServerError"), ("b", "ok")]
    continued = h.adapter.calls[-1].request
    assert continued.messages[-2].role == "assistant"
    assert continued.messages[-2].text == "one two "
    assert stream.deployment.name == "b"


@pytest.mark.parametrize("end", ["client_leaves", "successor_breaks"])
async def test_a_continued_stream_s_budgets_count_the_first_attempt_s_text_once(
        end: str) -> None:
    # The first attempt's ticket is settled with what it streamed ("aaaabbbb"). The
    # successor's was settled with everything accumulated ("aaaabbbbcccc", against a
    # prompt that already carries "aaaabbbb"), so the budgets charged the first
    # attempt's output twice while the ledger row charges it once.
    priced = {"input_cost_per_token": Decimal(0), "output_cost_per_token": Decimal("0.001")}
    deployments = [dep("a", order=1, **priced), dep("b", order=2, **priced)]
    prices = PriceBook.build(Catalog.from_deployments(deployments), {})
    gate = BudgetGate([Budget(model_group="g", max_usd=Decimal(100), period="day")], prices)
    h = make(deployments, gates=[gate], stream_continuation=True)
    h.adapter.streams["a"] = (["aaaa", "bbbb", "zzzz"], 2, UpstreamServerError("x"))
    h.adapter.streams["b"] = (["cccc", "dddd"], 1 if end == "successor_breaks" else None,
                              ConnectionFailed("reset"))
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    seen: list[str] = []
    if end == "client_leaves":
        async for delta in stream:  # gone before the successor's usage came
            seen.append(delta.text or "")
            if delta.text == "cccc":
                break
        await stream.aclose()
    else:
        with pytest.raises(ConnectionFailed):
            async for delta in stream:
                seen.append(delta.text or "")
    assert seen == ["aaaa", "bbbb", "cccc"]
    response = stream.response()
    assert response.usage is None  # neither attempt's usage came
    # What the ledger row charges: the text once, priced as output.
    ledger = prices.cost(deployments[1], estimated_usage(request(stream=True), response))
    assert ledger == Decimal("0.003")  # three tokens of four characters
    [status] = gate.status()
    assert Decimal(status["spent_usd"]) == ledger
    assert Decimal(status["reserved_usd"]) == 0


async def test_no_continuation_after_streamed_tool_calls() -> None:
    h = make([dep("a", order=1), dep("b", order=2)], stream_continuation=True)

    async def tool_stream(request, deployment, timeouts):
        yield StreamDelta(tool_calls=[ToolCallDelta(0, id="c1", name="f", arguments='{"a"')])
        raise ConnectionFailed("reset")

    h.adapter._stream = tool_stream  # type: ignore[method-assign]
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    with pytest.raises(ConnectionFailed):
        async for _ in stream:
            pass
    assert h.adapter.count("b") == 0


async def test_aclose_cancels_the_upstream_and_settles() -> None:
    h = make([dep("a")])
    closed: list[bool] = []

    async def endless(request, deployment, timeouts):
        try:
            while True:
                yield StreamDelta(text="x")
        finally:
            closed.append(True)

    h.adapter._stream = endless  # type: ignore[method-assign]
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    it = stream.__aiter__()
    assert (await it.__anext__()).text == "x"
    assert (await it.__anext__()).text == "x"
    await stream.aclose()
    assert closed == [True]
    assert stream.attempts[0].outcome == "cancelled"
    assert h.dispatcher._stats["a"].in_flight == 0


async def test_stream_deadline_bounds_every_attempt() -> None:
    h = make([dep("a", order=1), dep("b", order=2)], timeout=100, stream_timeout=8,
             first_token_timeout=3, stream_idle_timeout=2, num_retries=1)
    h.adapter.script("a", fail(Overloaded, 503, latency=6))
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    await _collect(stream)
    first, second = h.adapter.calls
    assert first.timeouts.total == 8 and first.timeouts.first_token == 3
    assert first.timeouts.idle == 2
    assert second.timeouts.total == pytest.approx(2)
    assert second.timeouts.first_token == pytest.approx(2)


# -- batches -------------------------------------------------------------------------

async def test_single_delta_adapters_are_batched_by_what_is_ready() -> None:
    h = make([dep("a")])
    h.adapter.streams["a"] = (["one ", "two ", "three"], None, None)
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    got = [([d.text or d.finish_reason for d in b.deltas], b.final)
           async for b in stream.batches()]
    # The first alone, as soon as it came; the rest, read meanwhile, together with
    # the news that the stream ends right after them.
    assert got == [(["one "], False), (["two ", "three", "stop"], True)]
    assert stream.response().content == "one two three"


async def test_a_batch_before_a_break_is_final_unless_the_stream_may_continue() -> None:
    for continuation, final in ((False, True), (True, False)):
        h = make([dep("a", order=1), dep("b", order=2)], stream_continuation=continuation)
        h.adapter.streams["a"] = (["one ", "two ", "three"], 2, UpstreamServerError("x"))
        h.adapter.streams["b"] = (["three"], None, None)
        stream = await h.dispatcher.open_stream(request(stream=True), "g")
        it = stream.batches()
        assert (await it.__anext__()).deltas[0].text == "one "
        second = await it.__anext__()
        assert [d.text for d in second.deltas] == ["two "]
        # With continuation the break is followed by a new upstream call, not at once.
        assert second.final is final
        if continuation:
            assert [d.text async for b in it for d in b.deltas] == ["three", None]
        else:
            with pytest.raises(UpstreamServerError):
                await it.__anext__()


async def test_gathered_reads_ahead_only_what_is_ready() -> None:
    ready = asyncio.Event()

    async def deltas():
        yield StreamDelta(text="a")
        yield StreamDelta(text="b")
        await ready.wait()  # a network read
        yield StreamDelta(text="c")

    batches = gathered(deltas())
    assert [d.text for d in (await batches.__anext__()).deltas] == ["a"]
    second = await batches.__anext__()
    assert ([d.text for d in second.deltas], second.final) == (["b"], False)
    ready.set()
    third = await batches.__anext__()
    assert ([d.text for d in third.deltas], third.final) == (["c"], True)
    with pytest.raises(StopAsyncIteration):
        await batches.__anext__()


async def test_closing_gathered_stops_the_read_ahead_and_closes_the_adapter() -> None:
    closed: list[bool] = []
    never = asyncio.Event()

    async def deltas():
        try:
            yield StreamDelta(text="a")
            await never.wait()
            yield StreamDelta(text="b")
        finally:
            closed.append(True)

    batches = gathered(deltas())
    await batches.__anext__()
    await asyncio.sleep(0)  # the read-ahead task is now waiting inside the adapter
    await batches.aclose()  # type: ignore[attr-defined]
    assert closed == [True]
