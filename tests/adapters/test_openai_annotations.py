"""URL citations (`annotations`) from OpenAI-compatible deployments reach the caller.

A web-search model (OpenAI's search models, OpenRouter's web plugin, Perplexity
through it) cites its sources as `message.annotations`, a list of
{"type": "url_citation", "url_citation": {"start_index", "end_index", "url",
"title"}}. Streamed, they come as `delta.annotations`, in a chunk of their own or
beside text, and OpenRouter puts them on the choice instead. They used to be
dropped: whole answers were rendered without them and chunks that held only
annotations were skipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.adapters.test_openai import FAST, collect, deployment, user

from interlock.adapters.base import StreamAccumulator
from interlock.adapters.http import HttpClient
from interlock.adapters.openai import OpenAIAdapter, chunk_delta, plain_text
from interlock.openai_response import ChunkRenderer, completion_dict
from interlock.testing import Reply
from interlock.types import ChatResponse, StreamDelta

TEXT = "Lisbon is the capital of Portugal."
CITES = [{"type": "url_citation", "url_citation": {
    "start_index": 0, "end_index": 34, "url": "https://example.org/lisbon",
    "title": "Lisbon"}}]


def _chunk(delta: dict[str, Any], **choice: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None, **choice}]}


async def test_annotations_come_back_whole_and_streamed(fake_upstream: Any) -> None:
    dep = deployment(fake_upstream.base_url("openai"))
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        fake_upstream.reply(Reply(text=TEXT, annotations=CITES), provider="openai")
        whole = await adapter.complete(user("capital of Portugal?"), dep, FAST)
        fake_upstream.reply(Reply(text=TEXT, annotations=CITES), provider="openai")
        deltas = await collect(adapter, replace(user("capital of Portugal?"), stream=True),
                               dep)
    finally:
        await http.aclose()
    assert (whole.content, whole.annotations) == (TEXT, CITES)
    message = completion_dict(whole, request_id="r")["choices"][0]["message"]
    assert message["annotations"] == CITES and message["content"] == TEXT

    assert [d.annotations for d in deltas if d.annotations] == [CITES]
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    assert (acc.response().content, acc.response().annotations) == (TEXT, CITES)
    renderer = ChunkRenderer("r")
    chunks = [c for c in map(renderer.chunk, deltas) if c is not None]
    assert [c["choices"][0]["delta"]["annotations"] for c in chunks
            if "annotations" in c["choices"][0]["delta"]] == [CITES]


def test_an_answer_without_annotations_renders_an_empty_list() -> None:
    # As OpenAI renders a message without citations (strict schemas require it).
    message = completion_dict(ChatResponse("id", "m", "hi"), request_id="r")["choices"][0][
        "message"]
    assert message["annotations"] == []


def test_annotations_beside_text_or_on_the_choice_are_read() -> None:
    beside = _chunk({"content": "Lisbon", "annotations": CITES})
    assert plain_text(beside) is None
    delta = chunk_delta(beside, first=False)
    assert delta is not None and (delta.text, delta.annotations) == ("Lisbon", CITES)
    # OpenRouter's place for them: on the choice, beside a delta of text only.
    on_choice = _chunk({"content": "Lisbon"}, annotations=CITES)
    assert plain_text(on_choice) is None
    delta = chunk_delta(on_choice, first=False)
    assert delta is not None and (delta.text, delta.annotations) == ("Lisbon", CITES)
    # Not a list: nothing to pass on, and not a crash.
    odd = chunk_delta(_chunk({"content": "x", "annotations": "none"}), first=False)
    assert odd is not None and odd.annotations is None


def test_a_citation_sent_again_is_kept_once() -> None:
    other = [{"type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": 6, "url": "https://example.org/pt", "title": "PT"}}]
    acc = StreamAccumulator()
    acc.add(StreamDelta("Lisbon", annotations=CITES))
    acc.add(StreamDelta(" is", annotations=CITES + other))
    assert acc.response().annotations == CITES + other
