"""The Anthropic Messages API adapter (`POST {base}/v1/messages`).

Translates a neutral `ChatRequest` into a Messages API body, and the answer
(a message object, or the streamed `message_start` ... `message_stop` events)
back into a `ChatResponse` / `StreamDelta`s. Errors are mapped here, at the
boundary: Anthropic's `{"type": "error", "error": {"type", "message"}}` bodies,
its `event: error` stream frames, and its rate-limit headers.

Choices worth knowing:
- System messages go top-level as `system`; a request of system messages only
  (OpenAI answers one) sends them as the user's turn, since Anthropic refuses a
  request without messages.
- `max_tokens` is required by Anthropic: request.max_tokens, else
  `max_completion_tokens` from `extra`, else deployment.max_output_tokens, else
  `DEFAULT_MAX_TOKENS` (4096).
- `response_format`: `json_schema` is sent as `output_config.format`
  (Anthropic's structured outputs, generally available on the Claude 4.5+
  models; older models answer 400, which surfaces as BadRequest). `json_object`
  has no Anthropic equivalent (structured outputs take no schema-less object),
  so Claude is made to call one tool, `json_answer`, whose input is any JSON
  object, and that input comes back as the answer's text (streamed as it is
  written) with finish_reason "stop", as OpenAI's JSON mode answers. A request
  with tools of its own (or web search), or with thinking (which cannot go with
  a forced tool), cannot take that way: `UnsupportedParameter`, unless
  drop_params. `text` is a no-op.
- Extra OpenAI parameters Anthropic cannot take (frequency_penalty, seed,
  logprobs, n > 1, ...) raise `UnsupportedParameter` unless drop_params; values
  that change nothing (n=1, a zero penalty, logprobs=false, null) are accepted.
  Anthropic's own `top_k` and `thinking` pass through from `extra`. A `stop`
  sequence of only whitespace (Anthropic answers 400) is refused the same way;
  drop_params sends the others.
- OpenAI's `reasoning_effort` turns thinking on with that effort's budget
  (`interlock.reasoning_effort`; "none" leaves it off, an explicit `thinking` wins); a
  `max_tokens` Interlock chose grows by the budget (an explicit `thinking`'s
  too), one the caller set must exceed it.
- OpenAI's `web_search_options` adds Anthropic's web search tool (at most 1, 3
  or 5 searches for a low, medium or high `search_context_size`); the text
  blocks that cite search results come back as OpenAI `url_citation`
  annotations over their span, and the searches as `Usage.web_searches`.
- Thinking: the text is the OpenAI-style `reasoning_content`; each block, signed,
  is also returned whole in `thinking_blocks` (LiteLLM's field; streamed once
  the block ends). An assistant turn sent back with `thinking_blocks` starts
  with them, as Anthropic requires in a tool loop with thinking on.
- Consecutive same-role turns are merged (Anthropic requires alternation);
  `tool` messages become `tool_result` blocks of one user turn, placed before
  its other blocks as Anthropic requires; a result of several parts keeps them
  as separate blocks.
- Images: URLs and base64 data URLs of the four types Anthropic takes (jpeg, png,
  gif, webp; `image/jpg` is sent as `image/jpeg`); another type is a 400 here.
- `deployment.extra` may set `anthropic_version` (default 2023-06-01),
  `anthropic_beta` (sent as the `anthropic-beta` header) and `extra_headers`.
- Usage: neutral input_tokens counts all input (uncached + cache reads +
  cache writes); cached_input_tokens and cache_write_tokens are subsets.
- `service_tier`: OpenAI's "default" is sent as Anthropic's "standard_only" and
  "priority" as "auto" (see `SERVICE_TIERS`); the tier that served the call
  (`usage.service_tier`) comes back as the answer's `service_tier`, in OpenAI's
  names ("standard" as "default").

Imports: the standard library, orjson, `types`, `errors`, `catalog`, `adapters.base`,
`adapters.http`, `adapters.registry`, `reasoning_effort`, `web_search`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

import orjson

from interlock.adapters.base import (
    ServerSentEvent,
    answer_shape,
    checked_delta,
    checked_response,
    iter_sse,
    parse_retry_after,
    upstream_error_text,
    with_call_headers,
    with_extra_headers,
)
from interlock.adapters.http import HttpClient, Labels, Timeouts
from interlock.adapters.registry import resolve_base_url
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
from interlock.types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    StreamDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from interlock.web_search import MAX_SEARCHES, requested_web_search, url_citation

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}

# Anthropic's error types; anything else goes through the generic status table.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "authentication_error": AuthenticationFailed, "permission_error": PermissionDenied,
    "billing_error": AuthenticationFailed, "not_found_error": NotFound,
    "rate_limit_error": RateLimited, "overloaded_error": Overloaded,
    "api_error": UpstreamServerError, "timeout_error": Timeout,
    "invalid_request_error": BadRequest,
}

# A type that names no cause of its own: Anthropic sends api_error with any 5xx
# (a 503 from its edge among them).
GENERIC_TYPES = frozenset({"api_error"})

# The status Anthropic documents for each error type, for `event: error` frames
# that arrive inside a 200 stream.
DOCUMENTED_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}

# Lower-cased fragments of Anthropic's 400 texts when the prompt does not fit, and
# when its output filter blocked the answer.
CONTEXT_WINDOW_TEXTS = ("prompt is too long", "exceed context limit", "context window",
                        "context length", "too many tokens")
CONTENT_FILTER_TEXTS = ("content filtering policy",)

# OpenAI parameters Anthropic has no counterpart for, with the values that make
# them a no-op (so clients that always send defaults are not refused).
UNSUPPORTED_EXTRA: dict[str, tuple[Any, ...]] = {
    "n": (1,), "frequency_penalty": (0,), "presence_penalty": (0,), "logprobs": (False,),
    "top_logprobs": (0,), "logit_bias": ({},), "seed": (),
    "modalities": (["text"],), "audio": (), "prediction": (), "store": (False,),
}
# OpenAI's service_tier values as Anthropic's: "auto" (its default: Priority Tier
# where the organisation has that capacity, else standard) and "standard_only".
# OpenAI's "default" asks for standard processing; "priority" is what Anthropic's
# "auto" gives where it can. "flex" has no counterpart.
SERVICE_TIERS = {"auto": "auto", "default": "standard_only", "standard_only": "standard_only",
                 "priority": "auto"}
# The tiers Anthropic says it served at, by OpenAI's name for each; prices are
# looked up by these names too (a "priority" price applies to either provider).
SERVED_TIERS = {"standard": "default", "priority": "priority"}
# Extra keys that are fine to ignore here: Anthropic always reports usage in
# streams; the others are read where the body is built.
IGNORED_EXTRA = frozenset({"stream_options", "max_completion_tokens", "reasoning_effort",
                           "web_search_options"})
# Anthropic's web search tool, which OpenAI's web_search_options turns on.
WEB_SEARCH_TOOL = "web_search_20250305"
# Anthropic's own parameters, passed through as given.
PASSTHROUGH_EXTRA = frozenset({"top_k", "thinking"})

RATELIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")

# OpenAI's JSON mode (response_format json_object) as a tool Claude must call:
# its input, any JSON object, is the answer.
JSON_ANSWER_TOOL = "json_answer"
_JSON_ANSWER = {"name": JSON_ANSWER_TOOL,
                "description": "Give your whole answer as this tool's input: one JSON object.",
                "input_schema": {"type": "object"}}
_JSON_CHOICE = {"type": "tool", "name": JSON_ANSWER_TOOL}


class AnthropicAdapter:
    """Calls the Messages API over the shared HttpClient."""

    provider: ClassVar[str] = PROVIDER
    keeps_time: ClassVar[bool] = True  # every call is bounded by adapters.http

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        url, headers, body, json_answer = self._prepare(request, deployment, stream=False)
        labels = Labels(PROVIDER, deployment.name)
        resp = await self._http.post(url, headers=headers, body=body, timeouts=timeouts,
                                     labels=labels)
        with answer_shape(PROVIDER, deployment.name):
            if resp.status != 200:
                raise error_from_response(resp.status, resp.headers, resp.body, deployment)
            try:
                data = orjson.loads(resp.body)
            except ValueError:
                raise _malformed(deployment, resp.body) from None
            if isinstance(data, dict) and data.get("type") == "error":
                raise error_from_body(resp.status, resp.headers, data, deployment)
            return checked_response(parse_message(data, deployment, json_answer=json_answer))

    async def stream(self, request: ChatRequest, deployment: Deployment,
                     timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        url, headers, body, json_answer = self._prepare(request, deployment, stream=True)
        labels = Labels(PROVIDER, deployment.name)
        async with self._http.stream(url, headers=headers, body=body, timeouts=timeouts,
                                     labels=labels) as resp:
            if resp.status != 200:
                body = await resp.read()
                with answer_shape(PROVIDER, deployment.name):
                    raise error_from_response(resp.status, resp.headers, body, deployment)
            state = StreamState(deployment, json_answer=json_answer)
            async for event in iter_sse(resp.line_batches()):
                with answer_shape(PROVIDER, deployment.name):
                    delta = state.feed(event)
                    if delta is not None:
                        checked_delta(delta)
                if delta is not None:
                    yield delta
                if state.done:
                    return
            raise ConnectionFailed(
                "The Anthropic stream ended before message_stop",
                provider=PROVIDER, deployment=deployment.name,
            )

    def _prepare(self, request: ChatRequest, deployment: Deployment,
                 *, stream: bool) -> tuple[str, dict[str, str], bytes, bool]:
        """URL, headers, body, and whether the answer comes as the `json_answer`
        tool's input (OpenAI's JSON mode)."""
        base = deployment.api_base or resolve_base_url(PROVIDER, None, os.environ)
        payload = build_body(request, deployment, stream=stream)
        headers = {
            "content-type": "application/json",
            "anthropic-version": str(deployment.extra.get("anthropic_version") or API_VERSION),
        }
        key = deployment.key()
        if key:
            headers["x-api-key"] = key
        beta = deployment.extra.get("anthropic_beta")
        if beta:
            headers["anthropic-beta"] = str(beta)
        return (f"{base.rstrip('/')}/v1/messages",
                with_call_headers(with_extra_headers(headers, deployment), request),
                orjson.dumps(payload), payload.get("tool_choice") is _JSON_CHOICE)


# -- request translation -----------------------------------------------------

def build_body(request: ChatRequest, deployment: Deployment, *, stream: bool) -> dict[str, Any]:
    """The Messages API body for a neutral request (raises UnsupportedParameter)."""
    drop = bool(request.drop_params or deployment.drop_params)
    asked = _asked_max_tokens(request, deployment)
    body: dict[str, Any] = {
        "model": deployment.model,
        "max_tokens": DEFAULT_MAX_TOKENS if asked is None else asked,
        "messages": translate_messages(request.messages),
    }
    system = _system_blocks(request.messages)
    if system and not body["messages"]:
        # Only system messages (OpenAI answers those): Anthropic refuses a request
        # without messages, so the instruction goes as the user's turn.
        body["messages"] = [{"role": "user", "content": system}]
    elif system:
        # A plain string unless a part marks a cache breakpoint, which only a
        # block can carry.
        cached = any("cache_control" in block for block in system)
        body["system"] = system if cached else request.system_text
    if stream:
        body["stream"] = True
    _add_sampling(body, request)
    _add_stop(body, request.stop, drop)
    _add_tools(body, request)
    _add_web_search(body, request)
    _add_response_format(body, request.response_format, drop)
    _add_extra(body, request, drop)
    _add_thinking(body, request, chosen_here=asked is None)
    if body.get("tool_choice") is _JSON_CHOICE and _thinks(body):
        # Anthropic refuses a forced tool with thinking on.
        if not drop:
            raise UnsupportedParameter(
                "response_format", PROVIDER,
                "json_object reaches Claude as a tool it must call, which Anthropic does "
                "not allow with thinking on: leave out reasoning_effort or thinking, or "
                "ask for json_schema with a schema (structured outputs).")
        del body["tools"], body["tool_choice"]
    return body


def _system_blocks(messages: list[Message]) -> list[dict[str, Any]]:
    """The system messages' text as Anthropic's system blocks, each part's cache
    marker with it (images have no place in Anthropic's system prompt, as in
    `ChatRequest.system_text`). One block per message when none is marked, so
    that the text is the same as system_text's."""
    blocks: list[dict[str, Any]] = []
    for message in messages:
        if message.role != "system":
            continue
        texts = [p for p in message.parts if isinstance(p, TextPart)]
        if not any(p.cache_control for p in texts):
            texts = [TextPart(message.text)]
        blocks.extend(_cached({"type": "text", "text": p.text}, p.cache_control)
                      for p in texts if p.text)
    return blocks


