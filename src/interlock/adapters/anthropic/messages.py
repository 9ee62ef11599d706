"""Message translation: neutral messages as Anthropic turns (tool results as
user blocks, same-role turns merged, images, thinking blocks sent back) and
system messages as system blocks, with the caller's cache markers.

Imports: the standard library, `types`, `errors`.
"""

from __future__ import annotations

import json
from typing import Any

from interlock.errors import InvalidRequest
from interlock.types import ImagePart, Message, TextPart, ToolCall


def system_texts(messages: list[Message]) -> tuple[list[str], bool]:
    """The system messages' texts (images have no place in Anthropic's system
    prompt, as in `ChatRequest.system_text`), and whether `system_blocks` would
    carry a cache marker: whether a system message marks a part and has a marked
    part with text (an empty one is not sent). One walk, and no blocks built for
    the usual prompt, which goes as a string."""
    texts: list[str] = []
    marked = False
    for message in messages:
        if message.role != "system":
            continue
        texts.append(message.text)
        if not marked:
            parts = [p for p in message.parts if isinstance(p, TextPart)]
            marked = any(p.cache_control for p in parts) and any(
                p.text and p.cache_control is not None for p in parts)
    return texts, marked


def system_blocks(messages: list[Message]) -> list[dict[str, Any]]:
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
        blocks.extend(cached({"type": "text", "text": p.text}, p.cache_control)
                      for p in texts if p.text)
    return blocks


def cached(block: dict[str, Any], marker: dict[str, Any] | None) -> dict[str, Any]:
    """The block with the caller's prompt-cache breakpoint, if it set one."""
    if marker is not None:
        block["cache_control"] = marker
    return block


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
        blocks.append(cached(block, part.cache_control if markers else None))
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
    return cached(block, marker)
