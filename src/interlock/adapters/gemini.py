"""The Gemini API adapter: generateContent, streamGenerateContent and
batchEmbedContents (v1beta).

Translates a neutral `ChatRequest` into a GenerateContentRequest, the answer
back into a `ChatResponse` or `StreamDelta`s, and Google's error bodies
(`{"error": {"code", "message", "status", "details"}}`) into `interlock.errors`.

Choices worth knowing:
- The key travels in the `x-goog-api-key` header, never in the URL, so a logged
  URL cannot leak it.
- Tool parameter schemas go in `parameters` (an OpenAPI subset every Gemini model
  accepts), cleaned of the JSON Schema keys it rejects; it takes an enum of
  strings only, so other enums become a note in the description. A `json_schema`
  response format goes in `responseJsonSchema`, which takes JSON Schema as it is
  (`additionalProperties`, `$ref`, type lists), so strict OpenAI schemas pass
  unchanged instead of through a lossy conversion.
- http(s) image URLs become `fileData` parts with a media type guessed from the
  file extension (image/jpeg when unknown); Gemini fetches them itself, and
  older models accept only Files API URIs there.
- Tool call ids: Gemini's own `id` when it sends one, else `call_<n>_<hash>`
  (the hash over the answer's `responseId` and the call), the same for a
  streamed and a whole answer, and new in each answer.
- Gemini 3 models want the `thoughtSignature` of earlier function calls back. A
  call's signature travels with it (to clients as Google's OpenAI-compatible
  `extra_content.google.thought_signature`); a replayed call without one (from
  another provider, or a client that dropped it) carries Google's documented
  `skip_thought_signature_validator` placeholder.
- With `n` > 1 Gemini generates several candidates; only the first is returned.
- OpenAI's `logprobs` and `top_logprobs` become `responseLogprobs` and `logprobs`
  (the number of alternatives a token gets), and a candidate's `logprobsResult`
  comes back in OpenAI's `logprobs` shape, chunk by chunk when streamed.
- OpenAI's `reasoning_effort` becomes a `thinkingConfig` (`interlock.reasoning_effort`):
  `thinkingLevel` for Gemini 3 and later, `thinkingBudget` before them; an
  explicit `thinking_config` wins.
- OpenAI's `web_search_options` turns on grounding with Google Search
  (`googleSearch`; its context size and location have no Gemini counterpart),
  and the grounding's supported segments come back as OpenAI `url_citation`
  annotations (byte offsets turned into characters); the searches billed
  (each query from Gemini 3 on, the grounded prompt before) are
  `Usage.web_searches`.
- Embeddings go through batchEmbedContents, one request per input and up to
  `EMBED_BATCH` inputs per call. Its answer carries no token count; usage is
  estimated.

Imports: orjson, the standard library, `types`, `errors`, `catalog`, `tokens`,
`adapters.base`, `adapters.gemini_schema`, `adapters.http`, `adapters.registry`,
`reasoning_effort`, `web_search`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import orjson

from interlock.adapters.base import (
    answer_shape,
    checked_delta,
    checked_response,
    iter_sse,
    parse_retry_after,
    upstream_error_text,
    with_call_headers,
    with_extra_headers,
)
from interlock.adapters.gemini_schema import clean_schema
from interlock.adapters.http import HttpClient, Labels, Timeouts
from interlock.adapters.registry import API_KEY_ENV, resolve_base_url
from interlock.catalog import Deployment
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Timeout,
    UnsupportedParameter,
    UpstreamServerError,
    error_for_status,
    redact,
    redact_json,
)
from interlock.reasoning_effort import BUDGETS, requested_effort
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
    StreamDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from interlock.web_search import requested_web_search, url_citation

PROVIDER = "gemini"
SKIP_SIGNATURE = "skip_thought_signature_validator"
# batchEmbedContents refuses more requests than this in one call.
EMBED_BATCH = 100

# OpenAI extras with a generationConfig twin, and Gemini-native ones passed through.
_EXTRA_TO_CONFIG = {
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "top_k": "topK",
    "thinking_config": "thinkingConfig",
    # OpenAI's logprobs: true asks for them; top_logprobs is how many alternatives
    # a token gets, which Gemini calls `logprobs`.
    "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
}
_EXTRA_TO_BODY = {"safety_settings": "safetySettings"}
# Gemini always reports usage, so asking for it changes nothing.
_IGNORED_EXTRA = frozenset({"stream_options"})
# OpenAI extras translated where the body is built, not passed on.
_READ_ELSEWHERE = frozenset({"reasoning_effort", "web_search_options"})

_SAFETY_FINISH = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})

# The major version in a model id ("gemini-2.5-pro" -> 2, "gemini-3-pro-preview" -> 3).
_GEMINI_VERSION = re.compile(r"gemini-(\d+)")

_CONTEXT_WINDOW = re.compile(
    r"exceeds the maximum number of tokens|input token count.{0,80}exceeds", re.IGNORECASE)
_BAD_KEY = re.compile(r"API[_ ]key (not valid|not found|expired|invalid)", re.IGNORECASE)

_STATUS_TO_ERROR: dict[str, type[ProviderError]] = {
    "UNAUTHENTICATED": AuthenticationFailed,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAVAILABLE": Overloaded,
    "INTERNAL": UpstreamServerError,
    "DEADLINE_EXCEEDED": Timeout,
}


# -- the call ------------------------------------------------------------------
@dataclass(slots=True)
class _Call:
    url: str
    # Kept out of the repr with the key: they carry it (x-goog-api-key), and a
    # deployment's extra headers may carry other secrets.
    headers: dict[str, str] = field(repr=False)
    body: bytes
    labels: Labels
    model: str
    key: str | None = field(repr=False)


class GeminiAdapter:
    """Gemini API (Google AI Studio keys) over the shared HttpClient."""

    provider: ClassVar[str] = PROVIDER
    keeps_time: ClassVar[bool] = True  # every call is bounded by adapters.http

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        call = _prepare(request, deployment, stream=False)
        data = await self._post(call, timeouts)
        with answer_shape(PROVIDER, deployment.name):
            return checked_response(parse_response(data, call))

    async def _post(self, call: _Call, timeouts: Timeouts) -> dict[str, Any]:
        """The JSON object a non-streamed call answers with; errors raised typed."""
        resp = await self._http.post(call.url, headers=call.headers, body=call.body,
                                     timeouts=timeouts, labels=call.labels)
        with answer_shape(PROVIDER, call.labels.deployment):
            if resp.status >= 400:
                raise error_from_response(resp.status, resp.headers, resp.body, call)
        data = _load_json(resp.body, call)
        if not isinstance(data, dict):
            raise _malformed(call, "the response is not a JSON object")
        return data

    async def stream(self, request: ChatRequest, deployment: Deployment,
                     timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        call = _prepare(request, deployment, stream=True)
        async with self._http.stream(call.url, headers=call.headers, body=call.body,
                                     timeouts=timeouts, labels=call.labels) as resp:
            if resp.status >= 400:
                body = await resp.read()
                with answer_shape(PROVIDER, deployment.name):
                    raise error_from_response(resp.status, resp.headers, body, call)
            state = _StreamState(call)
            if "event-stream" in resp.headers.get("content-type", ""):
                async for event in iter_sse(resp.line_batches()):
                    for delta in _fed(state, _load_json(event.data, call)):
                        yield delta
            else:
                # A proxy (or the API without alt=sse) may answer with one JSON
                # array or object instead of events; same chunks, all at once.
                whole = _load_json(await resp.read(), call)
                for chunk in whole if isinstance(whole, list) else [whole]:
                    for delta in _fed(state, chunk):
                        yield delta
            with answer_shape(PROVIDER, deployment.name):
                last = checked_delta(state.finish())
            yield last

    async def embeddings(self, request: EmbeddingRequest, deployment: Deployment,
                         timeouts: Timeouts) -> EmbeddingResult:
        """One vector per input, in input order, and the tokens billed.

        The API takes at most `EMBED_BATCH` inputs a call, and OpenAI clients
        send up to 2048, so longer lists go in consecutive calls."""
        vectors: list[list[float]] = []
        tokens = 0
        # One deadline for all the calls: the attempt's timeout bounds the whole.
        deadline = None if timeouts.total is None else time.monotonic() + timeouts.total
        for start in range(0, len(request.inputs), EMBED_BATCH):
            part = dataclasses.replace(request,
                                       inputs=request.inputs[start:start + EMBED_BATCH])
            if deadline is not None and start:
                timeouts = dataclasses.replace(
                    timeouts, total=max(0.001, deadline - time.monotonic()))
            result = await self._embed_batch(part, deployment, timeouts)
            vectors += result.vectors
            tokens += result.usage.input_tokens
        return EmbeddingResult(vectors, Usage(input_tokens=tokens))

    async def _embed_batch(self, request: EmbeddingRequest, deployment: Deployment,
                           timeouts: Timeouts) -> EmbeddingResult:
        call = _new_call(deployment, "batchEmbedContents", request.routing,
                         lambda model: build_embedding_body(request, deployment, model))
        data = await self._post(call, timeouts)
        with answer_shape(PROVIDER, deployment.name):
            return parse_embeddings(data, request.inputs, call)


def _prepare(request: ChatRequest, deployment: Deployment, *, stream: bool) -> _Call:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return _new_call(deployment, method, request, lambda model: build_body(request, deployment))


def _new_call(deployment: Deployment, method: str, request: ChatRequest,
              build: Callable[[str], dict[str, Any]]) -> _Call:
    """A call to `models/{model}:{method}` for `request` (whose `extra_headers` go
    with it); `build` makes the body from the bare model name, after the key
    check, so a keyless call fails on the key first."""
    key = deployment.key() or _key_from_env(os.environ)
    labels = Labels(PROVIDER, deployment.name)
    if not key:
        raise AuthenticationFailed(
            f"No API key for Gemini deployment {deployment.name!r}: set api_key, or "
            f"{' or '.join(API_KEY_ENV[PROVIDER])}.",
            provider=PROVIDER, deployment=deployment.name)
    model = deployment.model.removeprefix("models/")
    body = build(model)
    headers = with_call_headers(with_extra_headers(
        {"content-type": "application/json", "x-goog-api-key": key}, deployment), request)
    return _Call(url=_url(deployment, model, method), headers=headers,
                 body=orjson.dumps(body), labels=labels, model=model, key=key)


def _key_from_env(environ: Mapping[str, str]) -> str | None:
    return next((environ[n] for n in API_KEY_ENV[PROVIDER] if environ.get(n)), None)


def _url(deployment: Deployment, model: str, method: str) -> str:
    """The URL of `method` (with its query, if any) on `model`."""
    base = deployment.api_base or resolve_base_url(PROVIDER, None, os.environ)
    base = base.rstrip("/")
    if not re.search(r"/v1(beta|alpha)?$", base):
        base += "/v1beta"
    return f"{base}/models/{quote(model, safe='-._')}:{method}"


# -- request translation ---------------------------------------------------------
def build_body(request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
    """The GenerateContentRequest JSON for a neutral request (no network, no key)."""
    drop = bool(request.drop_params or deployment.drop_params)
    body: dict[str, Any] = {"contents": _contents(request.messages, deployment.model, drop)}
    system = [{"text": m.text} for m in request.messages if m.role == "system" and m.text]
    if system and not body["contents"]:
        # Only system messages (OpenAI answers those): Gemini refuses a request
        # without contents, so the instruction goes as the user's turn.
        body["contents"] = [{"role": "user", "parts": system}]
    elif system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
    tool_config = _tool_config(request.tool_choice)
    if tool_config:
        body["toolConfig"] = tool_config
    if request.parallel_tool_calls is False and not drop:
        raise UnsupportedParameter("parallel_tool_calls", PROVIDER,
                                   "Gemini cannot be limited to one call per turn.")
    if requested_web_search(request) is not None:
        # Grounding with Google Search; Gemini takes no context size or location.
        body.setdefault("tools", []).append({"googleSearch": {}})
    config = _generation_config(request)
    _apply_extras(request.extra, config, body, drop)
    _apply_effort(request, config, deployment.model)
    if config:
        body["generationConfig"] = config
    return body


def _contents(messages: list[Message], model: str, drop: bool) -> list[dict[str, Any]]:
    # Which function each call id names, as of the message being read: a result
    # answers the latest call with its id before it (some backends reuse ids
    # such as call_0 in every turn, and a later turn's call must not rename it).
    call_names: dict[str, str] = {}
    sign = _needs_signature(model)
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "model" if message.role == "assistant" else "user"
        for tc in message.tool_calls:
            call_names[tc.id] = tc.name
        parts = _message_parts(message, call_names, sign, drop)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _needs_signature(model: str) -> bool:
    found = re.match(r"(?:models/)?gemini-(\d+)", model)
    if found:
        return int(found.group(1)) >= 3
    # Unversioned aliases (gemini-flash-latest) may point at a Gemini 3 model.
    return model.removeprefix("models/").startswith("gemini-") and model.endswith("-latest")


def _message_parts(message: Message, call_names: dict[str, str],
                   sign: bool, drop: bool) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [_function_response(message, call_names, drop)]
    parts = [_content_part(p) for p in message.parts if not _is_empty(p)]
    for i, tc in enumerate(message.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": tc.name, "args": _args(tc)}}
        if tc.thought_signature:
            part["thoughtSignature"] = tc.thought_signature
        elif sign and i == 0:
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _is_empty(part: Part) -> bool:
    return isinstance(part, TextPart) and not part.text


def _content_part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.is_data_url:
        try:
            media_type, data = part.data_url_parts()
        except ValueError as exc:
            raise InvalidRequest(f"Bad image data URL: {exc}", param="messages") from None
        return {"inlineData": {"mimeType": media_type, "data": data}}
    return {"fileData": {"mimeType": _guess_media_type(part), "fileUri": part.url}}


def _guess_media_type(part: ImagePart) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(part.url).path)
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


def _args(tc: ToolCall) -> dict[str, Any]:
    if not tc.arguments.strip():
        return {}
    try:
        value = orjson.loads(tc.arguments)
    except orjson.JSONDecodeError:
        # A replayed call whose arguments never parsed: keep the text visible.
        return {"arguments": tc.arguments}
    return value if isinstance(value, dict) else {"value": value}


def _function_response(message: Message, call_names: dict[str, str],
                       drop: bool) -> dict[str, Any]:
    name = call_names.get(message.tool_call_id or "") or message.name
    if not name:
        raise InvalidRequest(
            f"The tool message for tool_call_id {message.tool_call_id!r} answers no earlier "
            "assistant tool call; Gemini needs the function's name.", param="messages")
    if message.has_images and not drop:
        # A functionResponse carries the result's text here; an image in it would
        # be lost without a word, and the model would answer as if it had seen it.
        raise UnsupportedParameter(
            "messages", PROVIDER,
            f"Gemini takes a tool result's text only, and the result for tool call "
            f"{message.tool_call_id!r} holds an image: send the image in a user message "
            "(drop_params sends the result's text alone).")
    text = message.text
    try:
        value: Any = orjson.loads(text) if text.strip() else ""
    except orjson.JSONDecodeError:
        value = text
    response = value if isinstance(value, dict) else {"result": value}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: ToolSpec) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    if tool.parameters:
        params = clean_schema(tool.parameters)
        # An object without properties is rejected; such a function takes no arguments.
        if params.get("properties") or params.get("type") not in (None, "object", "OBJECT"):
            decl["parameters"] = params
    return decl


def _tool_config(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if not name:
            raise InvalidRequest("tool_choice names no function", param="tool_choice")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice)
    if mode is None:
        raise InvalidRequest(f"Unknown tool_choice {choice!r}", param="tool_choice")
    return {"functionCallingConfig": {"mode": mode}}


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    pairs = (
        ("temperature", request.temperature), ("topP", request.top_p),
        ("maxOutputTokens", request.max_tokens), ("stopSequences", request.stop or None),
        ("candidateCount", request.n),
    )
    config: dict[str, Any] = {k: v for k, v in pairs if v is not None}
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.json_schema:
            schema = fmt.json_schema
            # OpenAI's {"name", "schema", "strict"} wrapper, or the schema itself.
            wrapped = schema.get("schema")
            inner: dict[str, Any] = wrapped if isinstance(wrapped, dict) else schema
            config["responseJsonSchema"] = {k: v for k, v in inner.items() if k != "$schema"}
    return config


def _apply_effort(request: ChatRequest, config: dict[str, Any], model: str) -> None:
    """OpenAI's reasoning_effort as a thinkingConfig (`interlock.reasoning_effort`): a
    level for Gemini 3 and later, which think by level ("none" asks for the
    least, "minimal"; "xhigh" for the most, "high"), a budget for the models
    before them ("none": 0, thinking off). A `thinking_config` given in Gemini's
    own terms wins. A level or budget a model does not take is its 400 to give."""
    effort = requested_effort(request)
    if effort is None or "thinkingConfig" in config:
        return
    if _from_gemini_3(model):
        config["thinkingConfig"] = {
            "thinkingLevel": {"none": "minimal", "xhigh": "high"}.get(effort, effort)}
    else:
        config["thinkingConfig"] = {"thinkingBudget": BUDGETS.get(effort, 0)}


def _from_gemini_3(model: str) -> bool:
    """Gemini 3 and later: they think by level, and bill grounding per query."""
    version = _GEMINI_VERSION.search(model)
    return version is not None and int(version.group(1)) >= 3


def _apply_extras(extra: dict[str, Any], config: dict[str, Any], body: dict[str, Any],
                  drop: bool) -> None:
    for name, value in extra.items():
        if value is None or (name == "logprobs" and value is False):
            continue  # an OpenAI client's ways of not asking
        if name in _EXTRA_TO_CONFIG:
            config[_EXTRA_TO_CONFIG[name]] = value
        elif name in _EXTRA_TO_BODY:
            body[_EXTRA_TO_BODY[name]] = value
        elif name in _IGNORED_EXTRA or name in _READ_ELSEWHERE or value is None \
                or value is False or drop:
            continue
        else:
            raise UnsupportedParameter(name, PROVIDER)


def build_embedding_body(request: EmbeddingRequest, deployment: Deployment,
                         model: str) -> dict[str, Any]:
    """The BatchEmbedContentsRequest JSON: one EmbedContentRequest per input.

    `routing.user` is left out: Gemini has no field for it, and it only tags
    the call for abuse monitoring, so dropping it changes no answer."""
    drop = bool(request.routing.drop_params or deployment.drop_params)
    for name, value in request.extra.items():
        if value is None or value is False or drop:
            continue
        raise UnsupportedParameter(name, PROVIDER)
    one: dict[str, Any] = {"model": f"models/{model}"}
    if request.dimensions is not None:
        one["outputDimensionality"] = request.dimensions
    return {"requests": [{**one, "content": {"parts": [{"text": text}]}}
                         for text in request.inputs]}


# -- responses ------------------------------------------------------------------
def parse_response(data: dict[str, Any], call: _Call) -> ChatResponse:
    """A GenerateContentResponse as a neutral ChatResponse."""
    candidate = _first_candidate(data, call)
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    # Each text part by its index among the parts, with where it starts in the
    # answer's text (characters): grounding segments are placed within a part.
    text_parts: dict[int, tuple[int, str]] = {}
    at = 0
    response_id = data.get("responseId")
    for index, part in enumerate((candidate.get("content") or {}).get("parts") or []):
        kind, value = _read_part(part, len(calls), response_id)
        if kind == "call":
            calls.append(value)
        elif kind == "thought":
            reasoning.append(value)
        elif kind == "text":
            text.append(value)
            text_parts[index] = (at, value)
            at += len(value)
    grounding = candidate.get("groundingMetadata")
    usage = parse_usage(data.get("usageMetadata"))
    if grounding and usage is not None:
        usage.web_searches = _searches_billed(grounding, call.model)
    return ChatResponse(
        id=str(data.get("responseId") or _fallback_id()),
        model=str(data.get("modelVersion") or call.model),
        content="".join(text) if text or not calls else None,
        tool_calls=calls,
        finish_reason=map_finish(candidate.get("finishReason"), bool(calls)),
        usage=usage,
        reasoning="".join(reasoning) or None,
        logprobs=openai_logprobs(candidate.get("logprobsResult")),
        annotations=grounded_citations(grounding, "".join(text), text_parts) or None,
    )


def grounded_citations(grounding: Any, text: str,
                       parts: Mapping[int, tuple[int, str]] | None = None
                       ) -> list[dict[str, Any]]:
    """Gemini's grounding (Google Search) as OpenAI url_citation annotations:
    each supported segment of the answer, once for every web source it cites.

    A segment's offsets are UTF-8 bytes within the part `partIndex` names;
    OpenAI's are characters within the whole answer. `parts` gives each text
    part's start in `text` and its own text. A segment naming no part (the
    usual answer of one text part, where the index 0 goes unsaid), or one not
    in `parts` (a stream's chunks, whose grounding is placed over the text so
    far), is placed over `text` as a whole."""
    if not isinstance(grounding, dict):
        return []
    sources = grounding.get("groundingChunks") or []
    # Each part used so far: (its start in `text`, its UTF-8 bytes); -1 is `text`.
    encoded = {-1: (0, text.encode())}
    found: list[dict[str, Any]] = []
    for support in grounding.get("groundingSupports") or []:
        segment = support.get("segment") or {}
        index = segment.get("partIndex")
        if parts is None or not isinstance(index, int) or index not in parts:
            index = -1
        elif index not in encoded:
            encoded[index] = (parts[index][0], parts[index][1].encode())
        base, within = encoded[index]
        start = base + len(within[:int(segment.get("startIndex") or 0)].decode(errors="ignore"))
        end = base + len(within[:int(segment.get("endIndex") or 0)].decode(errors="ignore"))
        for i in support.get("groundingChunkIndices") or []:
            web = (sources[i].get("web") if 0 <= i < len(sources) else None) or {}
            if web.get("uri"):
                found.append(url_citation(start, end, web["uri"], web.get("title") or ""))
    return found


def _searches_billed(grounding: dict[str, Any], model: str) -> int:
    """What a grounded answer is billed for: each search query from Gemini 3 on,
    the grounded prompt as one before it."""
    queries = grounding.get("webSearchQueries") or []
    if not queries:
        return 0
    return len(queries) if _from_gemini_3(model) else 1


def openai_logprobs(result: Any) -> dict[str, Any] | None:
    """A candidate's `logprobsResult` in OpenAI's `choices[].logprobs` shape: one
    entry per chosen token, with the alternatives Gemini ranked at that step."""
    if not isinstance(result, dict) or not result.get("chosenCandidates"):
        return None
    steps = result.get("topCandidates") or []
    content = []
    for i, chosen in enumerate(result["chosenCandidates"]):
        top = (steps[i].get("candidates") or []) if i < len(steps) else []
        entry = _token_logprob(chosen)
        entry["top_logprobs"] = [_token_logprob(c) for c in top]
        content.append(entry)
    return {"content": content, "refusal": None}


def _token_logprob(candidate: dict[str, Any]) -> dict[str, Any]:
    token = str(candidate.get("token") or "")
    return {"token": token, "logprob": float(candidate.get("logProbability") or 0.0),
            "bytes": list(token.encode())}


def _first_candidate(data: dict[str, Any], call: _Call) -> dict[str, Any]:
    if "error" in data:
        raise _error_from_object(data["error"], {}, call)
    candidates = data.get("candidates") or []
    if not candidates:
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            raise ContentFiltered(
                f"gemini blocked the prompt for deployment {call.labels.deployment!r} "
                f"({blocked}).", provider=PROVIDER, deployment=call.labels.deployment,
                status=200)
        raise _malformed(call, "the response has no candidates")
    first = candidates[0]
    if not isinstance(first, dict):
        raise _malformed(call, "a candidate is not an object")
    return first


def _read_part(part: Any, call_index: int, response_id: Any) -> tuple[str, Any]:
    """("text" | "thought" | "call" | "other", value) for one response part."""
    if not isinstance(part, dict):
        return "other", None
    if "functionCall" in part:
        return "call", _tool_call(part["functionCall"], call_index, response_id,
                                  part.get("thoughtSignature"))
    if "text" in part:
        return ("thought" if part.get("thought") else "text"), str(part["text"])
    return "other", None


def _tool_call(fc: dict[str, Any], index: int, response_id: Any,
               signature: Any = None) -> ToolCall:
    name = str(fc.get("name", ""))
    arguments = orjson.dumps(fc.get("args") or {}).decode()
    call_id = fc.get("id") or _call_id(index, name, arguments, response_id)
    return ToolCall(id=str(call_id), name=name, arguments=arguments,
                    thought_signature=str(signature) if signature else None)


def _call_id(index: int, name: str, arguments: str, response_id: Any) -> str:
    # The answer's responseId (a stream's chunks all carry it) makes the id its
    # own: the same call made again in a later turn must not repeat an id, which
    # clients pair results by and Anthropic refuses (on a fallback there).
    # Without one, the call alone, as before.
    seed = f"{response_id}\0{name}\0{arguments}" if response_id else f"{name}\0{arguments}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10]
    return f"call_{index}_{digest}"


def _fallback_id() -> str:
    return f"gemini-{uuid.uuid4().hex}"


def map_finish(reason: str | None, has_calls: bool) -> FinishReason | None:
    if reason is None:
        return "tool_calls" if has_calls else None
    if reason == "STOP":
        return "tool_calls" if has_calls else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _SAFETY_FINISH:
        return "content_filter"
    # MALFORMED_FUNCTION_CALL, OTHER, LANGUAGE, ...: the answer is not usable.
    return "error"


def parse_usage(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=int(meta.get("promptTokenCount") or 0)
        + int(meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def parse_embeddings(data: dict[str, Any], inputs: list[str], call: _Call) -> EmbeddingResult:
    """A BatchEmbedContentsResponse as vectors in input order, with usage."""
    if "error" in data:
        raise _error_from_object(data["error"], {}, call)
    rows = data.get("embeddings")
    if not isinstance(rows, list):
        raise _malformed(call, "the response has no embeddings")
    if len(rows) != len(inputs):
        raise _malformed(call, f"{len(rows)} embeddings for {len(inputs)} inputs")
    vectors = [_vector(row, call) for row in rows]
    meta = data.get("usageMetadata")
    counted = meta.get("promptTokenCount") if isinstance(meta, dict) else None
    # The API sends no count today; take one if it ever does, else estimate so
    # that the ledger still prices the call.
    tokens = _int(counted, 0) or estimate_inputs_tokens(inputs)
    return EmbeddingResult(vectors, Usage(input_tokens=tokens))


def _vector(row: Any, call: _Call) -> list[float]:
    values = row.get("values") if isinstance(row, dict) else None
    if not isinstance(values, list) or not values:
        raise _malformed(call, "an embedding has no values")
    # bool is an int subclass; a true/false in a vector is a broken answer, not 1.0.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise _malformed(call, "an embedding holds a value that is not a number")
    return [float(v) for v in values]


def _fed(state: _StreamState, chunk: Any) -> list[StreamDelta]:
    """The deltas of one streamed chunk, read as `answer_shape` reads an answer."""
    with answer_shape(PROVIDER, state.deployment):
        return [checked_delta(delta) for delta in state.feed(chunk)]


class _StreamState:
    """Turns streamed GenerateContentResponse chunks into deltas."""

    def __init__(self, call: _Call) -> None:
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
            raise _malformed(self._call, "a stream chunk is not a JSON object")
        if chunk.get("usageMetadata") is not None:
            self._usage = parse_usage(chunk["usageMetadata"])
        if not chunk.get("candidates") and "error" not in chunk \
                and not (chunk.get("promptFeedback") or {}).get("blockReason"):
            return []  # a usage-only chunk
        candidate = _first_candidate(chunk, self._call)
        self._finish = candidate.get("finishReason") or self._finish
        delta = StreamDelta()
        if not self._started:
            self._started = True
            delta.id = str(chunk.get("responseId") or _fallback_id())
            delta.model = str(chunk.get("modelVersion") or self._call.model)
        self._response_id = self._response_id or chunk.get("responseId")
        texts, thoughts = [], []
        for part in (candidate.get("content") or {}).get("parts") or []:
            kind, value = _read_part(part, self._calls, self._response_id)
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
            self._searches = _searches_billed(grounding, self._call.model)
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


# -- errors ---------------------------------------------------------------------
def error_from_response(status: int, headers: Mapping[str, str], body: bytes,
                        call: _Call) -> ProviderError:
    """The typed error for a non-2xx answer (Google's body, or whatever came)."""
    try:
        data: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # the JSON-array stream wraps errors too
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        text = body[:500].decode("utf-8", errors="replace").strip()
        err = {"code": status, "message": text or f"HTTP {status}"}
    err.setdefault("code", status)
    return _error_from_object(err, headers, call, status=status)


def _error_from_object(err: Any, headers: Mapping[str, str], call: _Call,
                       status: int | None = None) -> ProviderError:
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = status if status is not None else _int(err.get("code"), 500)
    grpc = str(err.get("status") or "")
    message = str(err.get("message") or "")
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    cls = classify(code, grpc, message, details)
    retry_after = _retry_delay(details)
    if retry_after is None:
        retry_after = parse_retry_after(headers)
    # Inside a 200 answer the error object's own code stands where the HTTP status would.
    label = grpc if status is not None else f"{code} {grpc}".strip()
    text = redact(upstream_error_text(PROVIDER, call.labels.deployment, status, label, message),
                  call.key)
    return cls(text, provider=PROVIDER, deployment=call.labels.deployment, status=code,
               retry_after=retry_after, body=redact_json(err, call.key))


def classify(status: int, grpc: str, message: str,
             details: Iterable[dict[str, Any]]) -> type[ProviderError]:
    """Which error a Gemini error body means; token limits and bad keys come as 400s."""
    if status in (400, 413) and _CONTEXT_WINDOW.search(message):
        return ContextWindowExceeded
    reasons = {str(d.get("reason", "")) for d in details}
    if status == 400 and ("API_KEY_INVALID" in reasons or _BAD_KEY.search(message)):
        return AuthenticationFailed
    if grpc in _STATUS_TO_ERROR:
        return _STATUS_TO_ERROR[grpc]
    if status == 400:
        return BadRequest
    return error_for_status(status)


def _retry_delay(details: Iterable[dict[str, Any]]) -> float | None:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            found = re.fullmatch(r"\s*([\d.]+)s\s*", str(delay)) if delay is not None else None
            if found:
                return float(found.group(1))
    return None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _load_json(raw: bytes | str, call: _Call) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _malformed(call, "it is not valid JSON") from None


def _malformed(call: _Call, why: str) -> UpstreamServerError:
    return UpstreamServerError(f"Gemini sent a malformed answer: {why}.", provider=PROVIDER,
                               deployment=call.labels.deployment)