def _cached(block: dict[str, Any], marker: dict[str, Any] | None) -> dict[str, Any]:
    """The block with the caller's prompt-cache breakpoint, if it set one."""
    if marker is not None:
        block["cache_control"] = marker
    return block


def _thinks(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") != "disabled"


def _asked_max_tokens(request: ChatRequest, deployment: Deployment) -> int | None:
    """The output limit the caller or the deployment set; None when neither did."""
    for value in (request.max_tokens, request.extra.get("max_completion_tokens"),
                  deployment.max_output_tokens):
        if value is not None:
            return int(value)
    return None


def _add_sampling(body: dict[str, Any], request: ChatRequest) -> None:
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.user:
        body["metadata"] = {"user_id": request.user}


def _add_stop(body: dict[str, Any], stop: list[str] | None, drop: bool) -> None:
    """OpenAI's stop as stop_sequences. Anthropic answers 400 to a sequence of
    only whitespace (OpenAI's common `stop: "\\n"`), so such a request is refused
    here, or under drop_params sent without those sequences."""
    kept = [s for s in stop or () if s.strip()]
    blank = [s for s in stop or () if not s.strip()]
    if blank and not drop:
        raise UnsupportedParameter(
            "stop", PROVIDER,
            f"Anthropic refuses stop sequences of only whitespace ({blank[0]!r}); "
            "each must contain a visible character.",
        )
    if kept:
        body["stop_sequences"] = kept


def _add_tools(body: dict[str, Any], request: ChatRequest) -> None:
    if request.tools:
        body["tools"] = [_cached(_tool(t.name, t.description, t.parameters, t.strict),
                                 t.cache_control) for t in request.tools]
    choice = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is False and request.tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    # Anthropic refuses a tool_choice without tools; with none, "none" is moot anyway.
    if choice is not None and request.tools:
        body["tool_choice"] = choice


def _add_web_search(body: dict[str, Any], request: ChatRequest) -> None:
    """OpenAI's web_search_options as Anthropic's web search tool: the searches
    run on Anthropic's side, and the answer cites what it found (returned as
    OpenAI's url_citation annotations; each search is billed, hence the cap)."""
    search = requested_web_search(request)
    if search is None:
        return
    tool: dict[str, Any] = {"type": WEB_SEARCH_TOOL, "name": "web_search",
                            "max_uses": MAX_SEARCHES[search.context_size]}
    if search.place:
        tool["user_location"] = {"type": "approximate", **search.place}
    body.setdefault("tools", []).append(tool)


def _tool(name: str, description: str | None, parameters: dict[str, Any] | None,
          strict: bool | None) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": name,
        "input_schema": parameters or {"type": "object", "properties": {}},
    }
    if description:
        tool["description"] = description
    if strict:
        tool["strict"] = True
    return tool


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        shapes = {"auto": "auto", "none": "none", "required": "any", "any": "any"}
        if choice not in shapes:
            raise InvalidRequest(f"Unknown tool_choice {choice!r}", param="tool_choice")
        return {"type": shapes[choice]}
    # {"name": f} or OpenAI's {"type": "function", "function": {"name": f}}
    name = choice.get("name") or (choice.get("function") or {}).get("name")
    if not name:
        raise InvalidRequest("tool_choice names no function", param="tool_choice")
    return {"type": "tool", "name": name}


