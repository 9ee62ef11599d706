"""OpenAI chat-completions JSON in, neutral `ChatRequest` out, with clear errors.

Both the gateway (request bodies) and the library (`Router.acompletion`
keyword arguments) come through here, so the two behave the same. Parsing is
written out by hand rather than through a pydantic model: it runs on every
request, and each error names the exact field, what was wrong and how to fix it.

The deprecated `functions`/`function_call` parameters and `function` messages
become tools, tool choice and tool results; a request that used `functions`
(without `tools`) is marked `legacy_functions`, and `openai_response` answers it
in that API's shape (`message.function_call`, finish_reason "function_call").

Imports: the standard library, `types`, `errors`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from interlock.errors import InvalidRequest
from interlock.types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolSpec,
)

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool", "function": "tool"}
# Fields with a neutral home; everything else an OpenAI client may send goes to `extra`.
_KNOWN = {"model", "messages", "stream", "temperature", "top_p", "max_tokens",
          "max_completion_tokens", "stop", "tools", "tool_choice", "parallel_tool_calls",
          "response_format", "user", "n", "metadata", "fallbacks", "drop_params",
          "stream_options", "functions", "function_call"}
# Interlock-only fields that are never forwarded upstream.
_LOCAL = {"mock_response", "num_retries", "timeout", "tags"}
# Credentials and endpoints belong to deployments. Given per call (LiteLLM lets a
# call override them), they would otherwise go upstream as body fields: a key
# sent to a provider it is not for.
DEPLOYMENT_ONLY = ("api_key", "api_base", "base_url", "api_version")
# Arguments of an OpenAI SDK or LiteLLM call that are not fields of the body it
# sends: `extra_body` is merged into the body, `max_retries` is the retries
# (Interlock's are num_retries), `extra_headers` would be HTTP headers.
CALL_ONLY = ("extra_body", "max_retries", "extra_headers")
# LiteLLM takes `allowed_openai_params` per call too; here it is the deployment's
# alone (adapters.openai.server_params): sent on, OpenAI would refuse it as an
# unknown field, and a client that could widen what reaches a provider would
# undo the operator's drop_params.
PER_DEPLOYMENT_SETTINGS = ("allowed_openai_params",)
_CALL_KEYS = frozenset(DEPLOYMENT_ONLY + CALL_ONLY + PER_DEPLOYMENT_SETTINGS)
# LiteLLM's testing switches and its name for `timeout`, which Interlock carries
# out (`_litellm_controls`).
_TESTING_SWITCHES = {"mock_testing_fallbacks": "fallbacks",
                     "mock_testing_context_fallbacks": "context_window",
                     "mock_testing_content_policy_fallbacks": "content_policy"}
# The switch that asks for each forced failure (what a refusal of it names).
TESTING_SWITCH = {kind: switch for switch, kind in _TESTING_SWITCHES.items()}
# A call's own chains for the special failures (its `fallbacks` are an OpenAI-body
# field here too, read on the plain path).
KIND_FALLBACKS = ("context_window_fallbacks", "content_policy_fallbacks")
_CONTROLS = frozenset({"request_timeout", "mock_testing_rate_limit_error", "mock_timeout",
                       *_TESTING_SWITCHES, *KIND_FALLBACKS})
# LiteLLM call arguments that steer LiteLLM itself (its cache, logging, cost
# table, provider lookup, client objects). Sent on, a provider would refuse them
# as unknown fields; they are taken out and reported in `ignored_params`.
IGNORED_CALL_ARGS = frozenset({
    "caching", "cache", "specific_deployment", "model_list", "custom_llm_provider",
    "input_cost_per_token", "output_cost_per_token", "input_cost_per_second",
    "output_cost_per_second", "litellm_logging_obj", "litellm_call_id", "litellm_trace_id",
    "logger_fn", "verbose", "mock_delay", "mock_tool_calls", "no-log", "proxy_server_request",
    "model_info", "preset_cache_key", "base_model", "context_window_fallback_dict",
    "cooldown_time", "priority",
    "force_timeout", "client", "acompletion", "ensure_alternating_roles",
    "user_continue_message", "assistant_continue_message", "supports_system_message",
    "hf_model_name", "initial_prompt_value", "final_prompt_value", "roles", "bos_token",
    "eos_token", "litellm_metadata", "model_group",
})
LITELLM_ONLY = _CONTROLS | IGNORED_CALL_ARGS
# Every key that takes a body off the plain path, for one check: most have none.
_SPECIAL = _CALL_KEYS | LITELLM_ONLY
# Optional fields given under either of two names.
_TOOLS = frozenset({"tools", "functions"})
_TOOL_CHOICE = frozenset({"tool_choice", "function_call"})
# Bounds of a request's own `timeout` and `num_retries`. Retries as router_settings
# bounds them; an hour of timeout, so that milliseconds given as seconds are caught.
MAX_TIMEOUT = 3600.0
MAX_RETRIES = 20


def _fail(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _typed(value: Any, kind: type | tuple[type, ...], param: str, expected: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise _fail(f"'{param}' must be {expected}, got a boolean.", param)
    if not isinstance(value, kind):
        raise _fail(f"'{param}' must be {expected}, got {type(value).__name__}.", param)
    return value


def _number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    _typed(value, (int, float), key, "a number")
    if not lo <= value <= hi:
        raise _fail(f"'{key}' must be between {lo:g} and {hi:g}, got {value}.", key)
    return float(value)


def _int_in(body: Mapping[str, Any], key: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    _typed(value, int, key, "an integer")
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise _fail(f"'{key}' must be {bound}, got {value}.", key)
    return int(value)


def _choice_count(body: Mapping[str, Any]) -> int | None:
    """`n`, which must be 1: the neutral response holds one choice, so with n > 1
    the provider would bill for choices the client never sees. drop_params asks
    for one choice instead of an error."""
    n = _int_in(body, "n", 1)
    if n is None or n == 1:
        return n
    if body.get("drop_params") is True:
        return None
    raise InvalidRequest(
        f"'n' is {n}, but Interlock returns one choice per request (the other choices "
        "would be billed and lost). Send separate requests, or set drop_params: true "
        "to get one choice.", param="n", code="unsupported_parameter")


def _parts(content: Any, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    _typed(content, list, where, "a string or a list of content parts")
    parts: list[Part] = []
    for i, item in enumerate(content):
        path = f"{where}[{i}]"
        _typed(item, dict, path, "an object")
        kind = item.get("type")
        if kind == "text":
            parts.append(TextPart(_typed(item.get("text"), str, f"{path}.text", "a string"),
                                  cache_control=_cache_control(item, path)))
        elif kind == "image_url":
            image = item.get("image_url")
            if isinstance(image, str):
                image = {"url": image}
            _typed(image, dict, f"{path}.image_url", "an object with a 'url'")
            url = _typed(image.get("url"), str, f"{path}.image_url.url", "a string")
            if not url.startswith(("http://", "https://", "data:")):
                raise _fail(f"'{path}.image_url.url' must be an http(s) URL or a data URL.",
                            f"{path}.image_url.url")
            parts.append(ImagePart(url, detail=image.get("detail"),
                                   cache_control=_cache_control(item, path)))
        else:
            raise _fail(f"'{path}.type' must be 'text' or 'image_url', got {kind!r}.",
                        f"{path}.type")
    return parts


def _cache_control(item: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """A part's or tool's prompt-cache marker (LiteLLM's form for Anthropic's
    prompt caching), kept for the adapters to send or leave out."""
    marker = item.get("cache_control")
    if marker is None:
        return None
    return dict(_typed(marker, dict, f"{path}.cache_control", 'an object like {"type": '
                       '"ephemeral"}'))


def _tool_calls(value: Any, where: str) -> list[ToolCall]:
    if value is None:
        return []
    _typed(value, list, where, "a list")
    calls = []
    for i, item in enumerate(value):
        path = f"{where}[{i}]"
        _typed(item, dict, path, "an object")
        fn = _typed(item.get("function"), dict, f"{path}.function", "an object")
        name = _typed(fn.get("name"), str, f"{path}.function.name", "a string")
        args = fn.get("arguments", "{}")
        _typed(args, str, f"{path}.function.arguments", "a JSON string")
        calls.append(ToolCall(id=str(item.get("id") or f"call_{i}"), name=name, arguments=args,
                              thought_signature=_thought_signature(item)))
    return calls


def _thought_signature(call: Mapping[str, Any]) -> str | None:
    """A Gemini thought signature sent back with a tool call: Google's
    `extra_content.google` (as Interlock returns it), or LiteLLM's
    `provider_specific_fields`."""
    extra = call.get("extra_content")
    for holder in (extra.get("google") if isinstance(extra, dict) else None,
                   call.get("provider_specific_fields")):
        if isinstance(holder, dict) and isinstance(holder.get("thought_signature"), str):
            return str(holder["thought_signature"])
    return None


# What each kind of thinking block carries (Anthropic signs these fields).
_THINKING_FIELDS = {"thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}


def _thinking_blocks(value: Any, path: str) -> list[dict[str, Any]]:
    """An assistant turn's `thinking_blocks` (LiteLLM's field), sent back as given."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"'{path}' must be a list of thinking blocks.", path)
    blocks = []
    for i, block in enumerate(value):
        fields = _THINKING_FIELDS.get(str(block.get("type"))) if isinstance(block, dict) else None
        if fields is None or not all(isinstance(block.get(f), str) for f in fields):
            raise _fail(f"'{path}[{i}]' must be a thinking block as the answer gave it: "
                        '{"type": "thinking", "thinking": ..., "signature": ...} or '
                        '{"type": "redacted_thinking", "data": ...}.', f"{path}[{i}]")
        blocks.append({"type": block["type"], **{f: block[f] for f in fields}})
    return blocks


