"""The fake upstream's scripted disconnect cuts the stream without logging a
traceback: the cut is what the script asked for."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from interlock.testing import FakeUpstream, Fault


async def test_a_scripted_disconnect_cuts_the_stream_without_a_traceback(
        fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    fake_upstream.script(Fault(disconnect_after=1), provider="openai")
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    caplog.set_level(logging.INFO)
    url = fake_upstream.base_url("openai") + "/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    # The cut happened (the client saw it) and nothing about it was logged.
    assert [r for r in caplog.records if r.name.startswith("uvicorn")] == []