def _add_response_format(body: dict[str, Any], fmt: ResponseFormat | None, drop: bool) -> None:
    if fmt is None or fmt.type == "text":
        return
    if fmt.type == "json_schema" and fmt.json_schema:
        schema = fmt.json_schema
        # Accept both the bare schema and OpenAI's {"name", "schema", "strict"} wrapper.
        if isinstance(schema.get("schema"), dict):
            schema = schema["schema"]
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return
    if fmt.type == "json_object" and "tools" not in body:
        # The tool's input is the answer; `_JSON_CHOICE` itself (not an equal
        # dict) marks the body, so a client's own tool of that name is never taken
        # for it.
        body["tools"] = [_JSON_ANSWER]
        body["tool_choice"] = _JSON_CHOICE
        return
    if not drop:
        why = ("json_object reaches Claude as a tool it must call, which cannot go with "
               "tools of the request's own (or web search)" if fmt.type == "json_object"
               else f"Anthropic has no {fmt.type} mode")
        raise UnsupportedParameter(
            "response_format", PROVIDER,
            f"{why}; use response_format json_schema with a schema (structured outputs) "
            "or describe the JSON in the prompt.",
        )


def _add_extra(body: dict[str, Any], request: ChatRequest, drop: bool) -> None:
    if request.n not in (None, 1) and not drop:
        raise UnsupportedParameter("n", PROVIDER, "Anthropic returns one choice per request.")
    for key, value in request.extra.items():
        if key in PASSTHROUGH_EXTRA:
            body[key] = value
        elif key == "service_tier" and value is not None:
            _add_service_tier(body, value, drop)
        elif not (drop or _is_noop(key, value)):
            raise UnsupportedParameter(key, PROVIDER)


