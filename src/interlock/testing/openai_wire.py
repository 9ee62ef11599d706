"""The OpenAI wire format for the fake upstream.

Serves `/openai/v1/chat/completions` (streamed and not), `/openai/v1/embeddings`
and `/openai/v1/models` with the shapes the real API sends: `chat.completion`
objects, `chat.completion.chunk` streams (role first, content pieces, tool calls
split into a head with id and name and argument fragments, a finish chunk, a
usage chunk when `stream_options.include_usage` is set, then `[DONE]`; every
chunk padded with an `obfuscation` string, as OpenAI does by default), and the
real error bodies `{"error": {"message", "type", "param", "code"}}` with
rate-limit headers. A request for JSON (`response_format` json_object or
json_schema) with no scripted text gets JSON as its content: an object, or a
value of the schema (`testing.schema_instance`). A request that forces a tool
call (`tool_choice` "required", a named function, or `allowed_tools` in mode
"required") with nothing scripted gets one call, to the named function or the
first allowed one offered (an allowed list with no function offered: text),
its arguments a value of its `parameters`, with finish_reason "tool_calls";
streamed, its first chunk holds the role, content null and the call's head, as
OpenAI's does. `tools` / `tool_choice` of the wrong JSON type get OpenAI's 400
naming the field. Cheap on purpose: it carries the overhead benchmark's load.

Two servers speak this wire. `OpenAIWire()` plays OpenAI's own API (under
`/openai/v1`), which refuses a body field it does not define with a 400,
"Unrecognized request argument supplied: <name>", as the real one does: a
vendor parameter (vLLM's `top_k`, Anthropic's `thinking`) or a typo sent on by
mistake fails a test as it would fail in production. `OpenAIWire(openai_itself=False)`
plays any other OpenAI-compatible server (vLLM, Ollama, llama.cpp, a gateway
in front of several providers; under `/openai-compatible/v1`), which takes and
ignores the fields it does not know. `FakeUpstream.environ()` points
OPENAI_BASE_URL at the strict one: an `openai/` deployment with no api_base is
OpenAI's own API wherever that variable sends it, and meets OpenAI's rules there
as in production.

Imports: orjson, the standard library, `testing.wire`, `testing.script`.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from typing import Any

import orjson

from interlock.testing.script import Fault, Reply, ScriptedToolCall
from interlock.testing.wire import (
    ErrorAnswer,
    Forced,
    Route,
    chunks,
    estimate_tokens,
    forced_call,
    json_reply,
    logprobs_asked,
    token_alternatives,
)

_FINGERPRINT = "fp_f4k3up57r3"
_EMBEDDING_DIM = 64
_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "gpt-5",
           "text-embedding-3-small", "text-embedding-3-large")
_DONE = b"data: [DONE]\n\n"


# `obfuscation` fields of a few lengths, picked by a chunk's size: cheap, and
# varying from chunk to chunk as OpenAI's random padding does.
_PADS = [b',"obfuscation":"' + b"Zx9Qp2Lm4Rt7Kw1"[:n] + b'"' for n in (2, 5, 9, 3, 12, 7)]


# The fields of OpenAI's chat-completions and embeddings request bodies, as its
# API reference lists them; any other is refused (`OpenAIWire.check_request`).
# A copy of the adapter's lists (`adapters.openai.server_params`), not an import:
# `interlock.testing` imports nothing of the code it checks. A test keeps the two
# equal (tests/adapters/test_openai_server_params.py): change them together.
CHAT_FIELDS = frozenset({
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
    "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
    "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p",
    "user", "verbosity", "web_search_options",
})
EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


class OpenAIWire:
    """`openai_itself`: OpenAI's own API, which refuses fields it does not
    define; else an OpenAI-compatible server, which ignores them."""

    def __init__(self, *, openai_itself: bool = True) -> None:
        self.openai_itself = openai_itself
        self.provider = "openai" if openai_itself else "openai-compatible"
        self.prefix = "/" + self.provider

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Route | None:
        model = str(body.get("model") or "") if isinstance(body, dict) else ""
        if method == "POST" and path == "/v1/chat/completions":
            return Route("chat", model, bool(isinstance(body, dict) and body.get("stream")))
        if method == "POST" and path == "/v1/embeddings":
            return Route("embeddings", model, False)
        if method == "GET" and path == "/v1/models":
            return Route("models", "", False)
        return None

    def check_request(self, route: Route, headers: dict[str, str],
                      body: Any) -> ErrorAnswer | None:
        """The refusals the real API gives before looking at the prompt. No key
        check: the prefix that plays OpenAI-compatible servers stands in for
        keyless local ones (vLLM, Ollama), and a test of OpenAI itself has no key
        worth checking."""
        if route.endpoint == "models":
            return None
        if not isinstance(body, dict):
            return _refusal("We could not parse the JSON body of your request. The OpenAI "
                            "API expects a JSON payload, but what was sent was not valid JSON.")
        if not body.get("model"):
            return _refusal("you must provide a model parameter")
        required = "messages" if route.endpoint == "chat" else "input"
        if required not in body:
            return _refusal(f"Missing required parameter: '{required}'.", required,
                            "missing_required_parameter")
        if "stream_options" in body and not body.get("stream"):
            return _refusal("The 'stream_options' parameter is only allowed when 'stream' is "
                            "enabled.", "stream_options", "invalid_value")
        if self.openai_itself:
            known = CHAT_FIELDS if route.endpoint == "chat" else EMBEDDING_FIELDS
            unknown = next((name for name in body if name not in known), None)
            if unknown is not None:
                # OpenAI's own words, and no param or code: it names the field in the text.
                return _refusal(f"Unrecognized request argument supplied: {unknown}")
        if route.endpoint == "chat" and ("tools" in body or "tool_choice" in body):
            bad = _bad_tools(body)
            if bad is not None:
                return bad
        return _check_tool_messages(body.get("messages"))

    def stream_content_type(self, route: Route) -> str:
        return "text/event-stream; charset=utf-8"

    def shaped_reply(self, route: Route, body: Any) -> Reply | None:
        """One call to the function `tool_choice` forces ("required": the first
        offered; a named function; `allowed_tools` in mode "required": the first
        of those), its arguments a value of the function's parameters, as OpenAI
        answers; else JSON for `response_format` json_object (an object) or
        json_schema (a value of its schema), as the content."""
        if route.endpoint != "chat" or not isinstance(body, dict):
            return None
        forced = _forced_functions(body.get("tool_choice"))
        if forced is not None:
            call = forced_call(_functions(body.get("tools")), forced, route.model, body)
            if call is not None:
                return call
        fmt = body.get("response_format")
        if not isinstance(fmt, dict):
            return None
        if fmt.get("type") == "json_object":
            return json_reply(None, route.model, body)
        if fmt.get("type") == "json_schema":
            wrapper = fmt.get("json_schema")
            schema = wrapper.get("schema") if isinstance(wrapper, dict) else None
            return json_reply(schema if isinstance(schema, dict) else None, route.model, body)
        return None

    # -- successful answers ----------------------------------------------------
    def reply(self, route: Route, body: Any, reply: Reply) -> Any:
        if route.endpoint == "embeddings":
            return _embeddings(route.model, body, reply)
        if route.endpoint == "models":
            return {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                for m in _MODELS]}
        message: dict[str, Any] = {"role": "assistant", "content": reply.text,
                                   "refusal": reply.refusal,
                                   "annotations": reply.annotations or []}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": _call_id(tc, i), "type": "function",
                 "function": {"name": tc.name, "arguments": _arguments(tc)}}
                for i, tc in enumerate(reply.tool_calls)]
        logprobs = None
        top = _logprobs_asked(body)
        if top is not None and reply.text:
            logprobs = {"content": [_token_logprob(piece, i, top) for i, piece
                                    in enumerate(chunks(reply.text, reply.chunk_chars))],
                        "refusal": None}
        return {
            "id": _completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": route.model, "choices": [{
                "index": 0, "message": message, "logprobs": logprobs,
                "finish_reason": reply.finish}],
            "usage": _usage(reply), "service_tier": _served_tier(body),
            "system_fingerprint": _FINGERPRINT,
        }

    def stream(self, route: Route, body: Any, reply: Reply) -> list[bytes]:
        options = (body.get("stream_options") or {}) if isinstance(body, dict) else {}
        include_usage = bool(options.get("include_usage"))
        # OpenAI pads every chunk with an `obfuscation` string of varying length
        # (a side-channel mitigation) unless include_obfuscation is false.
        obfuscate = options.get("include_obfuscation", True) is not False
        # Every chunk shares id, created and model; built once, as text, for speed.
        head = orjson.dumps({"id": _completion_id(), "object": "chat.completion.chunk",
                             "created": int(time.time()), "model": route.model,
                             "service_tier": _served_tier(body),
                             "system_fingerprint": _FINGERPRINT})[:-1]
        usage_null = b',"usage":null' if include_usage else b""

        def end(frame: bytes) -> bytes:
            pad = _PADS[len(frame) % len(_PADS)] if obfuscate else b""
            return frame + pad + b"}\n\n"

        def frame(delta: dict[str, Any], finish: str | None = None,
                  logprobs: dict[str, Any] | None = None) -> bytes:
            choice = orjson.dumps({"index": 0, "delta": delta, "logprobs": logprobs,
                                   "finish_reason": finish})
            return end(b"data: " + head + b',"choices":[' + choice + b"]" + usage_null)

        opening: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        deltas = [{"tool_calls": [d]} for i, tc in enumerate(reply.tool_calls)
                  for d in _call_deltas(tc, i, reply.chunk_chars)]
        if deltas and not (reply.text or reply.refusal or reply.annotations):
            # A call with no text: OpenAI's first chunk carries the role with
            # content null and the call's head, and content stays null, so a
            # client (the SDK's stream helper) sees no text, as in the whole answer.
            opening = {**opening, "content": None, **deltas.pop(0)}
        frames = [frame(opening)]
        if reply.text:
            # With logprobs asked for, each chunk carries its own tokens', as OpenAI's do.
            top = _logprobs_asked(body)
            frames += [frame({"content": piece}, None, None if top is None else {
                "content": [_token_logprob(piece, i, top)], "refusal": None})
                for i, piece in enumerate(chunks(reply.text, reply.chunk_chars))]
        if reply.annotations:
            frames.append(frame({"annotations": reply.annotations}))
        if reply.refusal:
            frames += [frame({"refusal": piece}) for piece in chunks(reply.refusal,
                                                                     reply.chunk_chars)]
        frames += [frame(delta) for delta in deltas]
        frames.append(frame({}, reply.finish))
        if include_usage:
            frames.append(end(b"data: " + head + b',"choices":[],"usage":'
                              + orjson.dumps(_usage(reply))))
        frames.append(_DONE)
        return frames

    # -- errors ----------------------------------------------------------------
    def error(self, status: int, fault: Fault, route: Route | None) -> ErrorAnswer:
        model = route.model if route else "the model"
        message, kind, param, code = _error_fields(status, fault.kind, model)
        headers: dict[str, str] = {}
        if status == 429 and fault.kind != "quota":
            headers = _rate_limit_headers(fault.retry_after)
            if fault.retry_after is not None:
                message = message.replace("again later",
                                          f"again in {format_duration(fault.retry_after)}")
        body = {"error": {"message": fault.message or message, "type": kind, "param": param,
                          "code": code}}
        return ErrorAnswer(status, headers, body)


def _refusal(message: str, param: str | None = None, code: str | None = None) -> ErrorAnswer:
    return ErrorAnswer(400, {}, {"error": {"message": message, "type": "invalid_request_error",
                                           "param": param, "code": code}})


def _check_tool_messages(messages: Any) -> ErrorAnswer | None:
    if not isinstance(messages, list):
        return None
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "tool" and not m.get("tool_call_id"):
            return _refusal("Missing parameter 'tool_call_id': messages with role 'tool' "
                            "must have a 'tool_call_id'.", f"messages.[{i}].tool_call_id",
                            "missing_required_parameter")
    return None


def _error_fields(status: int, kind: str | None,
                  model: str) -> tuple[str, str | None, str | None, str | None]:
    """(message, type, param, code) as OpenAI writes them for this status and kind."""
    if kind == "context_window":
        return ("This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 131072 tokens. Please reduce the length of the "
                "messages.", "invalid_request_error", "messages", "context_length_exceeded")
    if kind == "safety":
        return ("Your request was rejected as a result of our safety system. Your prompt "
                "may contain text that is not allowed by our safety system.",
                "invalid_request_error", None, "content_policy_violation")
    if kind == "content_filter":
        # Azure OpenAI's shape for a prompt its content filter blocked.
        return ("The response was filtered due to the prompt triggering Azure OpenAI's "
                "content management policy.", None, "prompt", "content_filter")
    if kind == "quota":
        return ("You exceeded your current quota, please check your plan and billing "
                "details.", "insufficient_quota", None, "insufficient_quota")
    if kind == "path":
        return ("Invalid URL: no such route on this API.", "invalid_request_error", None, None)
    return _STATUS_ERRORS.get(status, _generic(status))(model)


def _generic(status: int) -> Any:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return lambda model: (f"The request failed with status {status}.", kind, None, None)


_STATUS_ERRORS: dict[int, Any] = {
    400: lambda model: ("Invalid value for 'messages': the request is not valid.",
                        "invalid_request_error", "messages", "invalid_value"),
    401: lambda model: ("Incorrect API key provided: sk-fake****. You can find your API key "
                        "at https://platform.openai.com/account/api-keys.",
                        "invalid_request_error", None, "invalid_api_key"),
    403: lambda model: ("Country, region, or territory not supported", "request_forbidden",
                        None, "unsupported_country_region_territory"),
    404: lambda model: (f"The model `{model}` does not exist or you do not have access to it.",
                        "invalid_request_error", None, "model_not_found"),
    429: lambda model: (f"Rate limit reached for {model} in organization org-fake on tokens "
                        "per min (TPM): Limit 30000, Used 30000, Requested 512. Please try "
                        "again later. Visit https://platform.openai.com/account/rate-limits "
                        "to learn more.", "tokens", None, "rate_limit_exceeded"),
    500: lambda model: ("The server had an error while processing your request. Sorry about "
                        "that!", "server_error", None, None),
    503: lambda model: ("The engine is currently overloaded, please try again later.",
                        "server_error", None, None),
}


def _rate_limit_headers(retry_after: float | None) -> dict[str, str]:
    headers = {
        "x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-requests": "499", "x-ratelimit-remaining-tokens": "0",
    }
    # Reset times only when the fault says when: a 429 scripted without retry_after
    # must look like one that gives no hint at all.
    if retry_after is not None:
        headers["x-ratelimit-reset-requests"] = "120ms"
        headers["x-ratelimit-reset-tokens"] = format_duration(retry_after)
    return headers


def format_duration(seconds: float) -> str:
    """Seconds in OpenAI's Go-style duration form: "20ms", "1s", "6m0s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:g}s"
    return f"{int(minutes)}m{text}" if minutes else text


