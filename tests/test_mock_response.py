"""`mock_response`, as LiteLLM users write it: an answer made up locally, no
provider called, nothing billed; in the library and in a deployment's
`litellm_params` (the gateway's request body: tests/server/test_chat_e2e.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from interlock import Router
from interlock.errors import InvalidRequest, NoDeploymentAvailable
from interlock.testing import FakeUpstream

MESSAGES = [{"role": "user", "content": "Is this call billed?"}]
MOCKED = "No: this answer was made up locally."


def _model_list(**params: Any) -> list[dict[str, Any]]:
    return [{"model_name": "chat", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY", **params}}]


def _ledger_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT status, deployment, cost_nanousd, input_tokens, "
                          "output_tokens, stream FROM interlock_requests ORDER BY id").fetchall()


async def test_a_mocked_call_answers_locally_and_costs_nothing(
        provider_env: FakeUpstream, tmp_path: Path) -> None:
    ledger = tmp_path / "spend.sqlite"
    # Priced, so that a cost of zero says "not billed", not "price unknown".
    async with Router(model_list=_model_list(input_cost_per_token=1e-6,
                                             output_cost_per_token=2e-6),
                      ledger=str(ledger)) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          mock_response=MOCKED)
        stream = await router.acompletion(model="chat", messages=MESSAGES, stream=True,
                                          mock_response=MOCKED,
                                          stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        real = await router.acompletion(model="chat", messages=MESSAGES)
    assert answer.choices[0].message.content == MOCKED
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    assert answer.interlock["deployment"] == "chat/openai/gpt-4o-mini"
    assert float(answer.interlock["cost_usd"]) == 0.0
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == MOCKED and sum(1 for p in pieces if p) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    # Only the call without mock_response reached the provider.
    assert len(provider_env.received) == 1
    assert real.choices[0].message.content.startswith("[simulated gpt-4o-mini]")
    rows = _ledger_rows(ledger)
    assert [(r[0], r[1], r[2], r[5]) for r in rows[:2]] == [
        ("ok", "chat/openai/gpt-4o-mini", 0, 0), ("ok", "chat/openai/gpt-4o-mini", 0, 1)]
    assert rows[0][3] > 0 and rows[0][4] > 0  # the estimate is recorded as usage
    assert rows[2][2] > 0  # the real call is billed


def test_a_deployment_mocked_in_its_params_needs_no_key(
        provider_env: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    # LiteLLM configs that test a proxy put mock_response in litellm_params,
    # often beside a key variable that the test machine does not set.
    monkeypatch.delenv("OPENAI_API_KEY")
    router = Router(model_list=_model_list(mock_response=MOCKED))
    try:
        answer = router.completion(model="chat", messages=MESSAGES)
        assert answer.choices[0].message.content == MOCKED
        # The request's own mock_response wins over the deployment's.
        own = router.completion(model="chat", messages=MESSAGES, mock_response="mine")
        assert own.choices[0].message.content == "mine"
    finally:
        router.close()
    assert provider_env.received == []


async def test_a_call_with_its_own_mock_response_needs_no_key(
        provider_env: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    # LiteLLM answers `mock_response` without a key, and unit tests are written
    # on machines that set none: the keyless deployment was skipped as
    # unavailable and the call failed with NoDeploymentAvailable.
    monkeypatch.delenv("OPENAI_API_KEY")
    async with Router(model_list=_model_list()) as router:
        answer = await router.acompletion(model="chat", messages=MESSAGES,
                                          mock_response=MOCKED)
        stream = await router.acompletion(model="chat", messages=MESSAGES, stream=True,
                                          mock_response=MOCKED)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        # Without a mock the deployment is still unavailable, and says why.
        with pytest.raises(NoDeploymentAvailable, match="OPENAI_API_KEY"):
            await router.acompletion(model="chat", messages=MESSAGES)
    assert answer.choices[0].message.content == MOCKED
    assert answer.interlock["deployment"] == "chat/openai/gpt-4o-mini"
    assert "".join(pieces) == MOCKED
    assert provider_env.received == []


def test_a_mock_response_that_is_not_text_is_refused_before_any_call(
        provider_env: FakeUpstream) -> None:
    # LiteLLM also takes an exception here; silently dropping it would have
    # called the real provider from a test meant to spend nothing.
    router = Router(model_list=_model_list())
    try:
        with pytest.raises(InvalidRequest, match=r"mock_response.*string.*fake upstream"):
            router.completion(model="chat", messages=MESSAGES,
                              mock_response=RuntimeError("rate limited"))
    finally:
        router.close()
    assert provider_env.received == []
    from interlock.config import load_config
    from interlock.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model_list\[0\].*mock_response"):
        load_config({"model_list": _model_list(mock_response=["not", "text"])})
