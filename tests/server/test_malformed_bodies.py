"""Random malformed bodies against the running gateway: every one is answered,
with a 4xx in OpenAI's error shape or a complete answer, never a 500 or a
dropped connection. A fixed seed, so a failure replays; the bugs this found
have their own tests in test_openai_request.py and test_errors_auth.py."""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.gateways import (
    MASTER_KEY,
    RunningGateway,
    deployment,
    ledger_rows,
    three_provider_config,
)

from interlock.testing import FakeUpstream

BODIES = 300
SEED = 20261126
# Values of every JSON type, empty and odd, and pieces of valid requests in the wrong place.
ODD: list[Any] = [
    None, True, False, 0, -1, 1.5, 1e30, "", "x", "user", "\x00", "a" * 3000, [], [1], {},
    {"a": 1}, [{"type": "text", "text": "hi"}], [{"type": "weird"}],
    [{"type": "image_url", "image_url": "nope"}], {"type": "json_schema"},
    [{"type": "function", "function": {}}], [{"role": "tool", "content": "x"}],
]
VALID: dict[str, Any] = {
    "model": "budget",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ],
    "tools": [{"type": "function", "function": {
        "name": "f", "description": "d",
        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}],
    "tool_choice": "auto", "stop": ["x"], "metadata": {"tags": ["a"]},
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": "object"}}},
    "stream_options": {"include_usage": True},
}


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, inner in items:
        yield from _places(inner, (*path, key))


def _malformed(rng: random.Random) -> tuple[str, dict[str, Any]]:
    if rng.random() < 0.2:
        path, body = "/embeddings", {"model": "embed", "input": ["a", "b"], "dimensions": 8}
    else:
        path, body = "/chat/completions", copy.deepcopy(VALID)
        body["model"] = rng.choice(["budget", "high-quality", "cost-optimized"])
        body["stream"] = rng.random() < 0.5
    for _ in range(rng.randint(1, 3)):
        where = rng.choice([p for p in _places(body) if p])
        parent = body
        for key in where[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.2:
            parent.pop(where[-1], None)
        else:
            parent[where[-1]] = copy.deepcopy(rng.choice(ODD))
    return path, body


async def test_no_malformed_body_gets_a_500_or_a_dropped_connection(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream)
    config["model_list"].append(deployment(fake_upstream, "embed", "openai",
                                           "text-embedding-3-small"))
    gw = start_gateway(config)
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=20,
                                 headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        for _ in range(BODIES):
            path, body = _malformed(rng)
            resp = await http.post(path, content=json.dumps(body).encode())
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            where = f"{path} {json.dumps(body)[:300]}"
            assert resp.status_code < 500, f"{where} -> {resp.text[:300]}"
            if resp.status_code >= 400:
                assert set(resp.json()["error"]) == {"message", "type", "param", "code"}, where
            elif body.get("stream") is True:
                assert resp.text.rstrip().endswith("data: [DONE]"), where
    # The bodies reach both outcomes, so neither branch above is idle.
    assert statuses.get(200, 0) > 20 and sum(n for s, n in statuses.items() if s >= 400) > 100


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"a": value}}
    return value


@pytest.mark.parametrize("group", ["budget", "high-quality", "cost-optimized"])
@pytest.mark.parametrize("stream", [False, True])
def test_json_nested_deeper_than_can_be_sent_on_is_a_400_with_a_ledger_row(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture, group: str, stream: bool) -> None:
    """The body parser reads 1024 levels, but upstream bodies are written with at
    most 254: deeper was a 500 and a traceback in the log on every request."""
    database = tmp_path / "ledger.sqlite"
    config = three_provider_config(fake_upstream)
    config["ledger"] = {"database": str(database), "writer": "thread"}
    gw = start_gateway(config)
    deep = _nested(200)  # two levels a step: 400 deep, inside the rest of the body
    # Gemini's tool schemas are cut at 24 levels of properties, its `default` is not.
    parameters = {"type": "object", "properties": {"a": {"type": "string"}}, "default": deep}
    bodies = [
        {"tools": [{"type": "function", "function": {"name": "f",
                                                     "parameters": parameters}}]},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                                                                    "schema": deep}}},
        # Gemini writes an enum of numbers into the description.
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer", "enum": [deep]}}}}}]},
    ]
    answers = []
    with httpx.Client(timeout=10) as http:
        for extra in bodies:
            answers.append(http.post(
                gw.base_url + "/chat/completions",
                headers={"authorization": f"Bearer {MASTER_KEY}"},
                json={"model": group, "messages": [{"role": "user", "content": "hi"}],
                      "stream": stream, **extra}))
    gw.stop()
    for answer in answers:
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "json_too_deep"
        assert "254 levels" in error["message"]
        row = ledger_rows(database)[answer.headers["x-request-id"]]
        assert (row["status"], row["error_class"]) == ("error", "InvalidRequest")
    assert fake_upstream.calls() == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
