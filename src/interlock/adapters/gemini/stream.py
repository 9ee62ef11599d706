"""Stream decoding: streamed GenerateContentResponse chunks folded into neutral
`StreamDelta`s, citations passed on once, the finish checked at the end.

Imports: the standard library, `types`, `errors`, `adapters.base`, `adapters.gemini.*`.
"""

from __future__ import annotations

from typing import Any

from interlock.adapters.base import answer_shape, checked_delta
from interlock.adapters.gemini.call import PROVIDER, GeminiCall
from interlock.adapters.gemini.error_mapping import malformed
from interlock.adapters.gemini.response import (
    fallback_id,
    first_candidate,
    grounded_citations,
    map_finish,
    openai_logprobs,
    parse_usage,
    read_part,
    searches_billed,
)
from interlock.errors import ConnectionFailed
from interlock.types import StreamDelta, ToolCallDelta, Usage


def fed_deltas(state: StreamState, chunk: Any) -> list[StreamDelta]:
    """The deltas of one streamed chunk, read as `answer_shape` reads an answer."""
    with answer_shape(PROVIDER, state.deployment):
        return [checked_delta(delta) for delta in state.feed(chunk)]


class StreamState:
    """Turns streamed GenerateContentResponse chunks into deltas."""

    def __init__(self, call: GeminiCall) -> None:
        self._call = call
        self.deployment = call.labels.deployment
        self._started = False
        self._calls = 0
        self._response_id: Any = None
        self._finish: str | None = None
        self._usage: Usage | None = None
        # The answer's text so far, for grounding offsets, and the searches billed.
        self._text: list[str] = []
        self._searches = 0
        # Citations already passed on: grounding that comes again in a later chunk
        # (it holds the whole answer's, not the chunk's) must not cite twice.
        self._cited: set[tuple[Any, ...]] = set()

    def feed(self, chunk: Any) -> list[StreamDelta]:
        if not isinstance(chunk, dict):
            raise malformed(self._call, "a stream chunk is not a JSON object")
        if chunk.get("usageMetadata") is not None:
            self._usage = parse_usage(chunk["usageMetadata"])
        if not chunk.get("candidates") and "error" not in chunk \
                and not (chunk.get("promptFeedback") or {}).get("blockReason"):
            return []  # a usage-only chunk
        candidate = first_candidate(chunk, self._call)
        self._finish = candidate.get("finishReason") or self._finish
        delta = StreamDelta()
        if not self._started:
            self._started = True
            delta.id = str(chunk.get("responseId") or fallback_id())
            delta.model = str(chunk.get("modelVersion") or self._call.model)
        self._response_id = self._response_id or chunk.get("responseId")
        texts, thoughts = [], []
        for part in (candidate.get("content") or {}).get("parts") or []:
            kind, value = read_part(part, self._calls, self._response_id)
            if kind == "call":
                delta.tool_calls.append(ToolCallDelta(
                    index=self._calls, id=value.id, name=value.name, arguments=value.arguments,
                    thought_signature=value.thought_signature))
                self._calls += 1
            elif kind == "thought":
                thoughts.append(value)
            elif kind == "text":
                texts.append(value)
        delta.text = "".join(texts) or None
        delta.reasoning = "".join(thoughts) or None
        delta.logprobs = openai_logprobs(candidate.get("logprobsResult"))
        if delta.text:
            self._text.append(delta.text)
        grounding = candidate.get("groundingMetadata")
        if grounding:
            # It comes with the last chunks, its offsets over the whole answer.
            delta.annotations = self._new_citations(
                grounded_citations(grounding, "".join(self._text))) or None
            self._searches = searches_billed(grounding, self._call.model)
        useful = (delta.text or delta.reasoning or delta.tool_calls or delta.id or delta.logprobs
                  or delta.annotations)
        return [delta] if useful else []

    def _new_citations(self, citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for citation in citations:
            key = tuple(citation["url_citation"].values())
            if key not in self._cited:
                self._cited.add(key)
                fresh.append(citation)
        return fresh

    def finish(self) -> StreamDelta:
        if self._finish is None:
            raise ConnectionFailed(
                "The Gemini stream ended before a finishReason; the answer is incomplete.",
                provider=PROVIDER, deployment=self._call.labels.deployment)
        if self._usage is not None and self._searches:
            self._usage.web_searches = self._searches
        return StreamDelta(finish_reason=map_finish(self._finish, self._calls > 0),
                           usage=self._usage)