def _add_service_tier(body: dict[str, Any], value: Any, drop: bool) -> None:
    tier = SERVICE_TIERS.get(value) if isinstance(value, str) else None
    if tier is not None:
        body["service_tier"] = tier
    elif not drop:
        raise UnsupportedParameter(
            "service_tier", PROVIDER,
            f"Anthropic serves 'auto' (Priority Tier where your organisation has it) or "
            f"'standard_only'; 'default' is sent as 'standard_only' and 'priority' as "
            f"'auto'. {value!r} has no counterpart.")


def _add_thinking(body: dict[str, Any], request: ChatRequest, *, chosen_here: bool) -> None:
    """OpenAI's reasoning_effort as extended thinking with that effort's budget
    (`interlock.reasoning_effort`); a `thinking` given in Anthropic's own terms wins.
    Anthropic counts the thinking inside max_tokens, so a limit Interlock chose
    itself grows to hold the budget and an answer, whichever way thinking was
    asked for; one the caller or the deployment set that cannot hold an
    effort's budget is refused before any call (with their own `thinking`,
    Anthropic's 400 says why)."""
    effort = requested_effort(request)
    if effort is not None and effort != "none" and "thinking" not in body:
        budget = BUDGETS[effort]
        if not chosen_here and body["max_tokens"] <= budget:
            raise InvalidRequest(
                f"reasoning_effort {effort!r} gives Claude a thinking budget of {budget:,} "
                f"tokens, which must be below its max_tokens ({body['max_tokens']:,}), the "
                "thinking included: raise max_tokens above the budget, or ask for less effort.",
                param="max_tokens", code="invalid_value")
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    budget_tokens = _thinking_budget(body.get("thinking"))
    if chosen_here and budget_tokens is not None:
        body["max_tokens"] = budget_tokens + DEFAULT_MAX_TOKENS