def _message(raw: Any, i: int) -> Message:
    path = f"messages[{i}]"
    _typed(raw, dict, path, "an object with 'role' and 'content'")
    given = raw.get("role")
    role = _ROLES.get(given) if isinstance(given, str) else None
    if role is None:
        raise _fail(f"'{path}.role' must be one of system, developer, user, assistant, tool; "
                    f"got {raw.get('role')!r}.", f"{path}.role")
    content = raw.get("content")
    if content.__class__ is str:
        # Most messages are a role and a string: that case skips the general parsers,
        # and a system or user message without a name needs nothing more.
        msg = Message(role, [TextPart(content)])  # type: ignore[arg-type]
        if (role == "user" or role == "system") and "name" not in raw:
            return msg
    else:
        msg = Message(role, _parts(content, f"{path}.content"))  # type: ignore[arg-type]
    if "name" in raw:
        msg.name = _optional_typed(raw, "name", str, "a string", param=f"{path}.name")
    if role == "assistant":
        msg.tool_calls = _tool_calls(raw.get("tool_calls"), f"{path}.tool_calls")
        msg.thinking_blocks = _thinking_blocks(raw.get("thinking_blocks"),
                                               f"{path}.thinking_blocks")
        if raw.get("function_call"):
            where = f"{path}.function_call"
            fc = _typed(raw["function_call"], dict, where, "an object with 'name'")
            # One id per message: a conversation makes many legacy calls, and
            # Anthropic refuses a repeated tool_use id.
            msg.tool_calls.append(ToolCall(
                id=f"call_{i}", name=_typed(fc.get("name", ""), str, f"{where}.name",
                                            "a string"),
                arguments=_typed(fc.get("arguments", "{}"), str, f"{where}.arguments",
                                 "a string of JSON")))
    elif role == "tool":
        msg.tool_call_id = (_optional_typed(raw, "tool_call_id", str, "a string",
                                            param=f"{path}.tool_call_id") or msg.name)
        if not msg.tool_call_id:
            raise _fail(f"'{path}.tool_call_id' is required for a tool message.",
                        f"{path}.tool_call_id")
    if role != "assistant" and content is None:
        # Only an assistant turn may go without content (it made tool calls);
        # OpenAI refuses a null one elsewhere, and sent on it would be an empty turn.
        raise _fail(f"'{path}.content' is required: a string or a list of content parts.",
                    f"{path}.content")
    return msg


