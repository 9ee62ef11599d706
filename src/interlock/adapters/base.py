"""What every provider adapter is, and the pieces they all share.

An adapter turns a neutral `ChatRequest` into one provider's HTTP call and the
answer back into a `ChatResponse` (or `StreamDelta`s). It raises only
`interlock.errors` types. `StreamAccumulator` folds deltas into the same
`ChatResponse` a non-streamed call returns (house rule 5). `iter_sse` parses
server-sent events for the adapters that stream with them.

An adapter may also stream in `DeltaBatch`es, the deltas of one network read
at a time (`BatchStreaming`): everything above it then handles a read in one
step instead of resuming a stack of generators for every delta.

Imports: orjson, the standard library, `types`, `errors`, `catalog`, `adapters.http`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Protocol, get_args

import orjson

from interlock.adapters.http import HttpClient, Timeouts
from interlock.catalog import Deployment
from interlock.errors import InvalidRequest, UpstreamServerError
from interlock.types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    StreamDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

# What reading a provider's answer raises when the answer is not the shape its
# documentation gives (a field of another type, a list where an object was due).
SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)
# The most tokens (or web searches) one call may report: far above any model's
# context and output (a few million), far below the 64-bit integers that the
# JSON sent to clients and the ledger's databases hold, even summed over many
# rows. A larger count, or a negative one, is a broken answer: let through, it
# made the client's answer a 500 and lost the ledger row.
MAX_TOKEN_COUNT = 10**9
_FINISH_REASONS = frozenset(get_args(FinishReason))


# Named in lower case: it is called like the function it replaced, `with answer_shape(...)`.
class answer_shape:
    """Read a provider's answer in here: one that is not the documented shape is
    the provider's fault, an UpstreamServerError (a 502 the dispatcher may retry
    elsewhere), never an internal error of Interlock's. A class rather than a
    generator-based context manager: every whole answer is read inside one, and
    the generator cost about three times the work."""

    __slots__ = ("_deployment", "_provider")

    def __init__(self, provider: str, deployment: str) -> None:
        self._provider = provider
        self._deployment = deployment

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, SHAPE_ERRORS):
            raise shape_error(self._provider, self._deployment, exc) from None


# How deep orjson writes nested objects and arrays. It reads up to 1024 levels, so
# a client's body can hold more than an upstream body can: found when the body is
# written (try/except costs nothing until it catches), not by walking every request.
MAX_JSON_DEPTH = 254


def request_body(payload: Any) -> bytes:
    """`payload` as the JSON bytes of an upstream call; InvalidRequest (a 400 the
    client can act on, not a 500 and a traceback) when it nests deeper than JSON
    can be written here."""
    try:
        return orjson.dumps(payload)
    except TypeError as exc:
        if not is_too_deep(exc):
            raise
        raise json_too_deep() from None


def is_too_deep(exc: TypeError) -> bool:
    """Whether orjson refused to write a value for its nesting."""
    return "Recursion limit" in str(exc)


def json_too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"The request nests JSON objects and arrays more than {MAX_JSON_DEPTH} levels "
        "deep, more than the gateway can send on. Flatten the deepest part (a tool's "
        "parameters, a response_format schema, an extra parameter).",
        code="json_too_deep")


def shape_error(provider: str, deployment: str, exc: Exception) -> UpstreamServerError:
    """The error for an answer `answer_shape` could not read (for a hot path that
    catches SHAPE_ERRORS itself: try/except costs nothing until it catches)."""
    return UpstreamServerError(
        f"The {provider} answer for deployment {deployment!r} is not in the shape its API "
        f"documents ({type(exc).__name__}: {str(exc)[:200]}).",
        provider=provider, deployment=deployment)


def upstream_error_text(provider: str, deployment: str, status: int | None, code: str,
                        text: str) -> str:
    """The message of an error a provider answered, the same for every adapter:
    which provider and which deployment (in a group of several, the one to look
    at), the status (None: an error object inside a 200 answer, such as a
    stream's error event), the provider's own code for it, and its text."""
    what = (f"answered HTTP {status}" if status is not None
            else "sent an error inside a 200 answer")
    detail = f" ({code})" if code else ""
    return f"{provider} {what} for deployment {deployment!r}{detail}: {text}"


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise TypeError(f"{what} of an unexpected type")


def _optional_str(value: Any) -> bool:
    return value is None or value.__class__ is str


def _usage_ok(usage: Usage | None) -> bool:
    if usage is None:
        return True
    # Written out flat, the bounds as one min and one max: it runs for every
    # answer (`token_count_ok` six times would be six calls).
    i, o, c = usage.input_tokens, usage.output_tokens, usage.cached_input_tokens
    w, r, s = usage.cache_write_tokens, usage.reasoning_tokens, usage.web_searches
    return (i.__class__ is int and o.__class__ is int and c.__class__ is int
            and w.__class__ is int and r.__class__ is int and s.__class__ is int
            and min(i, o, c, w, r, s) >= 0 and max(i, o, c, w, r, s) <= MAX_TOKEN_COUNT)


def token_count_ok(count: int) -> bool:
    """Whether one count a provider sent is possible (`MAX_TOKEN_COUNT`)."""
    return count.__class__ is int and 0 <= count <= MAX_TOKEN_COUNT


def _bad_count() -> TypeError:
    return TypeError(f"a token count that is not a whole number from 0 to {MAX_TOKEN_COUNT:,}")


def checked_delta(delta: StreamDelta) -> StreamDelta:
    """`delta` when its fields have the types the layers above rely on (text is
    a string, token counts are integers, ...); raises TypeError (inside
    `answer_shape`: an UpstreamServerError) for a value taken from a malformed
    answer that would otherwise fail later, far from its cause. Written out flat:
    it runs for every delta but a stream's plain text ones."""
    text, reasoning, id_, model = delta.text, delta.reasoning, delta.id, delta.model
    if not ((text is None or text.__class__ is str)
            and (reasoning is None or reasoning.__class__ is str)
            and (id_ is None or id_.__class__ is str)
            and (model is None or model.__class__ is str)):
        raise TypeError("a text field of an unexpected type")
    finish = delta.finish_reason
    if finish is not None and finish not in _FINISH_REASONS:
        raise TypeError("a finish reason of an unexpected value")
    if delta.usage is not None and not _usage_ok(delta.usage):
        raise _bad_count()
    for call in delta.tool_calls:
        _check(call.__class__ is ToolCallDelta and call.index.__class__ is int
               and _optional_str(call.id) and _optional_str(call.name)
               and call.arguments.__class__ is str, "a tool call")
    return delta


def checked_response(response: ChatResponse) -> ChatResponse:
    """As `checked_delta`, for a whole answer."""
    _check(_optional_str(response.content) and _optional_str(response.reasoning)
           and response.id.__class__ is str and response.model.__class__ is str,
           "a text field")
    _check(response.finish_reason is None or response.finish_reason in _FINISH_REASONS,
           "a finish reason")
    if not _usage_ok(response.usage):
        raise _bad_count()
    for call in response.tool_calls:
        _check(call.id.__class__ is str and call.name.__class__ is str
               and call.arguments.__class__ is str, "a tool call")
    return response


class Adapter(Protocol):
    """One provider. Instances are cheap and share the gateway's HttpClient.

    An adapter that ends every call within its `Timeouts` by itself (as the HTTP
    adapters here do, through `adapters.http`) may say so with a class attribute
    `keeps_time = True`: the dispatcher then leaves out the asyncio.timeout it
    otherwise puts around each attempt as a last guard (a couple of percent of a
    request's work). Without it, the guard stays."""

    provider: ClassVar[str]

    def __init__(self, http: HttpClient) -> None: ...

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        """One non-streamed call; raises a ProviderError subclass on failure."""
        ...

    def stream(self, request: ChatRequest, deployment: Deployment,
               timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        """One streamed call. Errors before the first delta and mid-stream are both
        raised as ProviderError subclasses from the iterator. The final delta
        carries `usage` when the provider reports it (adapters ask for it)."""
        ...


class BatchStreaming(Protocol):
    """An adapter that can also stream a network read at a time (optional: the
    dispatcher falls back to `Adapter.stream`)."""

    def stream_batches(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> AsyncIterator[DeltaBatch]:
        """As `stream`, but each item holds the deltas of one network read, none
        empty unless `final`. The first delta comes alone, before the rest of its
        read is parsed, so that it is never held back."""
        ...


@dataclass(slots=True)
class DeltaBatch:
    """Deltas that arrived together, to be handed on (and sent) together.

    `final` says the stream ends, or fails, right after these without waiting
    on the upstream again: a consumer may then take the end before sending them,
    so the last deltas, the usage chunk and `[DONE]` leave in one write.

    `texts` come before `deltas`: each is a delta that holds text and nothing
    else (no id, model, tool call, finish or usage), kept as its text's JSON
    string literal (quotes included). Nearly every event of a stream is one, and
    an adapter that can take them off the wire as literals spares decoding each
    into a string and a StreamDelta only for the gateway to encode it again.
    `decode_texts` gives the strings; `flatten` gives them as StreamDeltas."""

    deltas: list[StreamDelta]
    final: bool = False
    texts: Sequence[bytes] = ()


def decode_texts(texts: Sequence[bytes]) -> list[str]:
    """The strings of JSON string literals, decoded in one call."""
    try:
        decoded = orjson.loads(b"[" + b",".join(texts) + b"]")
    except orjson.JSONDecodeError:
        # Adapters hand on only literals that parse; should one not, it is read
        # leniently on its own rather than failing the whole stream's text.
        return [_lenient_text(text) for text in texts]
    return decoded


def _lenient_text(literal: bytes) -> str:
    try:
        return str(orjson.loads(literal))
    except orjson.JSONDecodeError:
        return literal[1:-1].decode("utf-8", "replace")


async def flatten(batches: AsyncIterator[DeltaBatch]) -> AsyncIterator[StreamDelta]:
    """One delta at a time, for consumers that want them so."""
    async for batch in batches:
        if batch.texts:
            for text in decode_texts(batch.texts):
                yield StreamDelta(text)
        for delta in batch.deltas:
            yield delta


@dataclass(slots=True)
class ServerSentEvent:
    event: str | None
    data: str


class SseParser:
    """Server-sent events from lines, fed a batch at a time; multi-line data fields
    are joined, comments skipped."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[bytes] = []

    @property
    def idle(self) -> bool:
        """Between events: no data line of an unfinished event has been fed."""
        return not self._data

    def feed(self, lines: Iterable[bytes]) -> list[ServerSentEvent]:
        return [ServerSentEvent(event, data.decode("utf-8", "replace"))
                for event, data in self._events(lines)]

    def feed_data(self, lines: Iterable[bytes]) -> list[bytes]:
        """Only the data of each completed event, undecoded: for adapters that
        ignore event names, this spares decoding every line and an event object
        per event (orjson parses bytes)."""
        if not self._data and lines.__class__ is list and not len(lines) % 2:
            # The usual read: whole events of one `data: ` line each, each line
            # followed by a blank one. Taken in two list operations, or not at all.
            data = [raw[6:] for raw in lines[::2] if raw[:6] == b"data: "]
            if 2 * len(data) == len(lines) and not any(lines[1::2]):
                self._event = None
                return data
        return [data for _, data in self._events(lines)]

    def _events(self, lines: Iterable[bytes]) -> list[tuple[str | None, bytes]]:
        """(event name, data) of each event these lines complete."""
        out: list[tuple[str | None, bytes]] = []
        for raw in lines:
            if raw:
                self._field(raw)
            elif self._data:
                event = self._event
                out.append((event, self._take()))
            else:
                self._event = None
        return out

    def end(self) -> list[ServerSentEvent]:
        """An event left without its closing blank line when the stream ended."""
        if not self._data:
            return []
        event = self._event
        return [ServerSentEvent(event, self._take().decode("utf-8", "replace"))]

    def end_data(self) -> list[bytes]:
        """`end`, as `feed_data` gives events."""
        return [self._take()] if self._data else []

    def _field(self, raw: bytes) -> None:
        if raw.startswith(b":"):
            return  # a comment
        name, _, value = raw.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _take(self) -> bytes:
        """The open event's data, which is then closed."""
        data = self._data
        self._event, self._data = None, []
        return data[0] if len(data) == 1 else b"\n".join(data)


async def iter_sse(batches: AsyncIterator[list[bytes]]) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events from batches of lines (`StreamingResponse.line_batches`).
    Taking a read's lines at once spares two generator resumptions per event."""
    parser = SseParser()
    async for lines in batches:
        for event in parser.feed(lines):
            yield event
    for event in parser.end():
        yield event


def with_extra_headers(headers: dict[str, str], deployment: Deployment) -> dict[str, str]:
    """`headers` plus the deployment's `extra_headers` (LiteLLM's `headers` too),
    which win: a gateway in front may need its own routing or tenant headers."""
    extra = deployment.extra.get("extra_headers")
    if isinstance(extra, Mapping):
        headers.update({str(k): str(v) for k, v in extra.items()})
    return headers


def with_call_headers(headers: dict[str, str], request: ChatRequest) -> dict[str, str]:
    """`headers` with the call's own `extra_headers` over them (a name given in
    another case replaces, rather than doubles, the header); `headers` itself,
    not a copy, for the usual call that has none."""
    extra = request.extra_headers
    if not extra:
        return headers
    replaced = {name.lower() for name in extra}
    merged = {k: v for k, v in headers.items() if k.lower() not in replaced}
    merged.update(extra)
    return merged


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date) or retry-after-ms."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class StreamAccumulator:
    """Folds stream deltas into the final response, so streamed calls end in
    the same `ChatResponse` (and usage, and cost) as non-streamed ones."""

    def __init__(self, *, default_id: str = "", default_model: str = "") -> None:
        self.id = default_id
        self.model = default_model
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._thinking_blocks: list[dict[str, Any]] = []
        self._calls: dict[int, list[str]] = {}
        self._call_meta: dict[int, tuple[str, str]] = {}
        self._signatures: dict[int, str] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        # The chunks' logprobs, their token lists joined, the refusal's pieces and
        # the annotations.
        self._logprobs: dict[str, Any] | None = None
        self._refusal: list[str] | None = None
        self._annotations: list[dict[str, Any]] | None = None
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        self.deltas = 0
        # Text deltas still as JSON literals (`DeltaBatch.texts`), after `_text`:
        # decoded together when the text is asked for, or before more text.
        self._literals: list[bytes] = []

    def extend(self, deltas: list[StreamDelta], *, texts: Sequence[bytes] = ()) -> None:
        """Fold a batch: its `texts`, then its deltas (as in `DeltaBatch`)."""
        if texts:
            self.deltas += len(texts)
            self._literals += texts
        for delta in deltas:
            self.add(delta)

    def add(self, delta: StreamDelta) -> None:
        self.deltas += 1
        if delta.id:
            self.id = delta.id
            # The first delta's, as its id: what the backend said of itself.
            self.system_fingerprint = delta.system_fingerprint
            self.service_tier = delta.service_tier
        if delta.model:
            self.model = delta.model
        if delta.text:
            if self._literals:
                self._decode_literals()
            self._text.append(delta.text)
        if delta.reasoning:
            self._reasoning.append(delta.reasoning)
        if delta.thinking_blocks:
            self._thinking_blocks.extend(delta.thinking_blocks)
        for tc in delta.tool_calls:
            old_id, old_name = self._call_meta.get(tc.index, ("", ""))
            self._call_meta[tc.index] = (tc.id or old_id, tc.name or old_name)
            self._calls.setdefault(tc.index, []).append(tc.arguments)
            if tc.thought_signature:
                self._signatures[tc.index] = tc.thought_signature
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.logprobs or delta.refusal or delta.annotations:
            self._add_rarer_fields(delta)

    def _add_rarer_fields(self, delta: StreamDelta) -> None:
        """A refusal's pieces are joined, and the annotations' lists. Each chunk
        carries the logprobs of its own tokens ({"content": [...], "refusal": ...}):
        the whole answer's are the lists joined, key by key."""
        if delta.annotations:
            if self._annotations is None:
                self._annotations = []
            # Some providers send a citation again in a later chunk; it is one citation.
            self._annotations += [a for a in delta.annotations if a not in self._annotations]
        if delta.refusal:
            if self._refusal is None:
                self._refusal = []
            self._refusal.append(delta.refusal)
        if not delta.logprobs:
            return
        merged = self._logprobs
        if merged is None:
            merged = self._logprobs = {}
        for key, value in delta.logprobs.items():
            held = merged.get(key)
            if isinstance(value, list):
                if isinstance(held, list):
                    held.extend(value)
                else:
                    merged[key] = list(value)  # a copy: the chunk's own list stays as sent
            elif key not in merged:
                merged[key] = value

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._calls)

    @property
    def text(self) -> str:
        if self._literals:
            self._decode_literals()
        return "".join(self._text)

    def _decode_literals(self) -> None:
        self._text += decode_texts(self._literals)
        self._literals = []

    def response(self) -> ChatResponse:
        if self._literals:
            self._decode_literals()
        calls = [
            ToolCall(id=self._call_meta[i][0], name=self._call_meta[i][1], arguments="".join(a),
                     thought_signature=self._signatures.get(i))
            for i, a in sorted(self._calls.items())
        ]
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        # (id, model, content) positionally and the rest set, as the OpenAI
        # adapter's `parse_response` builds its answer (a test pins the order).
        # No content beside a refusal or tool calls unless some came, as in a whole answer.
        refusal = "".join(self._refusal) if self._refusal else None
        response = ChatResponse(self.id, self.model, "".join(self._text) if self._text or not (
            calls or refusal) else None)
        response.tool_calls = calls
        response.finish_reason = finish  # type: ignore[assignment]
        response.usage = self.usage
        response.reasoning = "".join(self._reasoning) or None
        response.thinking_blocks = list(self._thinking_blocks)
        response.logprobs = self._logprobs
        response.refusal = refusal
        response.annotations = self._annotations
        response.system_fingerprint = self.system_fingerprint
        response.service_tier = self.service_tier
        return response
