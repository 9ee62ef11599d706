"""The Anthropic request translation on its own (`build_body`, no network):
the system prompt, and JSON mode with thinking, each decided once."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.adapters.anthropic import build_body
from interlock.adapters.anthropic import request as anthropic_request
from interlock.catalog import Deployment
from interlock.errors import InvalidRequest, UnsupportedParameter
from interlock.types import ChatRequest, Message, ResponseFormat, TextPart

DEP = Deployment(name="claude", group="g", provider="anthropic", model="claude-sonnet-4-5")
MARK = {"type": "ephemeral"}


def system(*texts: str, marks: tuple[dict[str, Any] | None, ...] = ()) -> Message:
    marks = marks or (None,) * len(texts)
    return Message("system", [TextPart(t, cache_control=m) for t, m in zip(texts, marks,
                                                                          strict=True)])


def body_for(*messages: Message, **fields: Any) -> dict[str, Any]:
    return build_body(ChatRequest(model="g", messages=list(messages), **fields), DEP,
                      stream=False)


USER = Message("user", [TextPart("Hi")])

# (messages, the body's "system", its "messages")
SYSTEM_PROMPTS = [
    # Plain text: one string, joined as ChatRequest.system_text joins it (an
    # empty system message keeps its place between the others).
    ([system("A"), system(""), system("B"), USER], "A\n\n\n\nB", None),
    # Only empty system messages: no system prompt at all.
    ([system(""), system(""), USER], None, None),
    # A marked part makes blocks, one per text part, each with its own marker.
    ([system("A"), system("B", "C", marks=(MARK, None)), USER],
     [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": MARK},
      {"type": "text", "text": "C"}], None),
    # A marker on an empty part marks nothing that is sent: a string again.
    ([system("", "B", marks=(MARK, None)), USER], "B", None),
    # Only system messages: they go as the user's turn, as blocks.
    ([system("A"), system("B")], None,
     [{"role": "user", "content": [{"type": "text", "text": "A"},
                                   {"type": "text", "text": "B"}]}]),
    ([system("")], None, []),
]


@pytest.mark.parametrize(("messages", "want_system", "want_messages"), SYSTEM_PROMPTS)
def test_the_system_prompt_is_a_string_unless_a_sent_part_is_marked(
        messages: list[Message], want_system: Any, want_messages: Any) -> None:
    body = body_for(*messages)
    assert body.get("system") == want_system
    if want_messages is not None:
        assert body["messages"] == want_messages


def test_a_plain_system_prompt_builds_no_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The blocks were built for every request and thrown away for the usual one,
    # whose prompt goes as a string.
    def unwanted(messages: list[Message]) -> list[dict[str, Any]]:
        raise AssertionError("system blocks built for a prompt sent as a string")

    monkeypatch.setattr(anthropic_request, "system_blocks", unwanted)
    assert body_for(system("Be terse."), USER)["system"] == "Be terse."


def test_json_mode_with_thinking_is_refused_for_that_before_the_budget_is_checked() -> None:
    # Both are wrong here, but the way out of the budget error (a larger
    # max_tokens) led only to the JSON-mode one, whose way out (no thinking)
    # needs no larger max_tokens: the decision is made once, before either.
    asked = {"response_format": ResponseFormat("json_object"), "max_tokens": 2_000,
             "extra": {"reasoning_effort": "medium"}}
    with pytest.raises(UnsupportedParameter) as info:
        body_for(USER, **asked)
    assert info.value.param == "response_format" and "thinking" in info.value.message
    # drop_params drops JSON mode; the budget that cannot fit is still refused.
    with pytest.raises(InvalidRequest) as budget:
        body_for(USER, drop_params=True, **asked)
    assert budget.value.param == "max_tokens"


@pytest.mark.parametrize("thinking", [
    {"reasoning_effort": "low"},
    {"thinking": {"type": "enabled", "budget_tokens": 2_048}},
])
def test_json_mode_under_drop_params_with_thinking_sends_thinking_and_no_tool(
        thinking: dict[str, Any]) -> None:
    body = body_for(USER, response_format=ResponseFormat("json_object"), drop_params=True,
                    extra=thinking)
    assert "tools" not in body and "tool_choice" not in body
    assert body["thinking"]["type"] == "enabled"


def test_json_mode_goes_as_the_tool_when_thinking_is_off() -> None:
    for extra in ({}, {"reasoning_effort": "none"}, {"thinking": {"type": "disabled"}}):
        body = body_for(USER, response_format=ResponseFormat("json_object"), extra=extra)
        assert body["tool_choice"] == {"type": "tool", "name": "json_answer"}, extra