def _tools(body: Mapping[str, Any]) -> list[ToolSpec] | None:
    raw = body.get("tools")
    if raw is None and body.get("functions") is not None:
        functions = _typed(body["functions"], list, "functions", "a list of functions")
        raw = [{"type": "function", "function": f} for f in functions]
    if raw is None:
        return None
    _typed(raw, list, "tools", "a list")
    tools = []
    for i, item in enumerate(raw):
        path = f"tools[{i}]"
        _typed(item, dict, path, "an object")
        if item.get("type", "function") != "function":
            raise _fail(f"'{path}.type' must be 'function'.", f"{path}.type")
        fn = _typed(item.get("function"), dict, f"{path}.function", "an object")
        name = _typed(fn.get("name"), str, f"{path}.function.name", "a string")
        params = fn.get("parameters")
        if params is not None:
            _typed(params, dict, f"{path}.function.parameters", "a JSON schema object")
        tools.append(ToolSpec(
            name=name, parameters=params,
            description=_optional_typed(fn, "description", str, "a string",
                                        param=f"{path}.function.description"),
            strict=_optional_typed(fn, "strict", bool, "true or false",
                                   param=f"{path}.function.strict"),
            cache_control=_cache_control(item, path)))
    return tools


def _tool_choice(body: Mapping[str, Any]) -> str | dict[str, Any] | None:
    choice = body.get("tool_choice", body.get("function_call"))
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        fn = choice.get("function", choice)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return {"name": fn["name"]}
    raise _fail("'tool_choice' must be 'auto', 'none', 'required' or "
                "{'type': 'function', 'function': {'name': ...}}.", "tool_choice")


