"""The adapter for OpenAI's chat-completions API and every service that copies it.

One module serves OpenAI, OpenRouter, Groq, Together, DeepSeek, vLLM, Ollama and
the llama.cpp server: they differ only in base URL and key, which the deployment
carries. Here live the request translation (neutral `ChatRequest` -> OpenAI JSON),
the response and stream translation back, the embeddings call, and OpenAI's
error recognisers (context window, content policy, quota, rate-limit reset headers).

`max_tokens` or `max_completion_tokens`: OpenAI deprecated `max_tokens` and its
reasoning models (o1, o3, o4, gpt-5 families) reject it, but every other
OpenAI-compatible server (vLLM, Ollama, llama.cpp, Groq, Together, older
deployments) knows `max_tokens`, and OpenAI's own non-reasoning models still take
it. So `max_tokens` is sent everywhere except to the reasoning families on the
`openai` provider itself. A deployment can force either name with
`max_tokens_param` in its extra params; a caller who passes one of the two names
in `request.extra` gets exactly that.

Imports: orjson, the standard library, `types`, `tokens`, `errors`, `catalog`, `adapters.*`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from interlock.adapters.base import (
    SHAPE_ERRORS,
    DeltaBatch,
    SseParser,
    answer_shape,
    checked_delta,
    checked_response,
    flatten,
    parse_retry_after,
    shape_error,
    upstream_error_text,
    with_call_headers,
    with_extra_headers,
)
from interlock.adapters.http import (
    HttpClient,
    Labels,
    StreamingResponse,
    Timeouts,
    split_lines,
)
from interlock.adapters.registry import resolve_base_url
from interlock.catalog import Deployment
from interlock.errors import (
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    UpstreamServerError,
    error_for_status,
    redact,
    redact_json,
)
from interlock.tokens import estimate_inputs_tokens
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    StreamDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    # Seen from OpenAI-compatible servers that pass their engine's word through.
    "eos": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
}

# Fields the adapter owns: request.extra may not override them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})
_MAX_TOKENS_NAMES = ("max_tokens", "max_completion_tokens")
_REASONING_MODEL = re.compile(r"^(?:openai/)?(?:o\d|gpt-5)")

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_TEXTS = ("maximum context length", "context length", "context window",
                  "too many tokens", "prompt is too long", "reduce the length of the messages")
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
_FILTER_TEXTS = ("safety system", "content management policy", "usage policy",
                 "content_policy_violation")

# Status to assume for an error object that arrives inside a 200 stream.
_STREAM_ERROR_STATUS = {
    "rate_limit_exceeded": 429, "rate_limit_error": 429, "tokens": 429, "requests": 429,
    "insufficient_quota": 429, "invalid_request_error": 400, "authentication_error": 401,
    "invalid_api_key": 401, "permission_error": 403, "not_found_error": 404,
    "model_not_found": 404, "overloaded_error": 503, "server_error": 500,
}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                  "ns": 1e-9}


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """What every chat call to one deployment sends the same way. Its headers go
    to aiohttp, which copies them and never changes the dict it was given. They
    hold the key (and any extra_headers), so the repr leaves them out."""

    chat_url: str
    headers: dict[str, str] = field(repr=False)
    stream_headers: dict[str, str] = field(repr=False)
    labels: Labels


class OpenAIAdapter:
    """Chat completions and embeddings over the OpenAI wire format."""

    provider: ClassVar[str] = "openai"
    keeps_time: ClassVar[bool] = True  # every call is bounded by adapters.http

    def __init__(self, http: HttpClient) -> None:
        self._http = http
        # Per deployment (a config's deployments are fixed for the adapter's life):
        # its URL, headers and labels were rebuilt on every call before, about a
        # hundred opcodes of each request's own work.
        self._endpoints: dict[Deployment, _Endpoint] = {}

    def _endpoint(self, deployment: Deployment) -> _Endpoint:
        endpoint = self._endpoints.get(deployment)
        if endpoint is None:
            endpoint = self._endpoints[deployment] = _Endpoint(
                chat_url=_url(deployment, "/chat/completions"),
                headers=_headers(deployment, stream=False),
                stream_headers=_headers(deployment, stream=True),
                labels=_labels(deployment))
        return endpoint

    # -- calls ---------------------------------------------------------------
    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        body = build_body(request, deployment, stream=False)
        endpoint = self._endpoint(deployment)
        resp = await self._http.post(
            endpoint.chat_url, headers=with_call_headers(endpoint.headers, request),
            body=orjson.dumps(body),
            timeouts=timeouts, labels=endpoint.labels)
        return _parsed(resp.status, resp.headers, resp.body, deployment)

    def stream(self, request: ChatRequest, deployment: Deployment,
               timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        return flatten(self.stream_batches(request, deployment, timeouts))

    def stream_batches(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> AsyncIterator[DeltaBatch]:
        # The body is built now (a request it cannot take fails here) and the call
        # is made and read by one generator: a generator relaying another cost a
        # resumption per network read.
        body = build_body(request, deployment, stream=True)
        endpoint = self._endpoint(deployment)
        return _stream_batches(self._http.stream(
            endpoint.chat_url, headers=with_call_headers(endpoint.stream_headers, request),
            body=orjson.dumps(body),
            timeouts=timeouts, labels=endpoint.labels), deployment)

    async def embeddings(self, request: EmbeddingRequest, deployment: Deployment,
                         timeouts: Timeouts) -> EmbeddingResult:
        """One vector per input, in input order, and the tokens billed."""
        body: dict[str, Any] = {**request.extra, "model": deployment.model,
                                "input": request.inputs, "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.routing.user is not None:
            body["user"] = request.routing.user
        resp = await self._http.post(
            _url(deployment, "/embeddings"),
            headers=with_call_headers(_headers(deployment, stream=False), request.routing),
            body=orjson.dumps(body), timeouts=timeouts, labels=_labels(deployment))
        data = _decode_answer(resp.status, resp.headers, resp.body, deployment)
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
            usage = data.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or 0)
        except SHAPE_ERRORS:
            raise _malformed(deployment, "an embeddings answer without data[].embedding") from None
        if len(vectors) != len(request.inputs):
            raise _malformed(deployment, f"{len(vectors)} embeddings for "
                             f"{len(request.inputs)} inputs")
        if not tokens:  # some OpenAI-compatible servers leave usage out
            tokens = estimate_inputs_tokens(request.inputs)
        return EmbeddingResult(vectors, Usage(input_tokens=tokens))


# -- request translation --------------------------------------------------------
def build_body(request: ChatRequest, deployment: Deployment, *, stream: bool) -> dict[str, Any]:
    """The OpenAI JSON body for a neutral request sent to this deployment."""
    body: dict[str, Any] = {k: v for k, v in request.extra.items() if k not in _RESERVED}
    body["model"] = deployment.model
    body["messages"] = [message_json(m) for m in request.messages]
    if stream:
        body["stream"] = True
        # Without this OpenAI sends no usage on streams, and cost would be unknown.
        body["stream_options"] = {"include_usage": True}
    _set_sampling(body, request)
    if request.max_tokens is not None and not any(n in body for n in _MAX_TOKENS_NAMES):
        body[_max_tokens_name(deployment)] = request.max_tokens
    _set_tools(body, request)
    if request.response_format is not None:
        body["response_format"] = response_format_json(request.response_format)
    return body


def _set_sampling(body: dict[str, Any], request: ChatRequest) -> None:
    # Written out, not a loop over (name, value) pairs: it runs on every request.
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop"] = request.stop
    if request.user is not None:
        body["user"] = request.user
    if request.n is not None:
        body["n"] = request.n


def _set_tools(body: dict[str, Any], request: ChatRequest) -> None:
    if request.tools:
        body["tools"] = [tool_json(t) for t in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = tool_choice_json(request.tool_choice)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls


def _max_tokens_name(deployment: Deployment) -> str:
    forced = deployment.extra.get("max_tokens_param")
    if forced in _MAX_TOKENS_NAMES:
        return str(forced)
    if deployment.provider == "openai" and _REASONING_MODEL.match(deployment.model):
        return "max_completion_tokens"
    return "max_tokens"


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
        out["content"] = m.text
        return out
    if m.role == "assistant" and m.tool_calls:
        # OpenAI wants null, not "", beside tool calls that have no text.
        out["content"] = content_json(m.parts) if m.parts else None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name,
                                                          "arguments": c.arguments or "{}"}}
            for c in m.tool_calls
        ]
    else:
        out["content"] = content_json(m.parts)
    if m.name:
        out["name"] = m.name
    return out


def content_json(parts: list[Part]) -> str | list[dict[str, Any]]:
    """A plain string when there are only text parts (every compatible server takes
    that); a content array as soon as there is an image."""
    if len(parts) == 1 and parts[0].__class__ is TextPart:  # the usual message
        return parts[0].text
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, ImagePart):
            image: dict[str, Any] = {"url": p.url}
            if p.detail:
                image["detail"] = p.detail
            out.append({"type": "image_url", "image_url": image})
        else:
            out.append({"type": "text", "text": p.text})
    return out


def tool_json(spec: ToolSpec) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": spec.name}
    if spec.description is not None:
        fn["description"] = spec.description
    fn["parameters"] = spec.parameters if spec.parameters is not None else {
        "type": "object", "properties": {}}
    if spec.strict is not None:
        fn["strict"] = spec.strict
    return {"type": "function", "function": fn}


def tool_choice_json(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str) or "type" in choice:
        return choice
    return {"type": "function", "function": {"name": choice["name"]}}


def response_format_json(rf: ResponseFormat) -> dict[str, Any]:
    if rf.type != "json_schema":
        return {"type": rf.type}
    schema = rf.json_schema or {}
    # Accept the OpenAI wrapper ({name, schema, strict}) as well as a bare schema.
    if "schema" in schema and "type" not in schema:
        wrapper = dict(schema)
    else:
        wrapper = {"name": rf.name or "response", "schema": schema}
    if rf.name and "name" not in wrapper:
        wrapper["name"] = rf.name
    wrapper.setdefault("name", "response")
    if rf.strict is not None:
        wrapper["strict"] = rf.strict
    return {"type": "json_schema", "json_schema": wrapper}


# -- response translation -------------------------------------------------------
def _parsed(status: int, headers: Mapping[str, str], raw: bytes,
            deployment: Deployment) -> ChatResponse:
    """A whole answer read, or its error raised, typed either way."""
    with answer_shape(deployment.provider, deployment.name):
        data = _decode_answer(status, headers, raw, deployment)
        return checked_response(parse_response(data, deployment))


def parse_response(data: dict[str, Any], deployment: Deployment) -> ChatResponse:
    """A chat.completion object -> ChatResponse (the first choice; n > 1 is not
    represented in the neutral response)."""
    try:
        choice = data["choices"][0]
        msg = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _malformed(deployment, "an answer without choices[0].message") from None
    calls = [_tool_call(c, i) for i, c in enumerate(msg.get("tool_calls") or [])]
    legacy = msg.get("function_call")
    if legacy and not calls:
        calls = [_tool_call({"function": legacy}, 0)]
    content = _text(msg.get("content"))
    refusal = msg.get("refusal")
    if not refusal or refusal.__class__ is not str:
        refusal = None
        if content is None and not calls:
            content = ""
    finish = map_finish(choice.get("finish_reason")) or ("tool_calls" if calls else "stop")
    # (id, model, content) positionally and the rest set: a class call's keyword
    # arguments go through a dict, about 500 instructions each (see
    # `parse_chat_request`); a test pins the field order.
    response = ChatResponse(str(data.get("id") or ""),
                            str(data.get("model") or deployment.model), content)
    response.tool_calls = calls
    response.finish_reason = finish
    response.usage = parse_usage(data.get("usage"))
    response.reasoning = msg.get("reasoning_content") or msg.get("reasoning") or None
    if isinstance(data.get("created"), int):
        response.created = data["created"]
    logprobs = choice.get("logprobs")
    if logprobs and isinstance(logprobs, dict):
        response.logprobs = logprobs
    if refusal is not None:
        response.refusal = refusal
    annotations = msg.get("annotations")
    if annotations and annotations.__class__ is list:
        response.annotations = annotations
    # Checked in place rather than by a helper: this runs on every answer.
    fingerprint, tier = data.get("system_fingerprint"), data.get("service_tier")
    if fingerprint and fingerprint.__class__ is str:
        response.system_fingerprint = fingerprint
    if tier and tier.__class__ is str:
        response.service_tier = tier
    return response


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _tool_call(raw: dict[str, Any], index: int) -> ToolCall:
    fn = raw.get("function") or {}
    args = fn.get("arguments")
    if not isinstance(args, str):
        # Some compatible servers (older Ollama) send the arguments as an object.
        args = orjson.dumps(args if args is not None else {}).decode()
    return ToolCall(id=str(raw.get("id") or f"call_{index}"), name=str(fn.get("name") or ""),
                    arguments=args)


def map_finish(reason: Any) -> FinishReason | None:
    if not reason:
        return None
    return _FINISH.get(str(reason), "stop")


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    # DeepSeek reports its cache hits under its own name.
    cached = prompt_details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens") or 0
    usage = Usage()  # set field by field, as `parse_response` builds its answer
    usage.input_tokens = int(raw.get("prompt_tokens") or 0)
    usage.output_tokens = int(raw.get("completion_tokens") or 0)
    usage.cached_input_tokens = int(cached)
    usage.reasoning_tokens = int(completion_details.get("reasoning_tokens") or 0)
    return usage


def _delta_from_response(r: ChatResponse) -> StreamDelta:
    return StreamDelta(
        text=r.content, finish_reason=r.finish_reason, usage=r.usage, id=r.id, model=r.model,
        reasoning=r.reasoning, logprobs=r.logprobs, refusal=r.refusal,
        annotations=r.annotations, system_fingerprint=r.system_fingerprint,
        service_tier=r.service_tier,
        tool_calls=[ToolCallDelta(i, c.id, c.name, c.arguments)
                    for i, c in enumerate(r.tool_calls)],
    )


# -- streaming ------------------------------------------------------------------
async def _stream_batches(opening: contextlib.AbstractAsyncContextManager[StreamingResponse],
                          deployment: Deployment) -> AsyncIterator[DeltaBatch]:
    """The call `opening` makes, read: the deltas of each network read as one
    batch; the first delta alone, as soon as it is parsed. Deltas parsed before a
    failure are yielded before it is raised, as a stream of single events would
    have; a failure before the first delta is raised with nothing yielded, so the
    dispatcher can still fail over."""
    async with opening as resp:
        if resp.status != 200 or _is_json(resp.headers):
            # An error, or a server that ignored `stream` and answered whole.
            whole = _parsed(resp.status, resp.headers, await resp.read(), deployment)
            yield DeltaBatch([_delta_from_response(whole)], final=True)
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
            raise _malformed(self.deployment, "a stream chunk that is not a JSON object")
        d = self.deployment
        try:
            if "error" in chunk:
                raise _error_from_body(_stream_error_status(chunk["error"]), {}, chunk, d)
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
            raise _malformed(self.deployment, f"a stream chunk that is not JSON: "
                                              f"{text[:200]!r}") from None


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def plain_text(chunk: Any) -> str | None:
    """The text of a chunk that holds text and nothing else (one choice, index 0,
    a delta of only `content`, no finish reason, logprobs, usage or error), else None.
    Nearly every event of a stream after the first is one: this is the short
    way `chunk_delta` would take, with nothing built on the way."""
    if chunk.__class__ is not dict:
        return None
    choices = chunk.get("choices")
    if (choices.__class__ is not list or len(choices) != 1 or chunk.get("usage")
            or "x_groq" in chunk or "error" in chunk):
        return None
    choice = choices[0]
    if choice.__class__ is not dict:
        return None
    delta = choice.get("delta")
    if (delta.__class__ is not dict or len(delta) != 1 or choice.get("finish_reason")
            or choice.get("index", 0) != 0 or choice.get("logprobs") or "annotations" in choice):
        return None
    text = delta.get("content")
    return text if text and text.__class__ is str else None


def chunk_delta(chunk: dict[str, Any], *, first: bool) -> StreamDelta | None:
    """One chat.completion.chunk -> StreamDelta; None when it says nothing new.
    Runs for every streamed event, so the usual chunk (one choice whose delta
    holds only content) takes a short path, and the delta is built in one call."""
    choices = chunk.get("choices")
    choice = None
    if choices:
        choice = choices[0]
        if choice.get("index", 0) != 0:
            choice = next((c for c in choices if c.get("index", 0) == 0), None)
    raw_usage = chunk.get("usage") or (_groq_usage(chunk) if "x_groq" in chunk else None)
    usage = parse_usage(raw_usage) if raw_usage is not None else None
    text = reasoning = finish = logprobs = refusal = annotations = None
    calls: list[ToolCallDelta] = []
    if choice is not None:
        delta = choice.get("delta") or {}
        text = delta.get("content") or None
        if len(delta) > 1 or text is None:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or None
            refusal = delta.get("refusal") or None
            if "tool_calls" in delta or "function_call" in delta:  # no call for most events
                calls = _delta_calls(delta)
        if "annotations" in delta or "annotations" in choice:
            annotations = _annotations(delta, choice)
        reason = choice.get("finish_reason")
        if reason:
            finish = map_finish(reason)
        raw_logprobs = choice.get("logprobs")
        if raw_logprobs and isinstance(raw_logprobs, dict):
            logprobs = raw_logprobs
    if (first or reasoning is not None or text or calls or finish or usage is not None
            or logprobs is not None or refusal is not None or annotations is not None):
        # Positional (text, tool_calls, finish_reason, usage) and the rest set: a
        # class call's keyword arguments go through a dict, on nearly every event;
        # a test pins the field order.
        out = StreamDelta(text, calls, finish, usage)
        out.reasoning = reasoning
        out.logprobs = logprobs
        out.annotations = annotations
        if refusal is not None:
            out.refusal = str(refusal)
        if first:
            _identify(out, chunk)
        return out
    return None


def _annotations(delta: dict[str, Any], choice: dict[str, Any]) -> list[Any] | None:
    """A chunk's URL citations: on its delta, or on its choice (OpenRouter's place)."""
    found = delta.get("annotations") or choice.get("annotations")
    return found if found and found.__class__ is list else None


def _identify(first: StreamDelta, chunk: dict[str, Any]) -> None:
    """What the stream's first chunk says of the answer: its id and model, and of
    the backend that gives it."""
    first.id = chunk.get("id") or None
    first.model = chunk.get("model") or None
    fingerprint, tier = chunk.get("system_fingerprint"), chunk.get("service_tier")
    if fingerprint and fingerprint.__class__ is str:
        first.system_fingerprint = fingerprint
    if tier and tier.__class__ is str:
        first.service_tier = tier


def _delta_calls(delta: dict[str, Any]) -> list[ToolCallDelta]:
    raw_calls = delta.get("tool_calls")
    if raw_calls:
        return [_tool_call_delta(tc, i) for i, tc in enumerate(raw_calls)]
    legacy = delta.get("function_call")
    if legacy:
        return [ToolCallDelta(0, None, legacy.get("name"), legacy.get("arguments") or "")]
    return []


def _groq_usage(chunk: dict[str, Any]) -> Any:
    # Groq puts stream usage under x_groq instead of the top level.
    extra = chunk.get("x_groq")
    return extra.get("usage") if isinstance(extra, dict) else None


def _tool_call_delta(raw: dict[str, Any], position: int) -> ToolCallDelta:
    fn = raw.get("function") or {}
    args = fn.get("arguments")
    if args is not None and not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return ToolCallDelta(index=int(raw.get("index", position)), id=raw.get("id") or None,
                         name=fn.get("name") or None, arguments=args or "")


def _stream_error_status(error: Any) -> int:
    if not isinstance(error, dict):
        return 500
    for key in ("status", "code"):
        if isinstance(error.get(key), int) and error[key] >= 400:
            return int(error[key])
    for key in ("code", "type"):
        status = _STREAM_ERROR_STATUS.get(str(error.get(key)))
        if status:
            return status
    return 500


# -- errors ---------------------------------------------------------------------
def _decode_answer(status: int, headers: Mapping[str, str], raw: bytes,
                   deployment: Deployment) -> dict[str, Any]:
    """The JSON of a successful answer, or the mapped error raised."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    if status == 200 and isinstance(data, dict) and "error" not in data:
        return data
    if status == 200 and data is None:
        raise _malformed(deployment, f"an answer that is not JSON: {raw[:200]!r}")
    if status == 200:
        status = _stream_error_status(data.get("error") if isinstance(data, dict) else None)
    raise _error_from_body(status, headers, data if data is not None else raw, deployment)


