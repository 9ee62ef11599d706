"""Request translation: a neutral `ChatRequest` as a GenerateContentRequest (tools,
tool config, generationConfig, reasoning effort, web search, extras), and
the BatchEmbedContentsRequest for embeddings. The messages themselves are
`adapters.gemini.contents`'s.

Imports: the standard library, `types`, `errors`, `catalog`, `reasoning_effort`,
`web_search`, `adapters.gemini.*`.
"""

from __future__ import annotations

from typing import Any

from interlock.adapters.gemini.call import PROVIDER
from interlock.adapters.gemini.contents import message_contents
from interlock.adapters.gemini.model_versions import from_gemini_3
from interlock.adapters.gemini.schema import clean_schema
from interlock.catalog import Deployment
from interlock.errors import InvalidRequest, UnsupportedParameter
from interlock.reasoning_effort import BUDGETS, requested_effort
from interlock.types import ChatRequest, EmbeddingRequest, ToolSpec
from interlock.web_search import requested_web_search

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


def build_body(request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
    """The GenerateContentRequest JSON for a neutral request (no network, no key)."""
    drop = bool(request.drop_params or deployment.drop_params)
    body: dict[str, Any] = {"contents": message_contents(request.messages, deployment.model, drop)}
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
    if from_gemini_3(model):
        config["thinkingConfig"] = {
            "thinkingLevel": {"none": "minimal", "xhigh": "high"}.get(effort, effort)}
    else:
        config["thinkingConfig"] = {"thinkingBudget": BUDGETS.get(effort, 0)}


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