def model_response_format(model: type) -> dict[str, Any]:
    """The `json_schema` response format of a pydantic model class, as LiteLLM
    (and the OpenAI SDK's `parse`) make it: named after the class, strict, so
    that every object lists all its properties as required and allows no others."""
    return {"type": "json_schema",
            "json_schema": {"name": model.__name__, "strict": True,
                            "schema": _strict_schema(model.model_json_schema())}}  # type: ignore[attr-defined]


def _strict_schema(node: Any) -> Any:
    # Strict structured outputs refuse an object schema that leaves a property
    # optional or allows others; a null default says no more than the type does.
    if isinstance(node, list):
        return [_strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_schema(v) for k, v in node.items()
           if not (k == "default" and v is None)}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _is_model_class(value: Any) -> bool:
    return isinstance(value, type) and callable(getattr(value, "model_json_schema", None))


def _response_format(body: Mapping[str, Any]) -> ResponseFormat | None:
    raw = body.get("response_format")
    if raw is None:
        return None
    if _is_model_class(raw):  # LiteLLM takes a pydantic model class (library calls)
        raw = model_response_format(raw)
    _typed(raw, dict, "response_format", "an object")
    kind = raw.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        where = "response_format.json_schema"
        spec = _typed(raw.get("json_schema"), dict, where, "an object")
        return ResponseFormat(
            type="json_schema",
            json_schema=_optional_typed(spec, "schema", dict, "a JSON schema object",
                                        param=f"{where}.schema"),
            name=_optional_typed(spec, "name", str, "a string", param=f"{where}.name"),
            strict=_optional_typed(spec, "strict", bool, "true or false",
                                   param=f"{where}.strict"))
    raise _fail("'response_format.type' must be 'text', 'json_object' or 'json_schema'.",
                "response_format.type")


def _stop(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise _fail("'stop' must be a string or a list of strings.", "stop")


def _optional_typed(body: Mapping[str, Any], key: str, kind: type, expected: str, *,
                    param: str | None = None) -> Any:
    value = body.get(key)
    return None if value is None else _typed(value, kind, param or key, expected)


def _check_stream_options(body: Mapping[str, Any]) -> None:
    options = _optional_typed(body, "stream_options", dict, "an object")
    if options is not None and options.get("include_usage") is not None:
        _typed(options["include_usage"], bool, "stream_options.include_usage", "true or false")


def _timeout(body: Mapping[str, Any]) -> float | None:
    value = _number(body, "timeout", 0.0, MAX_TIMEOUT)
    if value == 0.0:
        raise _fail("'timeout' must be more than 0 seconds.", "timeout")
    return value


def _tags(value: Any, param: str) -> list[str]:
    # LiteLLM takes one tag as a string as well as a list; routing compares sets
    # of whole tags, so a lone string must not be read as its letters.
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return value
    raise _fail(f"'{param}' must be a string or a list of strings.", param)


def _mock_response(body: Mapping[str, Any]) -> str | None:
    value = body.get("mock_response")
    if value is None or isinstance(value, str):
        return value
    # LiteLLM also takes an exception or a response object here. Dropping it
    # would call the real provider, and spend money, in a test meant to spend none.
    raise _fail(
        f"'mock_response' must be a string (the text to answer with), got "
        f"{type(value).__name__}. Interlock mocks answers, not failures: to test a "
        "failure, point the deployment at the fake upstream (interlock fake-upstream) "
        "and script the fault there.", "mock_response")


def parse_call_defaults(defaults: Mapping[str, Any]) -> ChatRequest:
    """Call arguments given ahead of the call (a deployment's litellm_params, a
    Router's default_litellm_params), checked and parsed as a request's would be;
    apply them with `ChatRequest.with_defaults`."""
    return parse_chat_request({"model": "-", "messages": [{"role": "user", "content": "-"}],
                               **defaults})


# Headers a call may not set: the credentials belong to the deployment (its
# api_key, or its own extra_headers for a proxy's token), where they are kept out
# of reprs and listings; the framing ones are the HTTP client's.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key",
                                 "api-key", "x-goog-api-key", "cookie"})
