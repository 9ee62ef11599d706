"""An upstream that reports an impossible token count (10**30) gets the client a
502 naming the deployment, never a 500, and its ledger row is kept: before,
the client got a 500 (orjson: "Integer exceeds 64-bit range") and the row was
dropped (SQLite: OverflowError)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.adapters.raw_upstream import raw_server
from tests.server.gateways import MASTER_KEY, RunningGateway, ledger_rows

ANSWER = json.dumps({
    "id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": "@", "completion_tokens": 1}}).replace(
        '"@"', "1000000000000000000000000000000").encode()


async def test_an_impossible_token_count_is_a_502_with_its_ledger_row(
        start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    async with raw_server(ANSWER, content_type="application/json") as base:
        gw = start_gateway({
            "model_list": [{"model_name": "g", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_key": "sk-test-not-real",
                "api_base": base + "/v1"}}],
            "router_settings": {"num_retries": 0},
            "general_settings": {"master_key": MASTER_KEY},
            "ledger": {"database": str(database)}})
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            answer = await client.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                json={"model": "g", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "UpstreamServerError" and "token count" in error["message"]
    gw.stop()  # shutdown flushes the ledger
    row = ledger_rows(database)[answer.headers["x-request-id"]]
    assert (row["status"], row["error_class"], row["provider"]) == (
        "error", "UpstreamServerError", "openai")