def _thinking_budget(thinking: Any) -> int | None:
    """The budget_tokens of an enabled `thinking`; None when it has none
    (disabled, or a shape without a budget)."""
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    return budget if isinstance(budget, int) and thinking.get("type") == "enabled" else None


def _is_noop(key: str, value: Any) -> bool:
    return value is None or key in IGNORED_EXTRA or value in UNSUPPORTED_EXTRA.get(key, ())


def translate_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Neutral messages -> Anthropic turns: system left out (it goes top-level),
    tool results as user blocks, consecutive same-role turns merged (a user
    turn's tool results first)."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
            if role == "user":
                # Anthropic wants a user turn's tool_result blocks before all else, but
                # OpenAI lets a user message come between a tool call and its result.
                # The sort is stable: each kind keeps its order.
                turns[-1]["content"].sort(key=lambda block: block["type"] != "tool_result")
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [_tool_result(message)]
    # With thinking on, an assistant turn that called tools must start with the
    # thinking blocks it was answered with, signatures intact.
    blocks = [dict(b) for b in message.thinking_blocks] if message.role == "assistant" else []
    blocks += _part_blocks(message)
    blocks.extend(_tool_use(call) for call in message.tool_calls)
    return blocks


def _part_blocks(message: Message, *, markers: bool = True) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        # Anthropic refuses empty text blocks (and a cache marker on one).
        if isinstance(part, TextPart) and not part.text:
            continue
        block = {"type": "text", "text": part.text} if isinstance(part, TextPart) else _image(part)
        blocks.append(_cached(block, part.cache_control if markers else None))
    return blocks


def _image(part: ImagePart) -> dict[str, Any]:
    if part.is_data_url:
        try:
            media_type, data = part.data_url_parts()
        except ValueError as exc:
            raise InvalidRequest(f"Bad image data URL: {exc}", param="messages") from None
        source = {"type": "base64", "media_type": _media_type(media_type), "data": data}
    else:
        source = {"type": "url", "url": part.url}
    return {"type": "image", "source": source}


# The base64 image types the Messages API takes; it answers 400 to any other.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _media_type(media_type: str) -> str:
    # `data_url_parts` has already made "image/jpg" the registered "image/jpeg".
    if media_type not in _IMAGE_TYPES:
        raise InvalidRequest(
            f"Anthropic takes images of type {', '.join(sorted(_IMAGE_TYPES))}, not "
            f"{media_type!r}: convert the image, or send it to another provider.",
            param="messages", code="unsupported_image_type")
    return media_type


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        raise InvalidRequest(
            f"The arguments of tool call {call.id!r} are not valid JSON", param="messages",
        ) from None
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _tool_result(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
    # Several parts go as blocks: joined into one string they ran together.
    content = (_part_blocks(message, markers=False)
               if message.has_images or len(message.parts) > 1 else message.text)
    # Anthropic refuses empty content; a result without output leaves it out.
    if content:
        block["content"] = content
    # A marker on any part of the result marks the result: the breakpoint covers
    # everything up to its end either way.
    marker = next((p.cache_control for p in reversed(message.parts) if p.cache_control), None)
    return _cached(block, marker)


# -- response translation ----------------------------------------------------

def parse_message(data: Any, deployment: Deployment, *,
                  json_answer: bool = False) -> ChatResponse:
    """A Messages API message object -> ChatResponse. With `json_answer` the
    request asked for OpenAI's JSON mode: the `json_answer` tool's input is the
    answer's text, and the call that carried it is not a tool call."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise _malformed(deployment, json.dumps(data)[:200].encode())
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    length = 0  # characters of text so far: where the next block starts
    for block in data["content"]:
        kind = block.get("type")
        if kind == "text":
            piece = block.get("text", "")
            text.append(piece)
            annotations += url_citations(block.get("citations"), length, length + len(piece))
            length += len(piece)
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
            thinking.append(_thinking_block(block))
        elif kind == "redacted_thinking":
            thinking.append(_thinking_block(block))
        elif kind == "tool_use" and json_answer and block.get("name") == JSON_ANSWER_TOOL:
            # Readable as the streamed text is: characters as they are, not \u escapes.
            text.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
            length += len(text[-1])
        elif kind == "tool_use":
            calls.append(ToolCall(id=block.get("id", ""), name=block.get("name", ""),
                                  # json.dumps spacing, as the streamed fragments have it
                                  arguments=json.dumps(block.get("input") or {})))
    return ChatResponse(
        id=data.get("id", ""),
        model=data.get("model", deployment.model),
        content="".join(text) if text or not calls else None,
        tool_calls=calls,
        finish_reason=_json_finish(data.get("stop_reason"), json_answer and not calls),
        usage=parse_usage(data.get("usage") or {}),
        reasoning="".join(reasoning) or None,
        thinking_blocks=thinking,
        annotations=annotations or None,
        service_tier=served_tier(data.get("usage")),
    )


def url_citations(citations: Any, start: int, end: int) -> list[dict[str, Any]]:
    """A text block's web search citations as OpenAI's url_citation annotations
    over the block's span of the answer (characters `start` to `end`). Citations
    of documents the caller sent (char, page, block locations) name no URL and
    are left out."""
    return [url_citation(start, end, c.get("url", ""), c.get("title") or "")
            for c in citations or () if c.get("type") == "web_search_result_location"]


def _thinking_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A thinking or redacted_thinking block as it must be sent back: exactly
    the fields Anthropic signed (LiteLLM's `thinking_blocks` shape)."""
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data", "")}
    return {"type": "thinking", "thinking": block.get("thinking", ""),
            "signature": block.get("signature", "")}


def _json_finish(stop_reason: str | None, json_answer: bool) -> FinishReason | None:
    """A JSON-mode answer ended by its tool call ended as an answer does."""
    if json_answer and stop_reason == "tool_use":
        return "stop"
    return finish_reason(stop_reason)


def finish_reason(stop_reason: str | None) -> FinishReason | None:
    if stop_reason is None:
        return None
    return STOP_REASONS.get(stop_reason, "stop")


def served_tier(usage: Any) -> str | None:
    """The tier Anthropic served the call at (`usage.service_tier`), in OpenAI's
    names (`SERVED_TIERS`): clients validate `service_tier` against OpenAI's enum,
    which has no "standard", so a typed client refused every Claude answer. A tier
    without an OpenAI name (a batch, a future one) is left out."""
    tier = usage.get("service_tier") if isinstance(usage, dict) else None
    return SERVED_TIERS.get(tier) if isinstance(tier, str) else None


def parse_usage(usage: Mapping[str, Any]) -> Usage:
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        web_searches=int((usage.get("server_tool_use") or {}).get("web_search_requests") or 0),
    )


class StreamState:
    """Folds Anthropic's stream events into neutral deltas, one event at a time."""

    def __init__(self, deployment: Deployment, *, json_answer: bool = False) -> None:
        self.deployment = deployment
        # JSON mode through the `json_answer` tool: its input streams as text.
        self.json_answer = json_answer
        self._json_blocks: dict[int, bool] = {}  # block index -> any text came
        self.done = False
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        # content block index -> (tool call index, whether any argument text came)
        self._tools: dict[int, list[Any]] = {}
        # content block index -> the thinking block being streamed (text, signature)
        self._thinking: dict[int, dict[str, Any]] = {}
        # Text blocks that cite web search results: index -> [where the block's
        # text starts in the answer, its citations]; `_length` counts the
        # answer's characters so far, so a block's span is known at its end.
        self._cited: dict[int, list[Any]] = {}
        self._length = 0
        # Blocks of Anthropic's own tools (web search): their input is not a call
        # for the client to make.
        self._server_tools: set[int] = set()

    def feed(self, event: ServerSentEvent) -> StreamDelta | None:
        try:
            data = orjson.loads(event.data)
        except ValueError:
            raise _malformed(self.deployment, event.data.encode()) from None
        if not isinstance(data, dict):
            raise _malformed(self.deployment, event.data.encode())
        kind = event.event or data.get("type")
        handler = self._handlers.get(kind or "")
        # Anthropic may add event types; unknown ones are skipped, as its docs ask.
        return handler(self, data) if handler else None

    def _message_start(self, data: dict[str, Any]) -> StreamDelta:
        message = data.get("message") or {}
        self.usage.update(message.get("usage") or {})
        return StreamDelta(id=message.get("id"), model=message.get("model"),
                           service_tier=served_tier(message.get("usage")))

    def _block_start(self, data: dict[str, Any]) -> StreamDelta | None:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use" and self.json_answer and block.get("name") == JSON_ANSWER_TOOL:
            self._json_blocks[int(data.get("index", -1))] = False
            return None
        if kind == "tool_use":
            tool_index = len(self._tools)
            self._tools[int(data.get("index", tool_index))] = [tool_index, False]
            call = ToolCallDelta(index=tool_index, id=block.get("id"), name=block.get("name"))
            return StreamDelta(tool_calls=[call])
        if kind == "text":
            self._cited[int(data.get("index", -1))] = [self._length, []]
            if block.get("text"):
                self._length += len(block["text"])
                return StreamDelta(text=block["text"])
            return None
        if kind == "server_tool_use":
            self._server_tools.add(int(data.get("index", -1)))
            return None
        if kind == "thinking":
            self._thinking[int(data.get("index", -1))] = _thinking_block(block)
            return StreamDelta(reasoning=block["thinking"]) if block.get("thinking") else None
        if kind == "redacted_thinking":
            return StreamDelta(thinking_blocks=[_thinking_block(block)])
        return None

    def _block_delta(self, data: dict[str, Any]) -> StreamDelta | None:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            piece = delta.get("text", "")
            self._length += len(piece)
            return StreamDelta(text=piece)
        if kind == "citations_delta":
            cited = self._cited.get(int(data.get("index", -1)))
            if cited is not None:
                cited[1].append(delta.get("citation") or {})
            return None
        if kind == "thinking_delta":
            piece = delta.get("thinking", "")
            block = self._thinking.get(int(data.get("index", -1)))
            if block is not None:
                block["thinking"] += piece
            return StreamDelta(reasoning=piece)
        if kind == "signature_delta":
            block = self._thinking.get(int(data.get("index", -1)))
            if block is not None:
                block["signature"] += delta.get("signature", "")
            return None
        if kind == "input_json_delta":
            return self._input_json(data, delta)
        return None

    def _input_json(self, data: dict[str, Any], delta: dict[str, Any]) -> StreamDelta | None:
        """A fragment of a tool call's input: a call's arguments, JSON mode's
        answer text, or a server tool's input (not shown)."""
        index = int(data.get("index", -1))
        if index in self._server_tools:
            return None
        fragment = delta.get("partial_json", "")
        if index in self._json_blocks:
            if not fragment:
                return None
            self._json_blocks[index] = True
            self._length += len(fragment)
            return StreamDelta(text=fragment)
        tool = self._tools.get(index)
        if tool is None:
            raise _malformed(self.deployment, json.dumps(data).encode())
        if not fragment:
            return None
        tool[1] = True
        return StreamDelta(tool_calls=[ToolCallDelta(index=tool[0], arguments=fragment)])

    def _block_stop(self, data: dict[str, Any]) -> StreamDelta | None:
        if self._json_blocks.get(int(data.get("index", -1))) is False:
            self._length += 2
            return StreamDelta(text="{}")  # an empty input streams no JSON
        cited = self._cited.pop(int(data.get("index", -1)), None)
        if cited is not None:
            found = url_citations(cited[1], cited[0], self._length)
            return StreamDelta(annotations=found) if found else None
        thinking = self._thinking.pop(int(data.get("index", -1)), None)
        if thinking is not None:
            # Whole and signed only now: the client needs it to continue a tool loop.
            return StreamDelta(thinking_blocks=[thinking])
        tool = self._tools.get(int(data.get("index", -1)))
        if tool is not None and not tool[1]:
            # A call without arguments streams no JSON; "{}" keeps it equal to
            # the non-streamed answer, which always has an input object.
            return StreamDelta(tool_calls=[ToolCallDelta(index=tool[0], arguments="{}")])
        return None

    def _message_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta") or {}
        self.stop_reason = delta.get("stop_reason") or self.stop_reason
        # message_delta usage is cumulative; it may repeat the input counts.
        self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})

    def _message_stop(self, data: dict[str, Any]) -> StreamDelta:
        self.done = True
        json_answer = bool(self._json_blocks) and not self._tools
        return StreamDelta(finish_reason=_json_finish(self.stop_reason, json_answer) or "stop",
                           usage=parse_usage(self.usage))

    def _error(self, data: dict[str, Any]) -> None:
        raise error_from_body(None, {}, data, self.deployment)

    def _ignore(self, data: dict[str, Any]) -> None:
        return None

    _handlers: ClassVar[dict[str, Any]] = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "error": _error,
        "ping": _ignore,
    }