_FRAMING_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                              "connection"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def call_headers(raw: Any) -> dict[str, str] | None:
    """A library call's `extra_headers` (LiteLLM's per-call argument), checked:
    HTTP headers to send to the provider with this call, over the deployment's."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _fail("'extra_headers' must be a dict of header names to string values, "
                    f"got {type(raw).__name__}.", "extra_headers")
    for name, value in raw.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise _fail(f"'extra_headers' has {name!r}, which is not an HTTP header name.",
                        "extra_headers")
        lowered = name.lower()
        if lowered in _CREDENTIAL_HEADERS:
            raise _fail(f"'extra_headers' may not set {name!r} per call: credentials belong "
                        "to the deployment (model_list[].litellm_params.api_key, or its "
                        "extra_headers for a proxy's own token).", "extra_headers")
        if lowered in _FRAMING_HEADERS:
            raise _fail(f"'extra_headers' may not set {name!r}: the HTTP client sets it.",
                        "extra_headers")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            # The value is not echoed: a header may hold a secret.
            raise _fail(f"'extra_headers[{name!r}]' must be a string without line breaks.",
                        "extra_headers")
    return dict(raw) or None


def include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a stream should end with a usage chunk (`stream_options.include_usage`);
    for a body that `parse_chat_request` accepted, which checked the types."""
    return bool((body.get("stream_options") or {}).get("include_usage"))


# The optional fields with a neutral home: (the body keys that give it, the
# ChatRequest field, its parser), read only when the body has one of the keys,
# in this order (so that of two bad fields the same one is reported).
_OPTIONAL_FIELDS: tuple[tuple[frozenset[str], str, Callable[[Mapping[str, Any]], Any]], ...] = (
    (frozenset({"temperature"}), "temperature", lambda b: _number(b, "temperature", 0.0, 2.0)),
    (frozenset({"top_p"}), "top_p", lambda b: _number(b, "top_p", 0.0, 1.0)),
    (frozenset({"stop"}), "stop", _stop),
    (_TOOLS, "tools", _tools),
    (_TOOL_CHOICE, "tool_choice", _tool_choice),
    (frozenset({"parallel_tool_calls"}), "parallel_tool_calls",
     lambda b: _optional_typed(b, "parallel_tool_calls", bool, "true or false")),
    (frozenset({"response_format"}), "response_format", _response_format),
    (frozenset({"user"}), "user", lambda b: _optional_typed(b, "user", str, "a string")),
    (frozenset({"n"}), "n", _choice_count),
    (frozenset({"drop_params"}), "drop_params",
     lambda b: _optional_typed(b, "drop_params", bool, "true or false")),
    (frozenset({"mock_response"}), "mock_response", _mock_response),
    (frozenset({"timeout"}), "timeout", _timeout),
    (frozenset({"num_retries"}), "num_retries",
     lambda b: _int_in(b, "num_retries", 0, MAX_RETRIES)),
)
# Every optional field `parse_chat_request` reads with a parser of its own: those of
# the table, and the three it reads before building the request.
_OPTIONAL = frozenset({"max_tokens", "max_completion_tokens", "stream_options",
                       *(key for keys, _, _ in _OPTIONAL_FIELDS for key in keys)})