def _error_from_body(status: int, headers: Mapping[str, str], body: Any,
                     deployment: Deployment) -> ProviderError:
    key = deployment.key()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        text, code, kind = (str(error.get("message") or ""), str(error.get("code") or ""),
                            str(error.get("type") or ""))
    else:
        text = str(error) if error is not None else _short(body)
        code = kind = ""
    cls = classify_error(status, code, kind, text)
    if cls is RateLimited and "insufficient_quota" in (code, kind):
        text += " (This is the account's quota or billing limit, not a short rate limit.)"
    message = upstream_error_text(deployment.provider, deployment.name, status, code, text)
    return cls(redact(message, key), provider=deployment.provider, deployment=deployment.name,
               status=status, retry_after=retry_after(status, headers),
               body=_redacted_body(body, key))


def classify_error(status: int, code: str, kind: str, text: str) -> type[ProviderError]:
    """OpenAI's own recognisers first, then the generic status table."""
    lowered = text.lower()
    if code in _CONTEXT_CODES or (status in (400, 413, 422)
                                  and any(t in lowered for t in _CONTEXT_TEXTS)):
        return ContextWindowExceeded
    if code in _FILTER_CODES or kind in _FILTER_CODES or (
            status == 400 and any(t in lowered for t in _FILTER_TEXTS)):
        return ContentFiltered
    return error_for_status(status)