# -- errors ------------------------------------------------------------------

def error_from_response(status: int, headers: Mapping[str, str], body: bytes,
                        deployment: Deployment) -> ProviderError:
    """The typed error for a non-200 answer."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        text = body.decode("utf-8", errors="replace")[:500]
        data = {"type": "error", "error": {"type": "", "message": text or f"HTTP {status}"}}
    return error_from_body(status, headers, data, deployment)


def error_from_body(status: int | None, headers: Mapping[str, str], data: dict[str, Any],
                    deployment: Deployment) -> ProviderError:
    """The typed error for an Anthropic error object (HTTP body or `event: error`)."""
    found = data.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    etype = str(error.get("type") or "")
    key = deployment.key()
    message = redact(str(error.get("message") or ""), key)
    cls = classify(status, etype, message)
    retry_after = parse_retry_after(headers)
    if retry_after is None and cls is RateLimited:
        retry_after = ratelimit_reset_after(headers)
    return cls(
        upstream_error_text(PROVIDER, deployment.name, status, etype, message),
        provider=PROVIDER, deployment=deployment.name,
        status=status if status is not None else DOCUMENTED_STATUS.get(etype),
        retry_after=retry_after, body=redact_json(data, key),
    )


def classify(status: int | None, etype: str, message: str) -> type[ProviderError]:
    lowered = message.lower()
    if (status in (None, 400, 413) or etype == "invalid_request_error") and any(
            text in lowered for text in CONTEXT_WINDOW_TEXTS):
        return ContextWindowExceeded
    if any(text in lowered for text in CONTENT_FILTER_TEXTS):
        return ContentFiltered
    by_type = ERROR_TYPES.get(etype)
    if status is None:
        return by_type or UpstreamServerError
    by_status = error_for_status(status)
    # The status wins where the type says only "something failed" (so a 503 is
    # Overloaded, as it is from OpenAI and Gemini) or less than the status does
    # (an invalid_request_error sent with 422 is an UnprocessableEntity).
    if by_type is None or etype in GENERIC_TYPES or issubclass(by_status, by_type):
        return by_status
    return by_type


def ratelimit_reset_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until Anthropic's exhausted rate limits reset, from the RFC 3339
    `anthropic-ratelimit-*-reset` headers (all of them when none says which)."""
    now = time.time() if now is None else now
    resets: list[float] = []
    exhausted: list[float] = []
    for kind in RATELIMIT_KINDS:
        value = headers.get(f"anthropic-ratelimit-{kind}-reset")
        when = _parse_rfc3339(value) if value else None
        if when is None:
            continue
        resets.append(when)
        if headers.get(f"anthropic-ratelimit-{kind}-remaining") == "0":
            exhausted.append(when)
    chosen = exhausted or resets
    if not chosen:
        return None
    return max(0.0, max(chosen) - now)


def _parse_rfc3339(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _malformed(deployment: Deployment, raw: bytes) -> UpstreamServerError:
    snippet = redact(raw[:200].decode("utf-8", errors="replace"), deployment.key())
    return UpstreamServerError(
        f"Anthropic sent a malformed answer: {snippet!r}",
        provider=PROVIDER, deployment=deployment.name,
    )