def _no_model_name(model: Any) -> NoReturn:
    if model is not None and model != "":  # given, but not a name
        raise InvalidRequest(f"'model' must be a string, the name of a model group; got "
                             f"{type(model).__name__} {model!r:.40}.", param="model",
                             code="invalid_type")
    raise InvalidRequest("'model' is required: the name of a model group.", param="model",
                         code="missing_required_parameter")


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate an OpenAI chat-completions body and build the neutral request."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        _no_model_name(model)
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequest("'messages' is required: a non-empty list of messages.",
                             param="messages", code="missing_required_parameter")
    stream = body.get("stream", False)
    _typed(stream, bool, "stream", "true or false")
    keys = body.keys()
    if not keys.isdisjoint(_SPECIAL):  # one check for every kind: most bodies have none
        if not keys.isdisjoint(_CALL_KEYS):
            return parse_chat_request(_call_arguments(body))
        return _litellm_controls(body)
    # Each optional field is read only when the body has it: most bodies hold a
    # few, and a parser call for each absent one was a tenth of a request's parsing.
    given = keys & _OPTIONAL
    max_tokens = (_int_in(body, "max_completion_tokens", 1)
                  if "max_completion_tokens" in given else None)
    if max_tokens is None and "max_tokens" in given:
        max_tokens = _int_in(body, "max_tokens", 1)
    fallbacks = _fallbacks(body.get("fallbacks"))
    metadata = body.get("metadata") or {}
    _typed(metadata, dict, "metadata", "an object")
    if "stream_options" in given:
        _check_stream_options(body)
    tags = _tags(body.get("tags"), "tags") + _tags(metadata.get("tags"), "metadata.tags")
    if tags:
        metadata = {**metadata, "tags": list(dict.fromkeys(tags))}
    extra = keys - _KNOWN - _LOCAL
    # Built field by field rather than in one call: CPython packs a class call's
    # keyword arguments into a dict and unpacks it again for __init__, about 500
    # instructions each (10,000 for this request's twenty; benchmarks findings),
    # and most bodies hold none of the optional fields.
    messages = [_message(m, i) for i, m in enumerate(raw_messages)]
    if not given.isdisjoint(_TOOLS):
        _pair_function_results(messages)
    request = ChatRequest(model, messages)
    request.stream = stream
    request.max_tokens = max_tokens
    if extra:
        request.extra = {k: v for k, v in body.items() if k in extra}
    request.metadata = metadata
    request.fallbacks = fallbacks
    if given:
        _set_optional_fields(request, body, given)
        request.legacy_functions = "functions" in given and body.get("tools") is None
    return request


def _fallbacks(value: Any, param: str = "fallbacks"
               ) -> list[str] | dict[str, list[str]] | None:
    """A request's `fallbacks` (or `param`, one of its other chains) in the forms
    LiteLLM takes for a call: a list of model group names, or its
    `[{"group": ["fallback", ...]}]` (also as one dict; "*" for any group), kept as
    one {group: [groups]}."""
    if value is None or (isinstance(value, list) and all(isinstance(f, str) for f in value)):
        return value
    items = [value] if isinstance(value, dict) else value
    chains: dict[str, list[str]] = {}
    for item in items if isinstance(items, list) else [None]:
        if not isinstance(item, dict) or not all(
                isinstance(group, str) and isinstance(chain, list)
                and all(isinstance(g, str) for g in chain) for group, chain in item.items()):
            # LiteLLM's other dict form ({"model": ..., "temperature": ...}) changes
            # the request on the way; Interlock's fallbacks name groups only.
            raise _fail(f"'{param}' must be a list of model group names, or of "
                        '{"group": ["fallback group", ...]} mappings.', param)
        for group, chain in item.items():
            known = chains.setdefault(group, [])
            known.extend(g for g in chain if g not in known)
    return chains


def _flag(body: Mapping[str, Any], key: str) -> bool:
    return bool(_optional_typed(body, key, bool, "true or false"))


