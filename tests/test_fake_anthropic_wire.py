"""The fake upstream's Anthropic wire: the refusals it gives before looking at the
prompt (`AnthropicWire.check_request`), in the order the real API gives them,
reading the request's messages once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from interlock.testing.anthropic_wire import AnthropicWire
from interlock.testing.wire import Route

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
ROUTE = Route("chat", "claude", False)
MARK = {"type": "ephemeral"}


def marked(text: str = "x", marker: Any = MARK) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": marker}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 10,
            "messages": list(messages) or [{"role": "user", "content": "Hi"}], **fields}


def refusal(request: dict[str, Any]) -> str | None:
    answer = AnthropicWire().check_request(ROUTE, HEADERS, request)
    return None if answer is None else str(answer.body["error"]["message"])


EMPTY = {"role": "user", "content": ""}
EXTRA = {"role": "user", "content": "Hi", "name": "bob"}
TOO_MANY = {"role": "user", "content": [marked()] * 5}
BAD_TTL = {"role": "user", "content": [marked(marker={"type": "ephemeral", "ttl": "2h"})]}


@pytest.mark.parametrize(("request_body", "quote"), [
    (body(), None),
    # Each refusal alone.
    (body(EXTRA), "messages.0.name: Extra inputs are not permitted"),
    (body({"role": "user", "content": [{"type": "text", "text": "x", "cache": MARK}]}),
     "messages.0.content.0.cache: Extra inputs are not permitted"),
    (body(TOO_MANY), "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    (body(BAD_TTL), "messages.0.content.0.cache_control.ephemeral.ttl: Input should be"),
    (body(EMPTY, {"role": "assistant", "content": "ok"}),
     "messages.0: all messages must have non-empty content"),
    (body({"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}), None),
    ({"model": "claude", "max_tokens": 10, "messages": []},
     "messages: at least one message is required"),
    # Several at once: an extra field first, then a cache marker, then emptiness;
    # markers counted across tools, system and messages.
    (body(EMPTY, TOO_MANY, EXTRA), "messages.2.name: Extra inputs are not permitted"),
    (body(EMPTY, BAD_TTL), "messages.1.content.0.cache_control.ephemeral.ttl"),
    (body(EMPTY, TOO_MANY), "A maximum of 4 blocks with cache_control"),
    (body({"role": "user", "content": [marked()] * 2}, system=[marked()] * 2,
          tools=[{"name": "t", "input_schema": {}, "cache_control": MARK}]),
     "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    (body(BAD_TTL, system=[marked(marker={"type": "persistent"})]),
     "system.0.cache_control.type: Input should be 'ephemeral'"),
    (body(EXTRA, system=[{"type": "text", "text": "x", "cache": MARK}]),
     "system.0.cache: Extra inputs are not permitted"),
    (body(EXTRA, tools=[{"name": "t", "input_schema": {}, "parameters": {}}]),
     "tools.0.parameters: Extra inputs are not permitted"),
    (body(system=[{"type": "text", "text": "x", "cache": MARK}],
          tools=[{"name": "t", "input_schema": {}, "parameters": {}}]),
     "system.0.cache: Extra inputs are not permitted"),
])
def test_refusals_come_in_the_real_api_s_order(request_body: dict[str, Any],
                                                quote: str | None) -> None:
    found = refusal(request_body)
    if quote is None:
        assert found is None
    else:
        assert found is not None and quote in found


class _CountedWalks(list[Any]):
    """A list that counts how often it is walked."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        self.walks += 1
        return super().__iter__()


def test_the_messages_are_read_once() -> None:
    # They were walked three times: for extra fields, for cache markers and for
    # empty messages. The fake serves load in the overhead benchmark.
    messages = _CountedWalks([{"role": "user", "content": [marked()]},
                              {"role": "assistant", "content": "ok"},
                              {"role": "user", "content": "more"}])
    assert refusal(body() | {"messages": messages}) is None
    assert messages.walks == 1