# -- pieces ---------------------------------------------------------------------
def _forced_functions(choice: Any) -> Forced | None:
    """The functions a `tool_choice` lets the model call when it must call one:
    any ("required"), the one it names, or the function entries of the
    `allowed_tools` list in mode "required" (a list of custom tools only, or
    none, allows no function); None when the model may answer in text.
    `check_request` refuses the wrong shapes first (`_bad_tools`); read here
    without trusting them all the same."""
    if choice == "required":
        return Forced()
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "function":
        return Forced((_function_name(choice),))
    allowed = choice.get("allowed_tools")
    if choice.get("type") == "allowed_tools" and isinstance(allowed, dict) \
            and allowed.get("mode") == "required":
        listed = allowed.get("tools")
        return Forced(tuple(_function_name(t) for t in
                            (listed if isinstance(listed, list) else ())
                            if isinstance(t, dict) and t.get("type") == "function"))
    return None


def _bad_tools(body: dict[str, Any]) -> ErrorAnswer | None:
    """OpenAI's 400 for a `tools` or `tool_choice` of the wrong JSON type, which
    it checks before the model runs: the fake must not walk a string as a list
    or fail on a number where a list belongs."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return _invalid_type("tools", "an array", tools)
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                return _invalid_type(f"tools[{i}]", "an object", tool)
    choice = body.get("tool_choice")
    if choice is None or isinstance(choice, str):
        return None
    if not isinstance(choice, dict):
        return _invalid_type("tool_choice", "one of a string or object", choice)
    allowed = choice.get("allowed_tools")
    if choice.get("type") != "allowed_tools" or allowed is None:
        return None
    if not isinstance(allowed, dict):
        return _invalid_type("tool_choice.allowed_tools", "an object", allowed)
    listed = allowed.get("tools")
    if not isinstance(listed, list):
        return _invalid_type("tool_choice.allowed_tools.tools", "an array", listed)
    bad = next((i for i, t in enumerate(listed) if not isinstance(t, dict)), None)
    return (None if bad is None else
            _invalid_type(f"tool_choice.allowed_tools.tools[{bad}]", "an object", listed[bad]))


def _invalid_type(param: str, expected: str, got: Any) -> ErrorAnswer:
    """OpenAI's words for a field of the wrong JSON type, naming the field."""
    return _refusal(f"Invalid type for '{param}': expected {expected}, but got "
                    f"{_json_type(got)} instead.", param, "invalid_type")


