"""POST /v1/embeddings end to end, with the official openai SDK as the client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.server.gateways import (
    MASTER_KEY,
    RunningGateway,
    deployment,
    ledger_rows,
    three_provider_config,
)

from interlock.testing import FakeUpstream
from interlock.testing.openai_wire import embedding_for
from interlock.testing.script import Fault


def _config(fake: FakeUpstream, **ledger: Any) -> dict[str, Any]:
    config = three_provider_config(fake)
    config["model_list"] += [deployment(fake, "embed", "openai", "text-embedding-3-small"),
                             deployment(fake, "embed-gemini", "gemini", "gemini-embedding-001")]
    if ledger:
        config["ledger"] = ledger
    return config


async def test_the_sdk_default_base64_and_float_both_decode_to_the_vectors(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(_config(fake_upstream))
    client = gw.openai()
    try:
        # The SDK asks for base64 unless told otherwise, and decodes it.
        raw = await client.embeddings.with_raw_response.create(
            model="embed", input=["alpha", "beta"])
        floats = await client.embeddings.create(model="embed", input="alpha",
                                                encoding_format="float", dimensions=8)
    finally:
        await client.close()
    resp = raw.parse()
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[1].embedding == pytest.approx(embedding_for("beta"), abs=1e-6)
    assert resp.model == "text-embedding-3-small"
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == 2 + 1
    assert raw.headers["x-interlock-model-group"] == "embed"
    assert raw.headers["x-interlock-provider"] == "openai"
    assert raw.headers["x-interlock-attempts"] == "1"
    assert raw.headers["x-request-id"].startswith("embd-")
    assert floats.data[0].embedding == pytest.approx(embedding_for("alpha")[:8])
    sent = fake_upstream.received[-1]
    assert sent.body["encoding_format"] == "float" and sent.body["dimensions"] == 8


async def test_a_gemini_group_answers_in_the_openai_shape(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(_config(fake_upstream))
    client = gw.openai()
    try:
        resp = await client.embeddings.create(model="embed-gemini", input=["alpha", "beta"],
                                              dimensions=8)
    finally:
        await client.close()
    sent = fake_upstream.received[-1]
    assert sent.path.endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert [r["outputDimensionality"] for r in sent.body["requests"]] == [8, 8]
    assert resp.model == "gemini-embedding-001"
    assert resp.data[0].embedding == pytest.approx(embedding_for("alpha")[:8], abs=1e-6)
    # Gemini reports no tokens: the estimate, as the ledger records it.
    assert resp.usage.prompt_tokens == 2 + 1


async def test_bad_requests_get_openai_errors_and_call_no_one(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(_config(fake_upstream))
    client = gw.openai()
    try:
        with pytest.raises(openai.BadRequestError, match="token ids is not supported"):
            await client.embeddings.create(model="embed", input=[[1, 2, 3]])
        with pytest.raises(openai.NotFoundError, match="embed"):
            await client.embeddings.create(model="no-such-group", input="x")
        with pytest.raises(openai.BadRequestError, match="anthropic provider has no embeddings"):
            await client.embeddings.create(model="high-quality", input="x")
        with pytest.raises(openai.AuthenticationError):
            await gw.openai(api_key="sk-wrong").embeddings.create(model="embed", input="x")
    finally:
        await client.close()
    assert fake_upstream.calls() == 0
    async with httpx.AsyncClient(base_url=gw.base_url) as http:
        auth = {"authorization": f"Bearer {MASTER_KEY}"}
        wrong_method = await http.get("/embeddings", headers=auth)
        not_json = await http.post("/embeddings", headers=auth, content=b"{nope")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"


async def test_each_embeddings_request_leaves_one_ledger_row(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    gw = start_gateway(_config(fake_upstream, database=str(database), flush_interval=0.05))
    client = gw.openai()
    try:
        ok = await client.embeddings.with_raw_response.create(model="embed",
                                                              input=["alpha", "beta"])
        gemini = await client.embeddings.with_raw_response.create(model="embed-gemini",
                                                                  input=["alpha", "beta"])
        fake_upstream.script(Fault(status=429, retry_after=5), provider="openai")
        with pytest.raises(openai.RateLimitError) as limited:
            await client.embeddings.create(model="embed", input="alpha")
    finally:
        await client.close()
    gw.stop()  # shutdown flushes the ledger
    rows = ledger_rows(database)
    assert len(rows) == 3
    row = rows[ok.headers["x-request-id"]]
    assert (row["status"], row["provider"], row["routed_group"], row["model"]) == (
        "ok", "openai", "embed", "text-embedding-3-small")
    assert (row["input_tokens"], row["output_tokens"], row["stream"]) == (3, 0, 0)
    assert row["usage_estimated"] == 0  # OpenAI's own count
    # Gemini sends no token count for embeddings: the row's tokens are
    # Interlock's estimate, and it says so.
    row = rows[gemini.headers["x-request-id"]]
    assert (row["provider"], row["input_tokens"], row["usage_estimated"]) == ("gemini", 3, 1)
    row = rows[limited.value.response.headers["x-request-id"]]
    assert (row["status"], row["error_class"]) == ("error", "RateLimited")

