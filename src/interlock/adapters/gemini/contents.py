"""Message translation: neutral messages as Gemini `contents` (function calls
with their thought signatures, function responses named after the call they
answer, images as inline or file data).

Imports: orjson, the standard library, `types`, `errors`, `adapters.gemini.*`.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit

import orjson

from interlock.adapters.gemini.call import PROVIDER
from interlock.adapters.gemini.model_versions import needs_signature
from interlock.errors import InvalidRequest, UnsupportedParameter
from interlock.types import ImagePart, Message, Part, TextPart, ToolCall

SKIP_SIGNATURE = "skip_thought_signature_validator"


def message_contents(messages: list[Message], model: str, drop: bool) -> list[dict[str, Any]]:
    # Which function each call id names, as of the message being read: a result
    # answers the latest call with its id before it (some backends reuse ids
    # such as call_0 in every turn, and a later turn's call must not rename it).
    call_names: dict[str, str] = {}
    sign = needs_signature(model)
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