def _json_type(value: Any) -> str:
    """A value's JSON type, with its article, as OpenAI's messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _function_name(entry: dict[str, Any]) -> str:
    """The name in a `{"type": "function", "function": {"name": ...}}` entry."""
    function = entry.get("function")
    return str(function.get("name", "")) if isinstance(function, dict) else ""


def _functions(tools: Any) -> list[tuple[str, Any]]:
    """(name, parameters) of the request's function tools, in order."""
    found: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = tool.get("function")
            if isinstance(function, dict):
                found.append((_function_name(tool), function.get("parameters")))
    return found


def _logprobs_asked(body: Any) -> int | None:
    """How many alternatives a token gets (`top_logprobs`) when the request asked
    for logprobs, else None."""
    if not isinstance(body, dict):
        return None
    return logprobs_asked(body.get("logprobs"), body.get("top_logprobs"))


def _token_logprob(token: str, position: int, top: int) -> dict[str, Any]:
    """One token's entry of `logprobs.content` (`top` alternatives)."""
    alternatives = token_alternatives(token, position, top)
    return {"token": token, "logprob": alternatives[0][1], "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())}
                             for t, p in alternatives[:top]]}


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:29]


def _call_id(tc: ScriptedToolCall, index: int) -> str:
    # Deterministic, so a streamed and a non-streamed answer to one script agree.
    if tc.id:
        return tc.id
    digest = hashlib.blake2b(f"{index}:{tc.name}".encode(), digest_size=12).hexdigest()
    return f"call_{digest}"


