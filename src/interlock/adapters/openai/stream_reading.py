"""Stream decoding: a streamed call's body read a network read at a time, its
SSE events turned into `DeltaBatch`es, with a fast path that takes text-only
events off the wire as JSON literals (`_TextEvents`).

Imports: orjson, the standard library, `types`, `errors`, `catalog`,
`adapters.base`, `adapters.http`, `adapters.openai.*`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from interlock.adapters.base import SHAPE_ERRORS, DeltaBatch, SseParser, checked_delta, shape_error
from interlock.adapters.http import StreamingResponse, split_lines
from interlock.adapters.openai.error_mapping import error_from_body, malformed, stream_error_status
from interlock.adapters.openai.response import delta_from_response, parsed_answer
from interlock.adapters.openai.stream_chunks import chunk_delta, plain_text
from interlock.catalog import Deployment
from interlock.errors import ConnectionFailed, ProviderError
from interlock.types import StreamDelta


async def read_batches(opening: contextlib.AbstractAsyncContextManager[StreamingResponse],
                       deployment: Deployment) -> AsyncIterator[DeltaBatch]:
    """The call `opening` makes, read: the deltas of each network read as one
    batch; the first delta alone, as soon as it is parsed. Deltas parsed before a
    failure are yielded before it is raised, as a stream of single events would
    have; a failure before the first delta is raised with nothing yielded, so the
    dispatcher can still fail over."""
    async with opening as resp:
        if resp.status != 200 or _is_json(resp.headers):
            # An error, or a server that ignored `stream` and answered whole.
            whole = parsed_answer(resp.status, resp.headers, await resp.read(), deployment)
            yield DeltaBatch([delta_from_response(whole)], final=True)
            return
        decoder = _ChunkDecoder(deployment)
        resp.start_reading()
        try:
            while data := await resp.next_read():
                head, texts, events = decoder.feed(data)
                if head is None and decoder.first:
                    head = decoder.first_delta(events)
                if head is not None:
                    yield DeltaBatch([head])
                    if not (texts or events):  # the rest of the read, once the head is out
                        _, texts, events = decoder.feed(b"")
                deltas = decoder.decode(events, texts)
                if decoder.done:
                    break
                if deltas or texts:
                    # (deltas, final, texts) by position, once a read: a class call's
                    # keywords go through a dict (a test pins the order).
                    yield DeltaBatch(deltas, False, texts)
            else:
                texts = []
                deltas = decoder.decode(decoder.end_events(), texts)
                decoder.check_ended()
        finally:
            resp.stop_reading()
        # The stream ends here: what is left goes with the end, which follows at once.
        if deltas or texts or (decoder.error is None and not decoder.first):
            yield DeltaBatch(deltas, True, texts)
        if decoder.error is not None:
            raise decoder.error


_NOT_JSON = object()  # an event orjson could not parse as it came

# One SSE event holding a chunk of text and nothing else, in the layout OpenAI
# sends (and vLLM, Groq and DeepSeek between their first and last chunks):
# `data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,` some
# optional fields, one choice at index 0 whose delta is non-empty `content` (after
# an optional repeated role), no finish reason, no usage, an optional
# `obfuscation` pad. Captured: the content's JSON string literal, which must be
# valid JSON (no raw control characters, known escapes, surrogate escapes only in
# pairs). `_TEXT_REST` is the same event from its literal on. An event in any
# other layout simply takes `_ChunkDecoder.decode`.
_JSON_CHAR = rb'[^"\\\x00-\x1f]'
_JSON_ESCAPE = (rb'\\(?:["\\/bfnrt]|u(?:[0-9a-cefA-CEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}'
                rb'|[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))')
_JSON_TEXT = (rb'"(?:' + _JSON_CHAR + rb'|' + _JSON_ESCAPE + rb')' + _JSON_CHAR + rb'*(?:'
              + _JSON_ESCAPE + _JSON_CHAR + rb'*)*"')
_FIELD = rb'"[^"\\\x00-\x1f]*"'
_REST = (rb'(' + _JSON_TEXT + rb')\}(?:,"logprobs":null)?,"finish_reason":null\}\]'
         rb'(?:,"usage":null)?(?:,"obfuscation":' + _FIELD + rb')?\}\n\n')
_TEXT_EVENT = re.compile(
    rb'data: \{"id":' + _FIELD + rb',"object":"chat\.completion\.chunk","created":\d+,'
    rb'"model":' + _FIELD + rb'(?:,"service_tier":' + _FIELD + rb')?(?:,"system_fingerprint":'
    + _FIELD + rb')?,"choices":\[\{"index":0,"delta":\{(?:"role":"assistant",)?"content":'
    + _REST)
_TEXT_REST = re.compile(_REST)


class _TextEvents:
    """Takes the literals of text events (`_TEXT_EVENT`) off the front of a read.

    Matching `_TEXT_EVENT` costs about 40 instructions a byte, most of them on the
    ~200 bytes before the text, which are the same in every event of a stream
    (id, created, model and the rest). So the first text event is matched whole
    and the bytes before its literal are kept: a later event that starts with
    the same bytes is compared with them (memcmp) and only matched from its
    literal on, at a fraction of the cost. An event that starts otherwise is
    matched whole, and its start is kept if it is a text event."""

    __slots__ = ("_prefix",)

    def __init__(self) -> None:
        self._prefix: bytes | None = None

    def take(self, data: bytes) -> tuple[list[bytes], bytes]:
        """(literals, rest): the literals of the complete text events that start
        `data`, up to the first other thing, and the bytes after them."""
        texts: list[bytes] = []
        pos = 0
        prefix = self._prefix
        while True:
            match = (_TEXT_REST.match(data, pos + len(prefix))
                     if prefix is not None and data.startswith(prefix, pos) else None)
            if match is None:
                match = _TEXT_EVENT.match(data, pos)
                if match is None:
                    break
                prefix = self._prefix = data[pos:match.start(1)]
            texts.append(match.group(1))
            pos = match.end()
        return texts, data[pos:] if pos else data


class _ChunkDecoder:
    """One stream's SSE data -> StreamDeltas. `done` once `[DONE]` or a failure
    has been seen (nothing more is read); the failure is kept in `error`, to be
    raised after the deltas before it have been passed on."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.sse = SseParser()
        # What `feed` has not taken yet: the unfinished line of the last read, or
        # the rest of the read that held the first delta.
        self._pending = b""
        self._texts = _TextEvents()
        self.first = True
        self.finished = False  # a finish reason was seen
        self.done = False
        self.error: ProviderError | None = None

    def feed(self, data: bytes) -> tuple[StreamDelta | None, list[bytes], list[bytes]]:
        """(head, texts, events) of a read: `head` the stream's first delta if
        this read completes it (None if not, or if it was found before; the rest
        of the read is then kept for the next call, which may pass b""), `texts`
        the literals of the text-only events that start the read
        (`DeltaBatch.texts`), `events` the data of the complete events after
        them. The text events are matched in one regex pass over the read, with
        nothing decoded or built per event: this is most of what a streamed call
        costs Interlock beyond forwarding bytes. Reads with CRLF line ends, or
        that begin inside an event, take the general way."""
        data = self._pending + data if self._pending else data
        head = None
        texts: list[bytes] = []
        if self.sse.idle and b"\r" not in data:
            # The first delta (the id, the model, the role) is always decoded: its
            # read's events are taken one by one (each ends at a blank line)
            # until it is found, so that the texts after it can take the short way.
            while self.first and not self.done:
                end = data.find(b"\n\n") + 2
                if end == 1:
                    break
                head = self.first_delta(self.sse.feed_data(split_lines(data[:end])[0]))
                data = data[end:]
                if head is not None:
                    # The rest waits for the next feed, so that the head is sent first.
                    self._pending = data
                    return head, texts, []
            if not self.first and not self.done:
                # Text events are taken only from the start up to the first thing
                # that is not one, and only from a read that is valid UTF-8.
                texts, rest = self._texts.take(data)
                if texts and (data.isascii() or _utf8(data)):
                    data = rest
                else:
                    texts = []
        lines, self._pending = split_lines(data)
        return head, texts, self.sse.feed_data(lines) if lines else []

    def end_events(self) -> list[bytes]:
        """The events left unfinished when the body ended."""
        pending, self._pending = self._pending, b""
        events = self.sse.feed_data([pending.rstrip(b"\r")]) if pending else []
        return events + self.sse.end_data()

    def first_delta(self, events: list[bytes]) -> StreamDelta | None:
        """The stream's first delta, taken (with the events before it) off the
        front of `events`; None if these events hold none."""
        while events and not self.done:
            deltas = self.decode([events.pop(0)], [])
            if deltas:
                return deltas[0]
        return None

    def decode(self, events: list[bytes], texts: list[bytes]) -> list[StreamDelta]:
        """The deltas of these events. Text-only events that directly follow
        `texts` (none of the other kind before them) are appended to `texts`
        instead, as literals."""
        out: list[StreamDelta] = []
        plain = not self.first  # the first delta carries the id and the model
        if self.done:  # what follows [DONE] or a failure is not read
            return out
        for data in events:
            if data == b"[DONE]":
                self.done = True
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                chunk = _NOT_JSON
            if plain:
                text = plain_text(chunk)
                if text is not None:
                    texts.append(orjson.dumps(text))
                    continue
                plain = False
            try:
                parsed = self._delta(self._lenient(data) if chunk is _NOT_JSON else chunk)
            except ProviderError as exc:
                self.error, self.done = exc, True
                break
            if parsed is not None:
                out.append(parsed)
        return out

    def check_ended(self) -> None:
        """At the end of the body: a stream that stopped mid-answer is an error."""
        if not self.done and not self.finished:
            d = self.deployment
            self.error = ConnectionFailed(
                f"The {d.provider} stream for deployment {d.name!r} ended "
                "without [DONE] or a finish reason: the connection was cut mid-answer",
                provider=d.provider, deployment=d.name)
        self.done = True

    def _delta(self, chunk: Any) -> StreamDelta | None:
        if not isinstance(chunk, dict):
            raise malformed(self.deployment, "a stream chunk that is not a JSON object")
        d = self.deployment
        try:
            if "error" in chunk:
                raise error_from_body(stream_error_status(chunk["error"]), {}, chunk, d)
            delta = chunk_delta(chunk, first=self.first)
            if delta is not None:
                checked_delta(delta)
        except SHAPE_ERRORS as exc:  # on the stream path: try costs nothing, a with does
            raise shape_error(d.provider, d.name, exc) from None
        if delta is not None:
            self.first = False
            if delta.finish_reason is not None:
                self.finished = True
        return delta

    def _lenient(self, data: bytes) -> Any:
        # Bytes that are not UTF-8 were read as text with replacement characters
        # before orjson saw them; they still are.
        text = data.decode("utf-8", errors="replace")
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise malformed(self.deployment, f"a stream chunk that is not JSON: "
                                              f"{text[:200]!r}") from None


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_json(headers: Mapping[str, str]) -> bool:
    return (headers.get("content-type") or "").startswith("application/json")
