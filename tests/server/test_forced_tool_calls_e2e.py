"""A forced tool call end to end: the official `openai` SDK asks the gateway with
`tool_choice` "required" (or a named function), routed to Claude, Gemini and
OpenAI deployments; each fake provider answers with one call in its own wire
shape, and the client gets an OpenAI tool call whose arguments parse against
the tool's schema, whole and streamed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from tests.server.gateways import GROUPS, RunningGateway

from interlock.testing import FakeUpstream

PROVIDERS = ["anthropic", "gemini", "openai"]


class Booking(BaseModel):
    city: str
    nights: int
    breakfast: bool
    guests: list[str]


class Forecast(BaseModel):
    city: str
    days: int


TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "book_hotel", "description": "Books a hotel.",
                                      "parameters": Booking.model_json_schema()}},
    {"type": "function", "function": {"name": "get_forecast", "description": "The weather.",
                                      "parameters": Forecast.model_json_schema()}},
]
ASK = [{"role": "user", "content": "Book me two nights in Lisbon."}]


async def _call(gateway: RunningGateway, provider: str, choice: Any,
                stream: bool) -> tuple[list[tuple[str, str]], str | None]:
    """([(name, arguments)] of the answer's tool calls, finish_reason), streamed
    argument deltas joined as a client joins them."""
    client = gateway.openai()
    try:
        asked: dict[str, Any] = {"model": GROUPS[provider], "messages": ASK, "tools": TOOLS,
                                 "tool_choice": choice}
        if not stream:
            whole = await client.chat.completions.create(**asked)
            calls = whole.choices[0].message.tool_calls or []
            return ([(c.function.name, c.function.arguments) for c in calls],
                    whole.choices[0].finish_reason)
        slots: dict[int, list[str]] = {}
        finish = None
        async for chunk in await client.chat.completions.create(**asked, stream=True):
            if not chunk.choices:
                continue
            for delta in chunk.choices[0].delta.tool_calls or []:
                slot = slots.setdefault(delta.index, ["", ""])
                if delta.function is not None:
                    slot[0] += delta.function.name or ""
                    slot[1] += delta.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        return [(name, arguments) for name, arguments in slots.values()], finish
    finally:
        await client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_required_tool_choice_gets_a_call_whose_arguments_fit_the_schema(
        provider: str, stream: bool, fake_upstream: FakeUpstream,
        gateway: RunningGateway) -> None:
    calls, finish = await _call(gateway, provider, "required", stream)
    assert finish == "tool_calls"
    assert [name for name, _ in calls] == ["book_hotel"]
    # strict: a number or flag sent as a string would fail, as in the schema.
    booking = Booking.model_validate_json(calls[0][1], strict=True)
    assert booking.city and booking.guests
    assert fake_upstream.received[0].provider == provider


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("provider", ["gemini", "openai"])
async def test_a_named_function_gets_a_call_to_it(
        provider: str, stream: bool, gateway: RunningGateway) -> None:
    named = {"type": "function", "function": {"name": "get_forecast"}}
    calls, finish = await _call(gateway, provider, named, stream)
    assert (finish, [name for name, _ in calls]) == ("tool_calls", ["get_forecast"])
    Forecast.model_validate_json(calls[0][1], strict=True)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_streamed_call_has_no_text_as_the_whole_answer_has_none(
        provider: str, gateway: RunningGateway) -> None:
    """The SDK's stream helper builds the message from the deltas: a tool-call
    answer must not open with content "" (a content.delta event, and content
    "" where the whole answer has None)."""
    client = gateway.openai()
    try:
        async with client.chat.completions.stream(
                model=GROUPS[provider], messages=ASK, tools=TOOLS,
                tool_choice="required") as events:
            kinds = {event.type async for event in events}
            final = await events.get_final_completion()
    finally:
        await client.close()
    message = final.choices[0].message
    assert "content.delta" not in kinds
    assert message.content is None
    assert [c.function.name for c in message.tool_calls or []] == ["book_hotel"]