def _arguments(tc: ScriptedToolCall) -> str:
    return orjson.dumps(tc.arguments).decode()


def _call_deltas(tc: ScriptedToolCall, index: int, size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"index": index, "id": _call_id(tc, index), "type": "function",
                                  "function": {"name": tc.name, "arguments": ""}}]
    out += [{"index": index, "function": {"arguments": piece}}
            for piece in chunks(_arguments(tc), size)]
    return out


def _served_tier(body: Any) -> str:
    """The tier OpenAI's answer reports serving the call at: the one the request
    asked for ("flex", "priority"), or "default" when it asked for none or "auto"."""
    asked = body.get("service_tier") if isinstance(body, dict) else None
    return asked if isinstance(asked, str) and asked != "auto" else "default"


def _usage(reply: Reply) -> dict[str, Any]:
    prompt, completion = reply.input_tokens or 0, reply.output_tokens or 0
    return {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens,
                                      "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def _embeddings(model: str, body: Any, reply: Reply) -> dict[str, Any]:
    raw = body.get("input") if isinstance(body, dict) else None
    texts = [raw] if isinstance(raw, str) else [str(t) for t in (raw or [])]
    tokens = sum(estimate_tokens(t) for t in texts)
    size = body.get("dimensions") if isinstance(body, dict) else None
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embedding_for(t)[:size]}
                 for i, t in enumerate(texts)],
        "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def embedding_for(text: str) -> list[float]:
    """A deterministic unit vector of 64 floats from a hash of the text."""
    digest = hashlib.blake2b(text.encode(), digest_size=_EMBEDDING_DIM).digest()
    values = [b / 127.5 - 1.0 for b in digest]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
