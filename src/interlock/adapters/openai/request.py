"""Request translation: a neutral `ChatRequest` as an OpenAI chat-completions
body, and which name the output limit goes by (`max_tokens` or
`max_completion_tokens`, see the package docstring). The request's extra
fields go as the server behind the deployment takes them
(`adapters.openai.server_params`): a field it refuses is an
UnsupportedParameter, or left out under drop_params.

Imports: the standard library, `types`, `catalog`, `adapters.openai.server_params`.
"""

from __future__ import annotations

import re
from typing import Any

from interlock.adapters.openai.server_params import DeploymentRules, sendable_extra
from interlock.catalog import Deployment
from interlock.types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ToolSpec,
)

# Fields the adapter owns: request.extra may not override them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})
_MAX_TOKENS_NAMES = ("max_tokens", "max_completion_tokens")
_REASONING_MODEL = re.compile(r"^(?:openai/)?(?:o\d|gpt-5)")


def build_body(request: ChatRequest, deployment: Deployment,
               known: DeploymentRules | None = None, *, stream: bool) -> dict[str, Any]:
    """The OpenAI JSON body for a neutral request sent to this deployment (raises
    UnsupportedParameter for an extra field its server refuses, unless drop_params).
    `known`: the deployment's rules for extra fields, if already read."""
    # One dict display, then the extra fields (few requests have any) put first
    # as before: fewer opcodes on every request than item by item.
    body: dict[str, Any] = {"model": deployment.model,
                            "messages": [message_json(m) for m in request.messages]}
    if request.extra:
        body = {**sendable_extra(request.extra, deployment,
                                 bool(request.drop_params or deployment.drop_params),
                                 _RESERVED, known=known), **body}
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
