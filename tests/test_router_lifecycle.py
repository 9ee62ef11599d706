"""The library Router's life: dropped without a close inside a running loop,
streams dropped unfinished, and use after close.

The close of something dropped inside a running loop is a task on that loop;
the tests wait for those tasks (`client._closing`) rather than for time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from interlock import client
from interlock.testing import FakeUpstream
from interlock.testing.script import Reply

MESSAGES = [{"role": "user", "content": "hi"}]


def _one_group(**params: Any) -> list[dict[str, Any]]:
    return [{"model_name": "g", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-20250514", **params}}]


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT status, stream FROM interlock_requests ORDER BY id"
                          ).fetchall()


async def _closes_done() -> None:
    """Wait for the close tasks of what was dropped on this loop."""
    while client._closing:
        await asyncio.wait(set(client._closing))


async def test_a_router_dropped_inside_a_running_loop_closes_without_waiting_on_it(
        provider_env: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The finalizer runs on this loop's thread: it used to wait on this very
    # loop for 5 s, log "closing the router failed (TimeoutError)" and leak the pool.
    from interlock import Router

    ledger = tmp_path / "spend.sqlite"
    router = Router(model_list=_one_group(), ledger=str(ledger))
    await router.acompletion(model="g", messages=MESSAGES)
    session = router.gateway.http._session
    assert session is not None and not session.closed
    with caplog.at_level(logging.WARNING, logger="interlock"):
        del router
        gc.collect()
        await _closes_done()
    assert session.closed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _rows(ledger) == [("ok", 0)]


_DROPPED_IN_MAIN = """
import asyncio, sys
from interlock import Router
async def main():
    # The usual script: a Router made, used and dropped inside main().
    router = Router(model_list=[{"model_name": "g", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-test"}}], ledger=sys.argv[1])
    for _ in range(int(sys.argv[2])):
        answer = await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
        print(answer.choices[0].message.content)
asyncio.run(main())
"""


@pytest.mark.parametrize("calls", [1, 3])
def test_a_router_dropped_at_the_end_of_main_ends_quietly_with_its_rows(
        fake_upstream: FakeUpstream, tmp_path: Path, calls: int) -> None:
    ledger = tmp_path / "spend.sqlite"
    env = {**os.environ, **fake_upstream.environ()}
    done = subprocess.run([sys.executable, "-c", _DROPPED_IN_MAIN, str(ledger), str(calls)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("[simulated") == calls
    assert done.stderr == ""  # no "Unclosed client session", no failed close
    assert len(_rows(ledger)) == calls


_SYNC_STREAM_LEFT_IN_MAIN = """
import asyncio, sys
from interlock import Router
router = Router(model_list=[{"model_name": "g", "litellm_params": {
    "model": "openai/gpt-4o-mini", "api_key": "sk-test"}}], ledger=sys.argv[1])
messages = [{"role": "user", "content": "hi"}]
async def main():
    if sys.argv[2] == "after-an-async-call":
        await router.acompletion(model="g", messages=messages)
    # Ported code that calls the sync API inside a coroutine, and leaves its
    # stream after the first chunk.
    for chunk in router.completion(model="g", messages=messages, stream=True):
        break
asyncio.run(main())
"""


@pytest.mark.parametrize("before", ["alone", "after-an-async-call"])
def test_a_sync_stream_left_inside_a_running_loop_ends_quietly_with_its_row(
        fake_upstream: FakeUpstream, tmp_path: Path, before: str) -> None:
    # In a child process: the fake upstream (in this one) logs its own writes to
    # the connection the stream's close cut, which are no noise of the client's.
    ledger = tmp_path / "spend.sqlite"
    env = {**os.environ, **fake_upstream.environ()}
    done = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning", "-c", _SYNC_STREAM_LEFT_IN_MAIN,
         str(ledger), before], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Unclosed client session", no ResourceWarning
    # The stream's row, as one its client left (after the async call's, if any).
    assert _rows(ledger)[-1] == ("error", 1)
    assert len(_rows(ledger)) == (2 if before == "after-an-async-call" else 1)


@pytest.mark.parametrize("chunks_read", [0, 1])
async def test_an_async_stream_dropped_unfinished_gives_its_slot_back(
        provider_env: FakeUpstream, tmp_path: Path, chunks_read: int) -> None:
    # Dropped before its end without aclose (an exception between the call and
    # the loop, a `break` out of a stream kept nowhere): its slot used to stay
    # taken for good, so a deployment with max_parallel_requests=1 refused all.
    from interlock import Router

    provider_env.reply(Reply(text="word " * 100, chunk_chars=5))
    ledger = tmp_path / "spend.sqlite"
    async with Router(model_list=_one_group(max_parallel_requests=1), ledger=str(ledger),
                      wait_for_recovery=False) as router:
        stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        for _ in range(chunks_read):
            await stream.__anext__()
        assert [h.in_flight for h in router.health()] == [1]
        del stream
        gc.collect()
        await _closes_done()
        assert [h.in_flight for h in router.health()] == [0]
        answer = await router.acompletion(model="g", messages=MESSAGES)
        assert answer.interlock["provider"] == "anthropic"
    # The dropped stream's row, as one its client left; then the next call's.
    assert _rows(ledger) == [("error", 1), ("ok", 0)]


async def test_an_async_stream_read_to_its_end_or_closed_schedules_no_close(
        provider_env: FakeUpstream) -> None:
    from interlock import Router

    async with Router(model_list=_one_group()) as router:
        whole = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        assert [chunk async for chunk in whole]
        closed = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        await closed.aclose()
        del whole, closed
        gc.collect()
        assert not client._closing
        assert [h.in_flight for h in router.health()] == [0]


async def test_an_async_router_refuses_calls_after_its_close(
        provider_env: FakeUpstream) -> None:
    from interlock import Router, RouterClosed

    async with Router(model_list=_one_group()) as router:
        await router.acompletion(model="g", messages=MESSAGES)
    # It used to reopen its pool, which then leaked.
    with pytest.raises(RouterClosed, match="was closed"):
        await router.acompletion(model="g", messages=MESSAGES)
    with pytest.raises(RouterClosed):
        await router.acompletion(model="g", messages=MESSAGES, stream=True)
    with pytest.raises(RouterClosed):
        await router.aembedding(model="g", input="hi")
    with pytest.raises(RouterClosed):
        await router.adecide(model="g", messages=MESSAGES)
    with pytest.raises(RouterClosed):
        async with router:
            pass
    assert router.gateway.http._session is None
    await router.aclose()  # a second close does nothing


def test_a_sync_router_refuses_calls_after_its_close(provider_env: FakeUpstream) -> None:
    from interlock import Router, RouterClosed

    router = Router(model_list=_one_group())
    router.completion(model="g", messages=MESSAGES)
    router.close()
    with pytest.raises(RouterClosed, match="was closed"):
        router.completion(model="g", messages=MESSAGES)
    with pytest.raises(RouterClosed):
        router.decide(model="g", messages=MESSAGES)
    # No loop thread was started again for the refused calls.
    assert not router._sync.started
    router.close()  # a second close does nothing
