"""JSON Schema reduced to the OpenAPI subset Gemini's function declarations take.

Gemini's `parameters` Schema is a subset of OpenAPI 3.0: no `$ref`, no type
lists, no `additionalProperties`, `enum` on strings only. OpenAI tool schemas
are JSON Schema, so each is rewritten here before it is declared; the response
format goes to `responseJsonSchema` instead, which takes JSON Schema as it is.
Kept apart from the adapter, which calls `clean_schema`, to keep each module small.

Imports: orjson, the standard library, `adapters.base` (the error for JSON too deep).
"""

from __future__ import annotations

from typing import Any

import orjson

from interlock.adapters.base import is_too_deep, json_too_deep

# The fields of Gemini's OpenAPI-subset Schema; everything else is dropped.
_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
    "maximum",
})


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema reduced to Gemini's OpenAPI subset: local `$ref`s inlined,
    type lists turned into `nullable`/`anyOf`, `const` into `enum`, enums of
    anything but strings into a description, `oneOf` into `anyOf`, unknown keys
    (additionalProperties, $schema, ...) dropped."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _clean(schema, defs, depth=0)


def _clean(node: Any, defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    if depth > 24:  # a recursive $ref: stop unrolling
        return {"type": "object"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1], {})
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs, depth + 1)
    node = _normalise_keywords(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _clean(v, defs, depth + 1) for k, v in value.items()}
        elif key == "items":
            out[key] = _clean(value, defs, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [_clean(v, defs, depth + 1) for v in value]
        else:
            out[key] = value
    if "required" in out and isinstance(out.get("properties"), dict):
        out["required"] = [r for r in out["required"] if r in out["properties"]]
    return out


def _normalise_keywords(node: dict[str, Any]) -> dict[str, Any]:
    node = dict(node)
    if "oneOf" in node and "anyOf" not in node:
        node["anyOf"] = node.pop("oneOf")
    types = node.get("type")
    if isinstance(types, list):
        concrete = [t for t in types if t != "null"]
        if len(concrete) < len(types):
            node["nullable"] = True
        if len(concrete) == 1:
            node["type"] = concrete[0]
        else:
            node.pop("type")
            node["anyOf"] = [{"type": t} for t in concrete]
    if "const" in node and "enum" not in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node:
        _translate_enum(node)
    return node


def _translate_enum(node: dict[str, Any]) -> None:
    """Gemini's Schema takes `enum` on STRING only. Strings stay an enum (an
    untyped one says it is a string); other values leave the enum for the
    description, the type kept, so that a call's arguments still come back as
    the numbers or booleans the client's schema asks for, not as their text."""
    raw = node.pop("enum")
    values = [v for v in raw if v is not None] if isinstance(raw, list) else []
    if "type" not in node and "anyOf" not in node:
        # An untyped enum or const: its values say what it is, when they agree.
        inferred = _json_type(values)
        if inferred:
            node["type"] = inferred
    if str(node.get("type")).lower() == "string":
        if values:
            node["enum"] = [str(v) for v in values]
        return
    if values:
        try:
            shown = [orjson.dumps(v, default=str).decode() for v in values]
        except TypeError as exc:
            if not is_too_deep(exc):
                raise
            raise json_too_deep() from None
        allowed = "One of: " + ", ".join(shown) + "."
        described = str(node.get("description") or "").rstrip()
        if described and not described.endswith((".", "!", "?")):
            described += "."
        node["description"] = f"{described} {allowed}".lstrip()


def _json_type(values: list[Any]) -> str | None:
    """The one JSON Schema type all `values` share, if they share one."""
    kinds = {"string" if isinstance(v, str) else "boolean" if isinstance(v, bool)
             else "integer" if isinstance(v, int) else "number" if isinstance(v, float)
             else None for v in values}
    if kinds == {"integer", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 else None
