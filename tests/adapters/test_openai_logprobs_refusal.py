"""Logprobs and refusals from OpenAI-compatible deployments reach the caller.

A request's `logprobs` and `top_logprobs` go upstream as they are (OpenAI
parameters without a neutral field); the answer's `choices[0].logprobs` comes
back in the whole answer, in each streamed chunk, and joined in a stream's
final response. The fake upstream answers them in OpenAI's documented shape:
one entry per token ({"token", "logprob", "bytes", "top_logprobs"}), its
tokens being its chunks. A refusal (`message.refusal`, streamed as
`delta.refusal`) stays a refusal, with no content, whole and streamed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from tests.adapters.test_openai import FAST, collect, deployment, user

from interlock.adapters.base import StreamAccumulator
from interlock.adapters.http import HttpClient
from interlock.adapters.openai import OpenAIAdapter, chunk_delta, plain_text
from interlock.openai_response import ChunkRenderer, completion_dict
from interlock.testing import Reply
from interlock.testing.openai_wire import _FINGERPRINT as FAKE_FINGERPRINT
from interlock.types import ChatResponse, StreamDelta

TEXT = "Paris is the capital."  # chunk_chars=8: "Paris is", " the cap", "ital."
TOKENS = ["Paris is", " the cap", "ital."]


def _asking(stream: bool, ask: bool) -> Any:
    extra = {"logprobs": True, "top_logprobs": 2} if ask else {}
    return replace(user("capital?"), stream=stream, extra=extra)


async def _answers(fake_upstream: Any, *, ask: bool = True, reply: Reply | None = None
                   ) -> tuple[ChatResponse, list[StreamDelta]]:
    """The same question answered whole and streamed (`reply` both times)."""
    reply = reply or Reply(text=TEXT, chunk_chars=8)
    dep = deployment(fake_upstream.base_url("openai"))
    http = HttpClient()
    try:
        adapter = OpenAIAdapter(http)
        fake_upstream.reply(reply, provider="openai")
        whole = await adapter.complete(_asking(False, ask), dep, FAST)
        fake_upstream.reply(reply, provider="openai")
        deltas = await collect(adapter, _asking(True, ask), dep)
    finally:
        await http.aclose()
    return whole, deltas


async def test_logprobs_are_asked_for_and_come_back_in_a_whole_answer(
        fake_upstream: Any) -> None:
    whole, _ = await _answers(fake_upstream)
    sent = fake_upstream.received[0].body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    assert whole.logprobs is not None
    content = whole.logprobs["content"]
    assert [entry["token"] for entry in content] == TOKENS
    assert "".join(entry["token"] for entry in content) == whole.content
    first = content[0]
    assert first["bytes"] == list(b"Paris is")
    assert [alt["token"] for alt in first["top_logprobs"]] == ["Paris is", "Paris is~1"]
    assert first["logprob"] == first["top_logprobs"][0]["logprob"]


async def test_each_streamed_delta_carries_its_tokens_and_the_stream_joins_them(
        fake_upstream: Any) -> None:
    whole, deltas = await _answers(fake_upstream)
    carrying = [d for d in deltas if d.logprobs]
    # Every text chunk took the general way (not the text-only short way, which
    # would have dropped its logprobs), one token each.
    assert [d.text for d in carrying] == TOKENS
    assert [d.logprobs["content"][0]["token"] for d in carrying if d.logprobs] == TOKENS
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    streamed = acc.response()
    assert streamed.content == TEXT
    assert streamed.logprobs == whole.logprobs


async def test_no_logprobs_when_none_were_asked_for(fake_upstream: Any) -> None:
    whole, deltas = await _answers(fake_upstream, ask=False)
    assert "logprobs" not in fake_upstream.received[0].body
    assert whole.logprobs is None
    assert all(d.logprobs is None for d in deltas)
    assert completion_dict(whole, request_id="r")["choices"][0]["logprobs"] is None


def _text_chunk(logprobs: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": logprobs,
                         "finish_reason": None}]}


def test_a_text_chunk_with_logprobs_is_not_taken_for_plain_text() -> None:
    entry = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}
    assert plain_text(_text_chunk(None)) == "Hi"
    assert plain_text(_text_chunk({"content": [entry], "refusal": None})) is None
    delta = chunk_delta(_text_chunk({"content": [entry], "refusal": None}), first=False)
    assert delta is not None and delta.text == "Hi"
    assert delta.logprobs == {"content": [entry], "refusal": None}


def test_a_chunk_of_logprobs_alone_is_still_passed_on() -> None:
    chunk = _text_chunk({"content": [{"token": "", "logprob": 0.0, "bytes": [],
                                      "top_logprobs": []}]})
    chunk["choices"][0]["delta"] = {}
    delta = chunk_delta(chunk, first=False)
    assert delta is not None and delta.text is None and delta.logprobs is not None


def test_the_rendered_chunk_is_the_chunk_dict_byte_for_byte() -> None:
    logprobs = {"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                             "top_logprobs": [{"token": "Hi", "logprob": -0.25,
                                               "bytes": [72, 105]}]}], "refusal": None}
    deltas = [StreamDelta("Hi", model="m", logprobs=logprobs),
              StreamDelta(" there", finish_reason="stop", logprobs=logprobs),
              StreamDelta(" plain")]
    rendered = ChunkRenderer("req-1")
    expected = ChunkRenderer("req-1")
    rendered.created = expected.created = 1_700_000_000
    events = rendered.sse(deltas).split(b"\n\n")[:-1]
    chunks = [expected.chunk(d) for d in deltas]
    assert events == [b"data: " + orjson.dumps(c) for c in chunks]
    assert chunks[0] is not None and chunks[0]["choices"][0]["logprobs"] == logprobs
    assert chunks[2] is not None and chunks[2]["choices"][0]["logprobs"] is None


def test_the_accumulator_joins_token_lists_and_leaves_the_chunks_alone() -> None:
    a = {"content": [{"token": "a"}], "refusal": None}
    b = {"content": [{"token": "b"}], "refusal": [{"token": "no"}]}
    acc = StreamAccumulator()
    acc.add(StreamDelta("a", logprobs=a))
    acc.add(StreamDelta("b", logprobs=b))
    assert acc.response().logprobs == {"content": [{"token": "a"}, {"token": "b"}],
                                       "refusal": [{"token": "no"}]}
    assert a == {"content": [{"token": "a"}], "refusal": None}


async def test_a_refusal_comes_back_as_a_refusal_whole_and_streamed(
        fake_upstream: Any) -> None:
    said = "I can't help with that request."
    whole, deltas = await _answers(fake_upstream, ask=False,
                                   reply=Reply(refusal=said, chunk_chars=8))
    # Not content: a client reading structured output must be able to tell.
    assert (whole.content, whole.refusal) == (None, said)
    assert completion_dict(whole, request_id="r")["choices"][0]["message"] == {
        "role": "assistant", "content": None, "refusal": said, "annotations": []}
    assert [d.refusal for d in deltas if d.refusal] == ["I can't ", "help wit", "h that r",
                                                       "equest."]
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    streamed = acc.response()
    assert (streamed.content, streamed.refusal) == (None, said)
    renderer = ChunkRenderer("r")
    chunks = [c for c in map(renderer.chunk, deltas) if c is not None]
    assert "".join(c["choices"][0]["delta"].get("refusal", "") for c in chunks) == said


async def test_the_backend_fields_come_back_whole_streamed_and_rendered(
        fake_upstream: Any) -> None:
    whole, deltas = await _answers(fake_upstream, ask=False)
    fingerprint = FAKE_FINGERPRINT
    assert (whole.system_fingerprint, whole.service_tier) == (fingerprint, "default")
    rendered = completion_dict(whole, request_id="r")
    assert (rendered["system_fingerprint"], rendered["service_tier"]) == (fingerprint,
                                                                          "default")
    assert (deltas[0].system_fingerprint, deltas[0].service_tier) == (fingerprint, "default")
    acc = StreamAccumulator()
    for d in deltas:
        acc.add(d)
    assert acc.response().system_fingerprint == fingerprint
    # Every chunk carries them (the gateway test sees them on forwarded literals).
    renderer = ChunkRenderer("r")
    events = renderer.sse(deltas[:1]) + renderer.sse(deltas[1:])
    chunks = [orjson.loads(e[6:]) for e in events.split(b"\n\n") if e]
    assert len(chunks) >= 3
    assert all((c["system_fingerprint"], c["service_tier"]) == (fingerprint, "default")
               for c in chunks)
    assert renderer.usage_chunk(whole.usage)["system_fingerprint"] == fingerprint


def test_answers_without_backend_fields_render_none() -> None:
    plain = ChatResponse("id", "m", "hi")
    assert not {"system_fingerprint", "service_tier"} & completion_dict(
        plain, request_id="r").keys()
    renderer = ChunkRenderer("r")
    chunk = renderer.chunk(StreamDelta("hi", model="m"))
    assert chunk is not None and "system_fingerprint" not in chunk
