"""The Anthropic Messages API as the fake upstream speaks it (`/anthropic/v1/messages`).

Renders `Reply` and `Fault` values in Anthropic's real shapes: the message
object, the streamed event sequence (message_start, content_block_start /
delta / stop with ping, input_json_delta fragments for tool calls,
message_delta, message_stop), and the `{"type": "error", ...}` bodies with the
`request-id` and `anthropic-ratelimit-*` headers. Like the real API it refuses
requests without `max_tokens`, `messages`, `x-api-key` or `anthropic-version`,
with no message or an empty one, with fields it does not know in the
request, its system blocks, tools, messages and their content blocks, and with
a malformed `cache_control` or more than four of them (`check_request`).

Scripting vocabulary beyond the neutral `Reply` / `Fault` fields:
- `Fault(status=400, kind="context_window")`: the real "prompt is too long" text.
- `Fault(status=400, kind="safety")`: "Output blocked by content filtering policy".
- `Fault(status=200, kind="safety")`, or `Reply(finish="content_filter")`:
  a 200 answer with stop_reason "refusal".
- `Reply(refusal="...")`: the same. Anthropic's streaming classifiers stop the
  answer with stop_reason "refusal" and say nothing more, so the refusal text
  is not sent (only counted as output); any scripted `text` is what came first.
- `Reply(finish="error")`: the answer breaks with an overloaded_error (an
  `event: error` frame mid-stream; a non-streamed answer is the error body).
- `Reply(reasoning_tokens=N)`: the answer starts with a thinking block.
- A request whose `tool_choice` names a tool gets a call to it, as Claude must
  answer one: the scripted calls, else one whose input is `{"text": <text>}`
  when text is scripted, else a value of the tool's `input_schema`
  (`testing.schema_instance`; `{"text": <default text>}` for an open object,
  which is how OpenAI's JSON mode reaches Claude).
- `tool_choice` `{"type": "any"}` with no scripted text or calls gets one call
  to the first custom tool offered (not a server tool such as web search), its
  input a value of that tool's `input_schema`, stop_reason "tool_use"; scripted
  text is sent as text.
- `tool_choice` naming a tool not in `tools` is refused with Claude's 400
  ("Tool '<name>' not found in provided tools"), as is `tools` that is no list.
- A request with `output_config.format` (structured outputs) and no scripted
  text gets a text block holding JSON of that schema, as Claude answers one.
- `Reply(annotations=[...])` (OpenAI url_citation annotations) to a request with
  the web search tool: the answer runs one search (a `server_tool_use` and a
  `web_search_tool_result` block, `usage.server_tool_use.web_search_requests`)
  and each annotated span of the text is a text block citing its URL
  (`citations`, streamed as `citations_delta`), as Anthropic answers.

Cheap on purpose: it serves load in the overhead benchmark.

Imports: the standard library, `testing.script`, `testing.wire`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from interlock.testing.script import Fault, Reply, ScriptedToolCall
from interlock.testing.wire import (
    ErrorAnswer,
    Forced,
    Route,
    chunks,
    estimate_tokens,
    forced_call,
    json_reply,
    sse,
)

FINISH_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization "
                              "of 50 requests per minute. For details, refer to: "
                              "https://docs.claude.com/en/api/rate-limits."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}

THINKING_TEXT = "Let me think this through step by step before answering."
CONTEXT_LIMIT = 200_000


class AnthropicWire:
    provider = "anthropic"
    prefix = "/anthropic"

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Route | None:
        if method != "POST" or path != "/v1/messages":
            return None
        fields = body if isinstance(body, dict) else {}
        return Route("chat", str(fields.get("model") or ""), bool(fields.get("stream")))

    def check_request(self, route: Route, headers: dict[str, str],
                      body: Any) -> ErrorAnswer | None:
        """The refusals the real API gives before looking at the prompt."""
        if not headers.get("x-api-key"):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error",
                          "There was an issue with the format of the request body.")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return _error(400, "invalid_request_error", f"{name}: Field required")
        if "tools" in body or "tool_choice" in body:
            bad = _bad_tool_choice(body)
            if bad is not None:
                return bad
        return _refusal(body)

    def reply(self, route: Route, body: Any, reply: Reply) -> Any:
        if reply.finish == "error":
            return _error_body("overloaded_error", "Overloaded")
        reply = _forced_tool(body, reply)
        searches = _searches(body, reply)
        return {
            "id": _message_id(),
            "type": "message",
            "role": "assistant",
            "model": route.model,
            "content": _content(reply, searches),
            "stop_reason": _stop_reason(reply),
            "stop_sequence": None,
            "usage": _usage(reply, searches),
        }

    def stream(self, route: Route, body: Any, reply: Reply) -> list[bytes]:
        reply = _forced_tool(body, reply)
        searches = _searches(body, reply)
        usage = _usage(reply, searches)
        start: dict[str, Any] = {
            "id": _message_id(), "type": "message", "role": "assistant", "content": [],
            "model": route.model, "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        frames = [sse({"type": "message_start", "message": start}, "message_start")]
        for index, block in enumerate(_content(reply, searches)):
            frames.extend(_block_frames(index, block, reply.chunk_chars))
            if index == 0:
                frames.append(sse({"type": "ping"}, "ping"))
        if reply.finish == "error":
            frames.append(sse(_error_body("overloaded_error", "Overloaded"), "error"))
            return frames
        frames.append(sse({
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {k: v for k, v in usage.items() if k in ("output_tokens",
                                                              "server_tool_use")},
        }, "message_delta"))
        frames.append(sse({"type": "message_stop"}, "message_stop"))
        return frames

    def shaped_reply(self, route: Route, body: Any) -> Reply | None:
        """What Claude answers a request for a shape with, when the script gives
        no text: a call to the tool `tool_choice` forces (the one it names, else
        the first custom tool) whose input is a value of its input_schema, or a
        text block holding JSON of the schema in `output_config.format`
        (structured outputs; `output_format`, its beta name, too)."""
        if not isinstance(body, dict):
            return None
        forced = _forced_tools(body)
        if forced is not None:
            call = forced_call(_custom_tools(body), forced, route.model, body)
            if call is not None:
                return call
        config = body.get("output_config")
        fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return json_reply(fmt.get("schema"), route.model, body)
        return None

    def fault_reply(self, fault: Fault) -> Reply | None:
        """A 200 safety fault is a refusal by Anthropic's streaming classifiers:
        an answer like any other (SSE to a streamed request) that ends with
        stop_reason "refusal"."""
        if fault.status == 200 and fault.kind == "safety":
            return Reply(text=fault.message or "", finish="content_filter", input_tokens=10,
                         output_tokens=0)
        return None

    def error(self, status: int, fault: Fault, route: Route | None) -> ErrorAnswer:
        etype, message = _error_text(status, fault, route)
        answer = _error(status, etype, fault.message or message)
        if status == 429:
            answer.headers.update(_ratelimit_headers(fault.retry_after))
        return answer

    def stream_content_type(self, route: Route) -> str:
        return "text/event-stream; charset=utf-8"


def _error_text(status: int, fault: Fault, route: Route | None) -> tuple[str, str]:
    if fault.kind == "context_window":
        asked = CONTEXT_LIMIT + 8_310
        text = f"prompt is too long: {asked} tokens > {CONTEXT_LIMIT} maximum"
        return "invalid_request_error", text
    if fault.kind == "safety":
        return "invalid_request_error", "Output blocked by content filtering policy"
    if status == 404:
        return "not_found_error", f"model: {route.model}" if route and route.model else "Not Found"
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    if status >= 500:
        return "api_error", "Internal server error"
    return "invalid_request_error", "Invalid request."


# The Messages API's request fields (its reference, late 2026), and those of the
# message and content block types an OpenAI-shaped request becomes: a field the
# API does not know is a 400, so a translation that invents one fails in tests.
_REQUEST_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_config", "output_format",
    "inference_geo"})
_MESSAGE_FIELDS = frozenset({"role", "content"})
_CACHED = frozenset({"type", "cache_control"})
_BLOCK_FIELDS: dict[str, frozenset[str]] = {
    "text": _CACHED | {"text", "citations"},
    "image": _CACHED | {"source"},
    "document": _CACHED | {"source", "title", "context", "citations"},
    "tool_use": _CACHED | {"id", "name", "input"},
    "tool_result": _CACHED | {"tool_use_id", "content", "is_error"},
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
}


# The system prompt's blocks, and the tools: a custom tool, or the web search
# server tool that web_search_options turns on.
_SYSTEM_BLOCK_FIELDS = _CACHED | {"text", "citations"}
_TOOL_FIELDS = _CACHED | {"name", "description", "input_schema", "strict"}
_SERVER_TOOL_FIELDS = _CACHED | {"name", "max_uses", "allowed_domains", "blocked_domains",
                                 "user_location"}
# Prompt caching: the breakpoints a request may set, and how long each may last.
MAX_CACHE_BREAKPOINTS = 4
_CACHE_TTLS = ("5m", "1h")


def _refusal(body: dict[str, Any]) -> ErrorAnswer | None:
    """The first refusal the real API gives a request's shape, read in one walk
    over it: a field it does not know, then a malformed cache marker or too many
    of them, then an empty message."""
    markers: list[tuple[str, Any]] = []  # in the order Anthropic reads the prompt
    tools_extra = _read_blocks("tools", body.get("tools"), _tool_fields, markers)
    system_extra = _read_blocks("system", body.get("system"), _system_block_fields, markers)
    messages_extra, empty = _read_messages(body.get("messages"), markers)
    extra = (next((name for name in body if name not in _REQUEST_FIELDS), None)
             or system_extra or tools_extra or messages_extra)
    if extra is not None:
        return _error(400, "invalid_request_error", f"{extra}: Extra inputs are not permitted")
    return _bad_cache_control(markers) or empty


def _read_messages(messages: Any, markers: list[tuple[str, Any]]
                   ) -> tuple[str | None, ErrorAnswer | None]:
    """(the path of the first field of the messages the API does not know, as its
    message names it: "messages.0.content.1.foo"; its refusal of an empty
    conversation or message), the cache markers of their blocks added to
    `markers`. An empty message is refused anywhere but last from the assistant
    (the prefill it may continue)."""
    if not isinstance(messages, list):
        return None, None
    extra: str | None = None
    empty = (None if messages else _error(400, "invalid_request_error",
                                          "messages: at least one message is required"))
    last = len(messages) - 1
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        if extra is None:
            extra = next((f"messages.{i}.{name}" for name in message
                          if name not in _MESSAGE_FIELDS), None)
        content = message.get("content")
        found = _read_blocks(f"messages.{i}.content", content, _content_block_fields, markers)
        extra = extra or found
        if empty is None and content in ("", []) and not (
                i == last and message.get("role") == "assistant"):
            empty = _error(400, "invalid_request_error", f"messages.{i}: all messages must have "
                           "non-empty content except for the optional final assistant message")
    return extra, empty


def _read_blocks(where: str, blocks: Any, known: Callable[[dict[str, Any]], frozenset[str] | None],
                 markers: list[tuple[str, Any]]) -> str | None:
    """The path of the first field of these blocks (or tools) the API does not
    know (`known` gives a block's fields; None: not a block an OpenAI request
    becomes, left to others), their cache markers added to `markers`."""
    extra: str | None = None
    for j, block in enumerate(blocks if isinstance(blocks, list) else ()):
        if not isinstance(block, dict):
            continue
        if "cache_control" in block:
            markers.append((f"{where}.{j}.cache_control", block["cache_control"]))
        fields = known(block) if extra is None else None
        if fields is not None:
            extra = next((f"{where}.{j}.{name}" for name in block if name not in fields), None)
    return extra


def _system_block_fields(block: dict[str, Any]) -> frozenset[str]:
    """A string, or text blocks (the form that can carry cache markers)."""
    return _SYSTEM_BLOCK_FIELDS


def _tool_fields(tool: dict[str, Any]) -> frozenset[str]:
    server = str(tool.get("type", "")).startswith("web_search_")
    return _SERVER_TOOL_FIELDS if server else _TOOL_FIELDS


def _content_block_fields(block: dict[str, Any]) -> frozenset[str] | None:
    kind = block.get("type")
    return _BLOCK_FIELDS.get(kind) if isinstance(kind, str) else None


def _bad_cache_control(markers: list[tuple[str, Any]]) -> ErrorAnswer | None:
    """Anthropic's refusals of a malformed cache marker, and of more breakpoints
    than it allows."""
    for path, marker in markers:
        if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
            return _error(400, "invalid_request_error", f"{path}.type: Input should be 'ephemeral'")
        for name in marker:
            if name not in ("type", "ttl"):
                return _error(400, "invalid_request_error",
                              f"{path}.ephemeral.{name}: Extra inputs are not permitted")
        if "ttl" in marker and marker["ttl"] not in _CACHE_TTLS:
            return _error(400, "invalid_request_error",
                          f"{path}.ephemeral.ttl: Input should be '5m' or '1h'")
    if len(markers) > MAX_CACHE_BREAKPOINTS:
        return _error(400, "invalid_request_error",
                      f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be "
                      f"provided. Found {len(markers)}.")
    return None


def _error(status: int, etype: str, message: str) -> ErrorAnswer:
    body = _error_body(etype, message)
    # One request, one id: the header and the body name the same, as Anthropic's do.
    return ErrorAnswer(status, {"request-id": body["request_id"]}, body)


def _error_body(etype: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message},
            "request_id": _request_id()}


def _ratelimit_headers(retry_after: float | None) -> dict[str, str]:
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "38000",
    }
    # Without a scripted wait the reset times are left out, so clients see no
    # retry hint at all (the core adds Retry-After only when one is scripted).
    if retry_after is not None:
        now = time.time()
        headers["anthropic-ratelimit-requests-reset"] = _rfc3339(now + retry_after)
        headers["anthropic-ratelimit-tokens-reset"] = _rfc3339(now + 1.0)
    return headers


def _rfc3339(when: float) -> str:
    # Whole seconds, as Anthropic sends them, rounded up so the wait is never short.
    return datetime.fromtimestamp(math.ceil(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _searches(body: Any, reply: Reply) -> int:
    """How many web searches the answer runs: one, when the request offers the
    web search tool and the reply has citations to give."""
    tools = body.get("tools") if isinstance(body, dict) else None
    offered = any(isinstance(t, dict) and str(t.get("type", "")).startswith("web_search")
                  for t in tools or ())
    return 1 if offered and reply.annotations else 0


def _forced_tool(body: Any, reply: Reply) -> Reply:
    """A request whose tool_choice names a tool gets a call to it, as Claude must
    answer: with the scripted calls if any, else one whose input holds the
    scripted text (`{"text": ...}`, how OpenAI's JSON mode reaches Claude)."""
    forced = _forced_tools(body)
    if forced is None or not forced.names or reply.tool_calls:
        return reply
    call = ScriptedToolCall(forced.names[0], {"text": reply.text or ""})
    written = (reply.output_tokens if reply.output_tokens is not None
               else estimate_tokens(json.dumps(call.arguments)))
    return dataclasses.replace(reply, text="", tool_calls=[call], finish="tool_calls",
                               output_tokens=written)


def _forced_tools(body: Any) -> Forced | None:
    """The tools a request's `tool_choice` lets Claude call when it must call
    one: the one it names ({"type": "tool", "name": ...}), or any tool
    ({"type": "any"}); None when Claude may answer in text."""
    choice = body.get("tool_choice") if isinstance(body, dict) else None
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool":
        return Forced((str(choice.get("name", "")),))
    return Forced() if choice.get("type") == "any" else None


def _bad_tool_choice(body: dict[str, Any]) -> ErrorAnswer | None:
    """Anthropic's 400 for `tools` that is not a list, and for a `tool_choice`
    naming a tool the request does not define: Claude cannot be made to call
    a tool it was not given."""
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return _error(400, "invalid_request_error", "tools: Input should be a valid list")
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None
    name = choice.get("name")
    if any(isinstance(t, dict) and t.get("name") == name for t in tools or ()):
        return None
    return _error(400, "invalid_request_error", f"Tool '{name}' not found in provided tools")


def _custom_tools(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, input_schema) of the request's own tools, in order; server tools
    (web search), which Claude runs itself, are not among those it must call."""
    tools = body.get("tools")  # a list: check_request refuses any other
    return [(str(t.get("name", "")), t.get("input_schema"))
            for t in (tools if isinstance(tools, list) else ())
            if isinstance(t, dict) and t.get("type", "custom") == "custom"]


def _content(reply: Reply, searches: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.reasoning_tokens:
        blocks.append({"type": "thinking", "thinking": THINKING_TEXT,
                       "signature": "c2ltdWxhdGVkIHNpZ25hdHVyZQ=="})
    if searches and reply.text:
        blocks.extend(_searched(reply.text, reply.annotations or []))
    elif reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for i, call in enumerate(reply.tool_calls):
        blocks.append({"type": "tool_use", "id": call.id or _tool_id(i, call.name),
                       "name": call.name, "input": call.arguments})
    return blocks


def _searched(text: str, annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The search, its results, and the text cut into blocks at the annotated
    spans, each of those citing its URL."""
    cited = sorted((a["url_citation"] for a in annotations), key=lambda c: c["start_index"])
    use_id = "srvtoolu_01" + hashlib.sha1(text.encode()).hexdigest()[:22]
    blocks: list[dict[str, Any]] = [
        {"type": "server_tool_use", "id": use_id, "name": "web_search",
         "input": {"query": text[:40]}},
        {"type": "web_search_tool_result", "tool_use_id": use_id, "content": [
            {"type": "web_search_result", "url": c["url"], "title": c["title"],
             "encrypted_content": "ZW5jcnlwdGVk", "page_age": None} for c in cited]},
    ]
    at = 0
    for c in cited:
        start, end = c["start_index"], c["end_index"]
        if start > at:
            blocks.append({"type": "text", "text": text[at:start]})
        blocks.append({"type": "text", "text": text[start:end], "citations": [
            {"type": "web_search_result_location", "url": c["url"], "title": c["title"],
             "encrypted_index": "ZW5jaWR4", "cited_text": text[start:end]}]})
        at = end
    if at < len(text):
        blocks.append({"type": "text", "text": text[at:]})
    return blocks


def _block_frames(index: int, block: dict[str, Any], size: int) -> list[bytes]:
    kind = block["type"]
    if kind == "text":
        opening: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "citations_delta", "citation": c} for c in block.get("citations", ())]
        deltas += [{"type": "text_delta", "text": piece} for piece in chunks(block["text"], size)]
    elif kind == "web_search_tool_result":
        opening, deltas = block, []
    elif kind == "server_tool_use":
        opening = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
    elif kind == "thinking":
        opening = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p}
                  for p in chunks(block["thinking"], size)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        # The real API opens with an empty fragment, then streams the JSON text.
        pieces = ["", *chunks(json.dumps(block["input"]), size)] if block["input"] else [""]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    frames = [sse({"type": "content_block_start", "index": index, "content_block": opening},
                  "content_block_start")]
    frames.extend(sse({"type": "content_block_delta", "index": index, "delta": d},
                      "content_block_delta") for d in deltas)
    frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return frames


