"""Structured outputs end to end: the official openai SDK's `parse` (and its
streaming twin) through the gateway to each fake provider, which answers JSON
of the schema, gives a parsed object."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from tests.server.gateways import GROUPS, RunningGateway

from interlock.testing import FakeUpstream

PROVIDERS = ["anthropic", "gemini", "openai"]


class Capital(BaseModel):
    city: str
    population: int
    landmarks: list[str]
    coastal: bool | None


ASK = [{"role": "user", "content": "The capital of Portugal, as JSON."}]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parse_gives_a_parsed_object(provider: str, fake_upstream: FakeUpstream,
                                           gateway: RunningGateway) -> None:
    client = gateway.openai()
    completion = await client.chat.completions.parse(
        model=GROUPS[provider], messages=ASK, response_format=Capital)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Capital)
    assert message.parsed.city == "simulated city"
    assert (message.refusal, completion.choices[0].finish_reason) == (None, "stop")
    # The schema reached the provider, each in its own field.
    sent = fake_upstream.received[-1]
    assert (sent.provider, "Capital") == (provider, _schema_title(provider, sent.body))
    await client.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_parse_gives_a_parsed_object(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    client = gateway.openai()
    async with client.chat.completions.stream(
            model=GROUPS[provider], messages=ASK, response_format=Capital) as stream:
        pieces = [e.delta async for e in stream if e.type == "content.delta"]
        completion = await stream.get_final_completion()
    assert len(pieces) > 1, "the JSON should come over several chunks"
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Capital)
    assert json.loads("".join(pieces)) == parsed.model_dump()
    assert fake_upstream.received[-1].provider == provider
    await client.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_json_mode_answers_a_json_object(provider: str, fake_upstream: FakeUpstream,
                                               gateway: RunningGateway) -> None:
    client = gateway.openai()
    completion = await client.chat.completions.create(
        model=GROUPS[provider], messages=ASK, response_format={"type": "json_object"})
    content = json.loads(completion.choices[0].message.content or "")
    assert content["text"].startswith("[simulated ")
    await client.close()


def _schema_title(provider: str, body: dict[str, Any]) -> Any:
    """The title of the schema as each provider's request carries it."""
    if provider == "anthropic":
        return body["output_config"]["format"]["schema"]["title"]
    if provider == "gemini":
        return body["generationConfig"]["responseJsonSchema"]["title"]
    return body["response_format"]["json_schema"]["schema"]["title"]
