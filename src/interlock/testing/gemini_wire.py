"""The Gemini API wire format for the fake upstream (served under `/gemini`).

Routes: POST /v1beta/models/{model}:generateContent, POST
/v1beta/models/{model}:streamGenerateContent (SSE with `alt=sse`, else one
JSON array streamed piece by piece, as the real API does), POST
/v1beta/models/{model}:batchEmbedContents, GET /v1beta/models.
Answers take the real shapes: candidates with `content.role == "model"`,
`finishReason` and `index`; `usageMetadata`; `modelVersion`; `responseId`.
`Reply(annotations=[...])` (OpenAI url_citations) to a request with Google
Search grounding adds `groundingMetadata` (on the last chunk of a stream).
A request for JSON (`generationConfig.responseMimeType` "application/json")
with no scripted text gets JSON text: a value of its `responseJsonSchema` or
`responseSchema` (`testing.schema_instance`), or an object. A request that
forces a call (`toolConfig.functionCallingConfig.mode` "ANY") with nothing
scripted gets one `functionCall` part (one chunk of a stream), to the first
name in `allowedFunctionNames` the request declares (none given: the first
function declared; none of them declared: text), its args a value of the
function's parameters, finishReason "STOP".
Embeddings are `{"embeddings": [{"values": [...]}]}` and nothing else (the real
answer has no usage), with the OpenAI fake's vectors, so one text embeds alike
on both.
Error bodies are Google's `{"error": {"code", "message", "status", "details"}}`
with the texts the real API writes; a 429 says when to retry only there (a
`google.rpc.RetryInfo` detail's `retryDelay`), with no Retry-After header. A
safety fault is a blocked prompt (a 200 with `promptFeedback.blockReason` and no
candidates), the one chunk of a stream when the request streams. A request
field, generationConfig field, content or part field Google does not know is
its 400 "Unknown name" (`check_request`). Kept cheap: it serves load in
benchmarks.

Imports: the standard library, `testing.script`, `testing.wire`, `testing.openai_wire`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interlock.testing.openai_wire import embedding_for
from interlock.testing.script import Fault, Reply
from interlock.testing.wire import (
    ErrorAnswer,
    Forced,
    Route,
    chunks,
    forced_call,
    json_reply,
    logprobs_asked,
    token_alternatives,
)

_METHOD = re.compile(
    r"^/(v1|v1beta|v1alpha)/models/([^/:]+)"
    r":(generateContent|streamGenerateContent|batchEmbedContents)$")
_LIST = re.compile(r"^/(v1|v1beta|v1alpha)/models/?$")

_FINISH = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS",
           "content_filter": "SAFETY"}

# What a thinking model's first function call of a step carries (any opaque text).
THOUGHT_SIGNATURE = "c2ltdWxhdGVkIGdlbWluaSBzaWduYXR1cmU="
_HELP = "type.googleapis.com/google.rpc.Help"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

# status -> (gRPC status, Google's message)
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED",
          "Request had invalid authentication credentials. Expected OAuth 2 access token, "
          "login cookie or other valid authentication credential. See "
          "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED",
          "You exceeded your current quota, please check your plan and billing details. For "
          "more information on this error, head to: "
          "https://ai.google.dev/gemini-api/docs/rate-limits."),
    500: ("INTERNAL",
          "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

_NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). "
           "Please use API Key or other form of API consumer identity to call this API.")
_BAD_KEY = "API key not valid. Please pass a valid API key."
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
]
_MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash-lite")
# The real API's cap on one batchEmbedContents call.
MAX_EMBED_REQUESTS = 100


@dataclass(slots=True)
class GeminiRoute(Route):
    # Whether the call named its key in the `key` query parameter (the old way).
    key_in_query: str | None = None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class GeminiWire:
    provider = "gemini"
    prefix = "/gemini"
    # Gemini sends no Retry-After header: a 429 says when to retry in its body
    # (RetryInfo.retryDelay), so the fake's core must not add one.
    retry_after_header = False

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Route | None:
        if method == "POST":
            found = _METHOD.match(path)
            if found is None:
                return None
            model, key = found.group(2), query.get("key")
            if found.group(3) == "generateContent":
                return GeminiRoute("generate", model, False, key)
            if found.group(3) == "batchEmbedContents":
                return GeminiRoute("embeddings", model, False, key)
            sse = query.get("alt") == "sse"
            return GeminiRoute("stream_sse" if sse else "stream_json", model, True, key)
        if method == "GET" and _LIST.match(path):
            return GeminiRoute("models", "", False, query.get("key"))
        return None

    def check_request(self, route: Route, headers: Mapping[str, str],
                      body: Any) -> ErrorAnswer | None:
        """Google refuses a call without a key (403) or with an empty one (400),
        and a batch of embeddings over its size cap (400)."""
        key = headers.get("x-goog-api-key")
        if key is None and isinstance(route, GeminiRoute):
            key = route.key_in_query
        if key is None:
            return _error(403, "PERMISSION_DENIED", _NO_KEY)
        if not key.strip():
            return _bad_key()
        if route.endpoint == "embeddings" and len(_embed_requests(body)) > MAX_EMBED_REQUESTS:
            return _error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: at "
                          f"most {MAX_EMBED_REQUESTS} requests can be in one batch\n")
        unknown = (_unknown_field(body) if route.endpoint in ("generate", "stream_sse",
                                                               "stream_json") else None)
        if unknown is not None:
            name, where = unknown
            at = f" at '{where}'" if where else ""
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown "
                          f'name "{name}"{at}: Cannot find field.')
        return None

    def reply(self, route: Route, body: Any, reply: Reply) -> Any:
        if route.endpoint == "models":
            return {"models": [_model_entry(m) for m in _MODELS]}
        if route.endpoint == "embeddings":
            return {"embeddings": [_embedding(r) for r in _embed_requests(body)]}
        parts = ([{"text": reply.text}] if reply.text else []) + _call_parts(reply)
        response = self._response(route.model, parts or [{"text": ""}], reply, final=True)
        grounding = _grounding(body, reply)
        if grounding is not None:
            response["candidates"][0]["groundingMetadata"] = grounding
        asked = _logprobs_asked(body)
        if asked is not None and reply.text:
            response["candidates"][0]["logprobsResult"] = _logprobs_result(
                chunks(reply.text, reply.chunk_chars), 0, asked)
        return response

    def stream(self, route: Route, body: Any, reply: Reply) -> list[bytes]:
        pieces: list[list[dict[str, Any]]] = [
            [{"text": c}] for c in chunks(reply.text, reply.chunk_chars)
        ] if reply.text else []
        if reply.tool_calls:
            pieces.append(_call_parts(reply))  # Gemini sends whole calls in one chunk
        pieces = pieces or [[{"text": ""}]]
        response_id = _response_id()
        payloads = [
            self._response(route.model, parts, reply, final=i == len(pieces) - 1,
                           response_id=response_id)
            for i, parts in enumerate(pieces)
        ]
        grounding = _grounding(body, reply)
        if grounding is not None:  # with the last chunk, as Gemini sends it
            payloads[-1]["candidates"][0]["groundingMetadata"] = grounding
        asked = _logprobs_asked(body)
        if asked is not None:
            # Each chunk carries the logprobs of its own tokens.
            for i, (parts, payload) in enumerate(zip(pieces, payloads, strict=True)):
                if "text" in parts[0] and parts[0]["text"]:
                    payload["candidates"][0]["logprobsResult"] = _logprobs_result(
                        [parts[0]["text"]], i, asked)
        return _framed(route, payloads)

    def shaped_reply(self, route: Route, body: Any) -> Reply | None:
        """One functionCall part when `toolConfig.functionCallingConfig.mode` is
        "ANY" (to the first name in `allowedFunctionNames` the request declares;
        none given: the first function declared), its args a value of the
        function's parameters; else
        JSON text for `responseMimeType` "application/json": a value of
        `responseJsonSchema` (JSON Schema) or `responseSchema` (Google's OpenAPI
        subset, upper-case types and all), or an object when neither is given."""
        if route.endpoint == "embeddings" or not isinstance(body, dict):
            return None
        # A forced call needs a function to call: a request without tools (the
        # benchmark's) skips reading the tool config.
        forced = _forced_functions(body) if body.get("tools") else None
        if forced is not None:
            call = forced_call(_declarations(body["tools"]), forced, route.model, body)
            if call is not None:
                return call
        config = body.get("generationConfig", body.get("generation_config"))
        if not isinstance(config, dict) or _either(config, "responseMimeType") != \
                "application/json":
            return None
        schema = _either(config, "responseJsonSchema")
        if schema is None:
            schema = _either(config, "responseSchema")
        return json_reply(schema if isinstance(schema, dict) else None, route.model, body)

    def fault_stream(self, fault: Fault, route: Route) -> list[bytes] | None:
        """A blocked prompt is a 200 answer: to a streamed request Gemini sends it
        as the stream's one chunk, not as plain JSON. Any scripted status: Gemini
        has no error status for a safety block, so `error` answers each with it."""
        if fault.status is not None and fault.kind == "safety":
            return _framed(route, [_blocked_prompt(route.model)])
        return None

    def stream_content_type(self, route: Route) -> str:
        if route.endpoint == "stream_sse":
            return "text/event-stream"
        return "application/json; charset=UTF-8"

    def error(self, status: int, fault: Fault, route: Route | None) -> ErrorAnswer:
        kind = fault.kind or ""
        model = route.model if route else ""
        if kind == "safety":
            return ErrorAnswer(200, {}, _blocked_prompt(model))
        if kind == "context_window":
            message = ("The input token count (1200293) exceeds the maximum number of tokens "
                       "allowed (1048576).")
            return _error(400, "INVALID_ARGUMENT", fault.message or message)
        if kind == "auth" and status == 400:
            return _bad_key()
        if status == 404 and kind != "path":
            method = "batchEmbedContents" if route and route.endpoint == "embeddings" \
                else "generateContent"
            message = (f"models/{model} is not found for API version v1beta, or is not "
                       f"supported for {method}. Call ListModels to see the list of "
                       "available models and their supported methods.")
            return _error(404, "NOT_FOUND", fault.message or message)
        if status == 429:
            return _rate_limited(fault, model)
        grpc, message = _ERRORS.get(status, ("UNKNOWN", "Unknown error."))
        return _error(status, grpc, fault.message or message)

    def _response(self, model: str, parts: list[dict[str, Any]], reply: Reply, *,
                  final: bool, response_id: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if final:
            finish = _FINISH.get(reply.finish or "stop", "STOP")
            candidate["finishReason"] = finish
            if finish == "SAFETY":
                candidate["safetyRatings"] = _SAFETY_RATINGS
        return {
            "candidates": [candidate],
            "usageMetadata": _usage(reply, final),
            "modelVersion": model,
            "responseId": response_id or _response_id(),
        }


def _either(fields: dict[str, Any], name: str) -> Any:
    """A field by its camelCase name or its snake_case one: the API takes both."""
    if name in fields:
        return fields[name]
    return fields.get(_snake_case(name))


def _forced_functions(body: dict[str, Any]) -> Forced | None:
    """The functions the request's function calling config lets the model call
    when it must call one (mode "ANY"): `allowedFunctionNames`, or any when it
    lists none (an empty repeated field is an absent one in Google's protos);
    None when it may answer in text ("AUTO", "NONE", "VALIDATED", none set)."""
    config = _either(body, "toolConfig")
    calling = _either(config, "functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict) or _either(calling, "mode") != "ANY":
        return None
    allowed = _either(calling, "allowedFunctionNames")
    names = tuple(str(n) for n in allowed) if isinstance(allowed, list) else ()
    return Forced(names or None)


def _declarations(tools: Any) -> list[tuple[str, Any]]:
    """(name, parameter schema) of the functions the request declares, in order:
    `parametersJsonSchema` (JSON Schema) or `parameters` (Google's subset)."""
    found: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        declared = _either(tool, "functionDeclarations") if isinstance(tool, dict) else None
        for decl in declared if isinstance(declared, list) else ():
            if isinstance(decl, dict):
                schema = _either(decl, "parametersJsonSchema")
                found.append((str(decl.get("name", "")),
                              schema if schema is not None else _either(decl, "parameters")))
    return found


def _snake_case(name: str) -> str:
    """'responseMimeType' -> 'response_mime_type', the proto's other JSON name."""
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def _grounding(body: Any, reply: Reply) -> dict[str, Any] | None:
    """Grounding metadata for `reply.annotations` (OpenAI url_citations), when
    the request turned on Google Search: one query, each cited URL a source,
    each annotated span a supported segment with UTF-8 byte offsets."""
    tools = body.get("tools") if isinstance(body, dict) else None
    searched = any(isinstance(t, dict) and ("googleSearch" in t or "google_search" in t)
                   for t in tools or ())
    if not searched or not reply.annotations or not reply.text:
        return None
    cited = [a["url_citation"] for a in reply.annotations]
    urls = list(dict.fromkeys(c["url"] for c in cited))
    titles = {c["url"]: c["title"] for c in cited}

    def at(index: int) -> int:
        return len((reply.text or "")[:index].encode())

    return {
        "webSearchQueries": [reply.text[:40]],
        "searchEntryPoint": {"renderedContent": "<div>simulated search</div>"},
        "groundingChunks": [{"web": {"uri": u, "title": titles[u]}} for u in urls],
        "groundingSupports": [{
            "segment": {"startIndex": at(c["start_index"]), "endIndex": at(c["end_index"]),
                        "text": reply.text[c["start_index"]:c["end_index"]]},
            "groundingChunkIndices": [urls.index(c["url"])]} for c in cited],
    }


def _logprobs_asked(body: Any) -> int | None:
    """How many alternatives a token gets when the request asked for logprobs
    (generationConfig.responseLogprobs), else None."""
    config = body.get("generationConfig") if isinstance(body, dict) else None
    if not isinstance(config, dict):
        return None
    return logprobs_asked(config.get("responseLogprobs"), config.get("logprobs"))


def _logprobs_result(tokens: list[str], start: int, top: int) -> dict[str, Any]:
    """A candidate's `logprobsResult` for these tokens, the first at step `start`."""
    steps = [token_alternatives(token, start + i, top) for i, token in enumerate(tokens)]
    chosen = [{"token": alts[0][0], "logProbability": alts[0][1]} for alts in steps]
    result: dict[str, Any] = {"chosenCandidates": chosen,
                              "logProbabilitySum": sum(c["logProbability"] for c in chosen)}
    if top:
        result["topCandidates"] = [
            {"candidates": [{"token": t, "logProbability": p} for t, p in alts[:top]]}
            for alts in steps]
    return result


def _call_parts(reply: Reply) -> list[dict[str, Any]]:
    parts = []
    for i, tc in enumerate(reply.tool_calls):
        call: dict[str, Any] = {"name": tc.name, "args": tc.arguments}
        if tc.id:
            call["id"] = tc.id
        part: dict[str, Any] = {"functionCall": call}
        if reply.reasoning_tokens and i == 0:
            # A thinking model signs the first function call of each step.
            part["thoughtSignature"] = THOUGHT_SIGNATURE
        parts.append(part)
    return parts


def _usage(reply: Reply, final: bool) -> dict[str, Any]:
    prompt = reply.input_tokens or 0
    if not final:
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    output = reply.output_tokens or 0
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output - reply.reasoning_tokens,
        "totalTokenCount": prompt + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    if reply.reasoning_tokens:
        usage["thoughtsTokenCount"] = reply.reasoning_tokens
    return usage


def _embed_requests(body: Any) -> list[Any]:
    requests = body.get("requests") if isinstance(body, dict) else None
    return requests if isinstance(requests, list) else []


def _embedding(request: Any) -> dict[str, Any]:
    request = request if isinstance(request, dict) else {}
    parts = (request.get("content") or {}).get("parts") or []
    text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    values = embedding_for(text)
    size = request.get("outputDimensionality")
    if isinstance(size, int) and size > 0:
        # Gemini truncates its full vector and does not renormalise it.
        values = values[:size]
    return {"values": values}


def _response_id() -> str:
    return uuid.uuid4().hex[:22]


def _model_entry(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}", "version": "001", "displayName": model,
        "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


# GenerateContentRequest's fields and generationConfig's (the API reference, late
# 2026), in the JSON names the proto accepts, camelCase and snake_case: a field
# Google does not know is a 400, so a translation inventing one fails in tests.
def _both(*names: str) -> frozenset[str]:
    return frozenset(names) | {_snake_case(n) for n in names}


_REQUEST_FIELDS = _both("contents", "tools", "toolConfig", "safetySettings",
                        "systemInstruction", "generationConfig", "cachedContent", "labels")
_CONFIG_FIELDS = _both(
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
    "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK",
    "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
    "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "imageConfig",
    "mediaResolution")
_CONTENT_FIELDS = frozenset({"role", "parts"})
_PART_FIELDS = _both("text", "inlineData", "fileData", "functionCall", "functionResponse",
                     "executableCode", "codeExecutionResult", "thought", "thoughtSignature",
                     "videoMetadata", "partMetadata", "mediaResolution")


def _unknown_field(body: Any) -> tuple[str, str] | None:
    """The first field Google would not know, and where (as its message says
    it: "generation_config", "contents[0].parts[1]"); None when there is none."""
    if not isinstance(body, dict):
        return None
    for name in body:
        if name not in _REQUEST_FIELDS:
            return name, ""
    config = body.get("generationConfig", body.get("generation_config"))
    for name in config if isinstance(config, dict) else ():
        if name not in _CONFIG_FIELDS:
            return name, "generation_config"
    for i, content in enumerate(body.get("contents") or ()):
        for name in content if isinstance(content, dict) else ():
            if name not in _CONTENT_FIELDS:
                return name, f"contents[{i}]"
        parts = content.get("parts") if isinstance(content, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else ()):
            for name in part if isinstance(part, dict) else ():
                if name not in _PART_FIELDS:
                    return name, f"contents[{i}].parts[{j}]"
    return None


def _error(status: int, grpc: str, message: str,
           details: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> ErrorAnswer:
    error: dict[str, Any] = {"code": status, "message": message, "status": grpc}
    if details:
        error["details"] = details
    return ErrorAnswer(status, headers or {}, {"error": error})


def _bad_key() -> ErrorAnswer:
    return _error(400, "INVALID_ARGUMENT", _BAD_KEY, [
        {"@type": _ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": _BAD_KEY},
    ])


def _rate_limited(fault: Fault, model: str) -> ErrorAnswer:
    grpc, message = _ERRORS[429]
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": model},
            "quotaValue": "10",
        }]},
        {"@type": _HELP, "links": [{"description": "Learn more about Gemini API quotas",
                                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
    ]
    if fault.retry_after is not None:
        delay = f"{fault.retry_after:g}s"
        message += f"\n* Quota exceeded for metric: generate_content_free_tier_requests, " \
                   f"limit: 10, model: {model}\nPlease retry in {delay}."
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return _error(429, grpc, fault.message or message, details)


def _framed(route: Route, payloads: list[dict[str, Any]]) -> list[bytes]:
    """A stream's chunks as Gemini sends them: SSE events (alt=sse), else one JSON
    array written an element at a time."""
    if route.endpoint == "stream_sse":
        return [f"data: {_dumps(p)}\r\n\r\n".encode() for p in payloads]
    frames = [("[" if i == 0 else ",\r\n") + _dumps(p) for i, p in enumerate(payloads)]
    frames[-1] += "]"
    return [f.encode() for f in frames]


def _blocked_prompt(model: str) -> dict[str, Any]:
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": model,
        "responseId": _response_id(),
    }
