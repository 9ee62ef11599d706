"""Request translation: a neutral `ChatRequest` as a Messages API body (the
parameters; the messages themselves are `adapters.anthropic.messages`'s).
Raises UnsupportedParameter / InvalidRequest for what Anthropic cannot take.

Imports: the standard library, `types`, `errors`, `catalog`, `reasoning_effort`,
`web_search`, `adapters.anthropic.messages`, `adapters.anthropic.messages_api`.
"""

from __future__ import annotations

from typing import Any

from interlock.adapters.anthropic.messages import (
    cached,
    system_blocks,
    system_texts,
    translate_messages,
)
from interlock.adapters.anthropic.messages_api import (
    DEFAULT_MAX_TOKENS,
    JSON_ANSWER,
    JSON_CHOICE,
    PROVIDER,
)
from interlock.catalog import Deployment
from interlock.errors import InvalidRequest, UnsupportedParameter
from interlock.reasoning_effort import BUDGETS, requested_effort
from interlock.types import ChatRequest, Message, ResponseFormat
from interlock.web_search import MAX_SEARCHES, requested_web_search

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
# Extra keys that are fine to ignore here: Anthropic always reports usage in
# streams; the others are read where the body is built.
IGNORED_EXTRA = frozenset({"stream_options", "max_completion_tokens", "reasoning_effort",
                           "web_search_options"})
# Anthropic's web search tool, which OpenAI's web_search_options turns on.
WEB_SEARCH_TOOL = "web_search_20250305"
# Anthropic's own parameters, passed through as given.
PASSTHROUGH_EXTRA = frozenset({"top_k", "thinking"})


def build_body(request: ChatRequest, deployment: Deployment, *, stream: bool) -> dict[str, Any]:
    """The Messages API body for a neutral request (raises UnsupportedParameter)."""
    drop = bool(request.drop_params or deployment.drop_params)
    asked = _asked_max_tokens(request, deployment)
    body: dict[str, Any] = {
        "model": deployment.model,
        "max_tokens": DEFAULT_MAX_TOKENS if asked is None else asked,
        "messages": translate_messages(request.messages),
    }
    _add_system(body, request.messages)
    if stream:
        body["stream"] = True
    _add_sampling(body, request)
    _add_stop(body, request.stop, drop)
    _add_tools(body, request)
    _add_web_search(body, request)
    # Decided once, before JSON mode, which cannot go with it.
    thinking, effort = _thinking(request)
    _add_response_format(body, request.response_format, drop, thinks=_thinks(thinking))
    _add_extra(body, request, drop)
    _add_thinking(body, thinking, effort, chosen_here=asked is None)
    return body


def _add_system(body: dict[str, Any], messages: list[Message]) -> None:
    """The system messages as the top-level `system`: a plain string, joined as
    `ChatRequest.system_text` joins them, unless a part marks a cache
    breakpoint, which only a block can carry. A request of system messages only
    (OpenAI answers those) sends them as the user's turn, since Anthropic
    refuses a request without messages. Blocks are built only where sent."""
    texts, marked = system_texts(messages)
    if not any(texts):
        return
    if not body["messages"]:
        body["messages"] = [{"role": "user", "content": system_blocks(messages)}]
    else:
        body["system"] = system_blocks(messages) if marked else "\n\n".join(texts)


def _thinks(thinking: Any) -> bool:
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
        body["tools"] = [cached(_tool(t.name, t.description, t.parameters, t.strict),
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


def _add_response_format(body: dict[str, Any], fmt: ResponseFormat | None, drop: bool,
                         *, thinks: bool) -> None:
    if fmt is None or fmt.type == "text":
        return
    if fmt.type == "json_schema" and fmt.json_schema:
        schema = fmt.json_schema
        # Accept both the bare schema and OpenAI's {"name", "schema", "strict"} wrapper.
        if isinstance(schema.get("schema"), dict):
            schema = schema["schema"]
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return
    if fmt.type == "json_object" and "tools" not in body and not thinks:
        # The tool's input is the answer; `JSON_CHOICE` itself (not an equal
        # dict) marks the body, so a client's own tool of that name is never taken
        # for it.
        body["tools"] = [JSON_ANSWER]
        body["tool_choice"] = JSON_CHOICE
        return
    if fmt.type == "json_object" and "tools" not in body and not drop:
        # Anthropic refuses a forced tool with thinking on.
        raise UnsupportedParameter(
            "response_format", PROVIDER,
            "json_object reaches Claude as a tool it must call, which Anthropic does "
            "not allow with thinking on: leave out reasoning_effort or thinking, or "
            "ask for json_schema with a schema (structured outputs).")
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


def _thinking(request: ChatRequest) -> tuple[Any, str | None]:
    """The `thinking` the body carries, and the reasoning_effort it comes from, if
    it does: a `thinking` given in Anthropic's own terms wins (as given, and
    with no effort); else OpenAI's reasoning_effort turns it on with that
    effort's budget (`interlock.reasoning_effort`; "none" leaves it off). An
    effort OpenAI does not define is refused either way."""
    effort = requested_effort(request)
    if "thinking" in request.extra:
        return request.extra["thinking"], None
    if effort is None or effort == "none":
        return None, None
    return {"type": "enabled", "budget_tokens": BUDGETS[effort]}, effort


def _add_thinking(body: dict[str, Any], thinking: Any, effort: str | None, *,
                  chosen_here: bool) -> None:
    """The thinking `_thinking` decided on (a caller's own passes through with
    the other extras). Anthropic counts the thinking inside max_tokens, so a
    limit Interlock chose itself grows to hold the budget and an answer,
    whichever way thinking was asked for; one the caller or the deployment set
    that cannot hold an effort's budget is refused before any call (with their
    own `thinking`, Anthropic's 400 says why)."""
    if effort is not None:
        budget = thinking["budget_tokens"]
        if not chosen_here and body["max_tokens"] <= budget:
            raise InvalidRequest(
                f"reasoning_effort {effort!r} gives Claude a thinking budget of {budget:,} "
                f"tokens, which must be below its max_tokens ({body['max_tokens']:,}), the "
                "thinking included: raise max_tokens above the budget, or ask for less effort.",
                param="max_tokens", code="invalid_value")
        body["thinking"] = thinking
    budget_tokens = _thinking_budget(thinking)
    if chosen_here and budget_tokens is not None:
        body["max_tokens"] = budget_tokens + DEFAULT_MAX_TOKENS


def _thinking_budget(thinking: Any) -> int | None:
    """The budget_tokens of an enabled `thinking`; None when it has none
    (disabled, or a shape without a budget)."""
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    return budget if isinstance(budget, int) and thinking.get("type") == "enabled" else None


def _is_noop(key: str, value: Any) -> bool:
    return value is None or key in IGNORED_EXTRA or value in UNSUPPORTED_EXTRA.get(key, ())