def _stop_reason(reply: Reply) -> str:
    # A scripted refusal is resolved with finish "stop", as OpenAI ends one;
    # Anthropic ends it with a stop reason of its own.
    if reply.refusal is not None:
        return "refusal"
    return FINISH_TO_STOP_REASON.get(reply.finish or "stop", "end_turn")


def _usage(reply: Reply, searches: int) -> dict[str, Any]:
    total = reply.input_tokens if reply.input_tokens is not None else 0
    cached = min(reply.cached_tokens, total)
    output = reply.output_tokens
    if output is None:
        output = estimate_tokens(reply.text or "")
    usage: dict[str, Any] = {
        "input_tokens": total - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
        # Anthropic's answer to "auto" is Priority Tier only where an organisation
        # bought that capacity; the fake's organisation has none.
        "service_tier": "standard",
    }
    if searches:
        usage["server_tool_use"] = {"web_search_requests": searches}
    return usage


def _message_id() -> str:
    return "msg_01" + uuid.uuid4().hex[:22]


def _request_id() -> str:
    return "req_01" + uuid.uuid4().hex[:22]


def _tool_id(index: int, name: str) -> str:
    # Deterministic, so a streamed and a non-streamed answer name the same calls.
    digest = hashlib.sha1(f"{index}:{name}".encode()).hexdigest()[:20]
    return f"toolu_{index:02d}{digest}"