def retry_after(status: int, headers: Mapping[str, str]) -> float | None:
    """Retry-After first; on a 429, else OpenAI's x-ratelimit-reset-* headers (the
    reset of whichever limit is exhausted, or the later of the two)."""
    seconds = parse_retry_after(headers)
    if seconds is not None or status != 429:
        return seconds
    resets = {}
    for kind in ("requests", "tokens"):
        value = parse_duration(headers.get(f"x-ratelimit-reset-{kind}") or "")
        if value is not None:
            resets[kind] = value
    exhausted = [v for k, v in resets.items()
                 if (headers.get(f"x-ratelimit-remaining-{k}") or "").strip() == "0"]
    candidates = exhausted or list(resets.values())
    return max(candidates) if candidates else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration as OpenAI writes them ("1s", "6m0s", "20ms")."""
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def _redacted_body(body: Any, key: str | None) -> Any:
    if isinstance(body, bytes):
        return redact(body[:2000].decode("utf-8", errors="replace"), key)
    return redact_json(body, key)


def _short(body: Any) -> str:
    if isinstance(body, bytes):
        return body[:500].decode("utf-8", errors="replace") or "(empty body)"
    return str(body)[:500]


def _malformed(deployment: Deployment, what: str) -> UpstreamServerError:
    return UpstreamServerError(
        redact(f"{deployment.provider} sent {what} (deployment {deployment.name!r})",
               deployment.key()),
        provider=deployment.provider, deployment=deployment.name)


# -- plumbing -------------------------------------------------------------------
def _url(deployment: Deployment, path: str) -> str:
    base = deployment.api_base or resolve_base_url(deployment.provider, None, os.environ)
    return base.rstrip("/") + path


def _headers(deployment: Deployment, *, stream: bool) -> dict[str, str]:
    # A whole answer needs no Accept of its own: aiohttp's */* serves, and each
    # header is work on every call. A stream says what it expects.
    headers = ({"content-type": "application/json", "accept": "text/event-stream"} if stream
               else {"content-type": "application/json"})
    key = deployment.key()
    if key:
        headers["authorization"] = f"Bearer {key}"
    organization = deployment.extra.get("organization")
    if organization:
        headers["openai-organization"] = str(organization)
    return with_extra_headers(headers, deployment)


def _labels(deployment: Deployment) -> Labels:
    return Labels(provider=deployment.provider, deployment=deployment.name)


def _is_json(headers: Mapping[str, str]) -> bool:
    return (headers.get("content-type") or "").startswith("application/json")
