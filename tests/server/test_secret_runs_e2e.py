"""Through the gateway: a provider's error that echoes part of the deployment's
key reaches the client, the log and the ledger with that part hidden
(`errors.redact`; the library's side is in tests/test_secret_runs.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.adapters.raw_upstream import raw_server
from tests.server.gateways import MASTER_KEY, RunningGateway, deployment, ledger_rows

from interlock.testing import FakeUpstream, Fault

KEY = "sk-proj-Vb8nM3qWx7Lc2Kd9Hf4Tj6Rp1Gs5Ya0Ze3Ui8Oo2"
INFIX = KEY[15:35]  # 20 characters from the middle


async def test_the_gateway_hides_an_echoed_infix_from_client_log_and_ledger(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "ledger.sqlite"
    gw = start_gateway({"model_list": [deployment(fake_upstream, "g", "openai", api_key=KEY)],
                        "router_settings": {"num_retries": 0},
                        "general_settings": {"master_key": MASTER_KEY},
                        "ledger": {"database": str(database)}})
    fake_upstream.script(Fault(status=401, message=f"Incorrect API key provided: {INFIX}"),
                         provider="openai")
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            answer = await client.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                json={"model": "g", "messages": [{"role": "user", "content": "hi"}]})
        gw.stop()  # shutdown flushes the ledger
    assert answer.status_code == 401, answer.text
    assert "Incorrect API key provided: [redacted]" in answer.json()["error"]["message"]
    assert INFIX not in answer.text
    # The deployment's failure is logged (a 401 needs a human); the key is not.
    assert any("check its API key" in r.getMessage() for r in caplog.records)
    assert INFIX not in caplog.text
    (row,) = ledger_rows(database).values()
    assert (row["status"], row["error_class"]) == ("error", "AuthenticationFailed")
    assert INFIX not in repr(row)


def _stream_breaking_with(message: str) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]}
    error = {"error": {"message": message, "type": "server_error"}}
    return b"".join(b"data: " + json.dumps(x).encode() + b"\n\n" for x in (chunk, error))


async def test_a_stream_broken_by_an_error_echoing_the_key_logs_it_hidden(
        start_gateway: Callable[..., RunningGateway], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # The gateway logs the error of a stream that broke after its first byte: the
    # log line carries the provider's text, so it is where an echoed key would show.
    database = tmp_path / "ledger.sqlite"
    async with raw_server(_stream_breaking_with(f"proxy: bad credential {INFIX}")) as base:
        gw = start_gateway({"model_list": [{"model_name": "g", "litellm_params": {
                                "model": "openai/gpt-4o-mini", "api_key": KEY,
                                "api_base": base + "/v1"}}],
                            "router_settings": {"num_retries": 0},
                            "general_settings": {"master_key": MASTER_KEY},
                            "ledger": {"database": str(database)}})
        with caplog.at_level(logging.WARNING, logger="interlock"):
            async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
                answer = await client.post(
                    "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                    json={"model": "g", "stream": True,
                          "messages": [{"role": "user", "content": "hi"}]})
            gw.stop()
    assert answer.status_code == 200 and "Hello" in answer.text
    assert "bad credential [redacted]" in answer.text and INFIX not in answer.text
    assert "broke after its first byte" in caplog.text
    assert "bad credential [redacted]" in caplog.text and INFIX not in caplog.text
    (row,) = ledger_rows(database).values()
    assert row["status"] == "error" and INFIX not in repr(row)