def _litellm_controls(body: Mapping[str, Any]) -> ChatRequest:
    """A body with LiteLLM's own call arguments (`LITELLM_ONLY`), which are not
    fields for the provider: `request_timeout` is read as `timeout`, the testing
    switches become the request's mock failures, its own context-window and
    content-policy chains its `kind_fallbacks`, the rest are set aside in
    `ignored_params`. None of them is sent upstream."""
    rest = {k: v for k, v in body.items() if k not in LITELLM_ONLY}
    if rest.get("timeout") is None and body.get("request_timeout") is not None:
        rest["timeout"] = body["request_timeout"]
    request = parse_chat_request(rest)
    switched = [kind for key, kind in _TESTING_SWITCHES.items() if _flag(body, key)]
    request.mock_group_failure = switched[0] if switched else None
    if _flag(body, "mock_testing_rate_limit_error"):
        # LiteLLM fails the first try with a rate limit, then retries for real.
        request.mock_failures = ["litellm.RateLimitError"]
    request.mock_timeout = _flag(body, "mock_timeout")
    own = {name: chains for name in KIND_FALLBACKS
           if (chains := _fallbacks(body.get(name), name)) is not None}
    request.kind_fallbacks = own or None
    request.ignored_params = tuple(sorted(k for k in body if k in IGNORED_CALL_ARGS))
    return request


def _call_arguments(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body with the call's own arguments (`CALL_ONLY`) taken out: the fields
    of `extra_body` merged in (over the others, as the OpenAI SDK merges them),
    `max_retries` read as `num_retries` unless that is given too. `extra_headers`
    is refused: the providers' headers belong to the deployment, and sent as a
    body field it would reach the provider as a parameter it does not know; so
    are the deployment's own settings (`DEPLOYMENT_ONLY`,
    `PER_DEPLOYMENT_SETTINGS`)."""
    key = next((k for k in DEPLOYMENT_ONLY if k in body), None)
    if key is not None:
        raise _fail(f"'{key}' cannot be given per request: keys and endpoints belong "
                    "to the deployment (model_list[].litellm_params).", key)
    if "allowed_openai_params" in body:
        raise InvalidRequest(
            "'allowed_openai_params' cannot be given per request here: it is a "
            "deployment setting (model_list[].litellm_params.allowed_openai_params). "
            "Without drop_params a field Interlock does not know is sent to the provider "
            "as it is; send the field itself.", param="allowed_openai_params",
            code="unsupported_parameter")
    if body.get("extra_headers") is not None:
        raise InvalidRequest(
            "'extra_headers' cannot be given in a request body: the headers a gateway "
            "sends to a provider belong to the deployment "
            "(model_list[].litellm_params.extra_headers). The library's Router takes "
            "them per call.", param="extra_headers", code="unsupported_parameter")
    out = {k: v for k, v in body.items() if k not in CALL_ONLY}
    retries = _int_in(body, "max_retries", 0, MAX_RETRIES)
    if retries is not None and out.get("num_retries") is None:
        out["num_retries"] = retries
    return merged_extra_body(out, body.get("extra_body"))


def merged_extra_body(body: dict[str, Any], extra: Any) -> dict[str, Any]:
    """`body` with the fields of a call's `extra_body` over its own, as the OpenAI
    SDK merges them before sending (a library call hands them over unmerged)."""
    if extra is not None:
        body.update(_typed(extra, dict, "extra_body", "an object of body fields"))
    return body


def _pair_function_results(messages: list[Message]) -> None:
    """Legacy function calling names no ids: an assistant's `function_call` is
    given an id of its own (`_message`) and a `function` message only names the
    function, which parsing puts in its tool_call_id. Each such result gets the
    id of the latest call of that function before it, so that the call and its
    result agree wherever ids are paired (OpenAI's tool messages, Anthropic's
    tool_result blocks). Results that already name a call are left as they are."""
    latest: dict[str, str] = {}
    for message in messages:
        if message.role == "assistant":
            for call in message.tool_calls:
                latest[call.name] = call.id
        elif (message.role == "tool" and message.name is not None
              and message.tool_call_id == message.name):
            message.tool_call_id = latest.get(message.name, message.name)


def _set_optional_fields(request: ChatRequest, body: Mapping[str, Any],
                         given: set[str]) -> None:
    for keys, name, parse in _OPTIONAL_FIELDS:
        if not given.isdisjoint(keys):
            setattr(request, name, parse(body))
