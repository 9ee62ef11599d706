"""A small, deterministic JSON value that satisfies a JSON Schema.

The fake providers answer a request for structured output, and the arguments
of a tool call a request forces, with one, so a client that parses the answer
(the openai SDK's `parse`, a pydantic model) gets a value it accepts. It reads
the JSON Schema that OpenAI's `response_format` and functions' `parameters`,
Anthropic's `output_config.format` and tools' `input_schema`, and Gemini's
`responseJsonSchema` and `parametersJsonSchema` carry, and Gemini's OpenAPI
subset (`responseSchema`, a function's `parameters`: upper-case types such as
"OBJECT", `nullable`, `propertyOrdering`).

What it honours: `type` (one or a list), `const`, `enum`, `anyOf` / `oneOf`
(the first branch), `allOf` (merged), local `$ref`s (`#/$defs/...`,
`#/definitions/...`), objects (every property, required or not, plus any
required name the properties do not list), arrays (`items`, `prefixItems`,
`minItems` / `maxItems`), strings (`minLength` / `maxLength`, the common
`format`s), numbers (bounds, `multipleOf`). Not `pattern`, `not`,
`if`/`then`, `uniqueItems` or `propertyNames`, nor formats beyond the common
ones: a schema that needs them gets a value that may not match (an open
object's one property is named `text`, which a map keyed by numbers refuses).

A schema that refers to itself (a tree of nodes) is cut short on its second
visit: there only required properties are written, arrays get their fewest
items and a nullable choice is null, so the value stays finite. A `$ref`
that names itself is read as nothing, and item counts, string lengths and the
number of values written are capped, so no schema holds the fake for long.

Imports: the standard library only.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

# Strings of these formats must parse as one (pydantic reads a `datetime`
# field's value as a date-time, not any text).
_FORMATTED = {
    "date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "00:00:00",
    "duration": "P1D", "email": "simulated@example.com", "idn-email": "simulated@example.com",
    "hostname": "example.com", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1",
    "uri": "https://example.com/simulated", "url": "https://example.com/simulated",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
# Past half this depth a value is cut short even without a self-reference in
# sight; past all of it, whatever is left is null.
_MAX_DEPTH = 32
# Bounds that keep one walk small whatever the schema says (a `minItems` of 10**8,
# a `$def` used by each of many branches at every level): the walk runs in the
# fake's event loop, so one absurd schema would stall every request meanwhile.
# Past them the value may not satisfy the schema; no real one comes near.
_MAX_ITEMS = 100
_MAX_LENGTH = 10_000
_MAX_NODES = 10_000
# The property an open object (no properties listed) gets, holding the free text.
FREE_PROPERTY = "text"


def schema_instance(schema: Any, free_text: str) -> Any:
    """A value `schema` accepts. `free_text` fills what the schema leaves open:
    the one property of an object that lists none (`{"text": free_text}`), and
    a schema that says nothing at all."""
    root = schema if isinstance(schema, dict) else {}
    return _Instance(root, free_text).value(root, FREE_PROPERTY, 0, frozenset())


class _Instance:
    """One walk over one schema: the root, for its `$ref`s, and the free text."""

    def __init__(self, root: dict[str, Any], free_text: str) -> None:
        self.root = root
        self.free_text = free_text
        self.nodes = 0

    def value(self, schema: Any, name: str, depth: int, seen: frozenset[str],
              short: bool = False) -> Any:
        """`name`: the property this value is for, which its string says;
        `seen`: the `$ref`s being expanded above this point; `short`: write the
        least the schema takes (below a second visit of a `$ref`, or deep)."""
        self.nodes += 1
        if not isinstance(schema, dict) or depth > _MAX_DEPTH or self.nodes > _MAX_NODES:
            return None
        short = short or depth >= _MAX_DEPTH // 2
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.value(self._resolve(ref), name, depth + 1, seen | {ref},
                              short or ref in seen)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(_pick(branches, short), name, depth + 1, seen, short)
        if isinstance(schema.get("allOf"), list):
            return self.value(self._merged(schema), name, depth + 1, seen, short)
        return self._typed(schema, name, depth, seen, short)

    def _typed(self, schema: dict[str, Any], name: str, depth: int, seen: frozenset[str],
               short: bool) -> Any:
        kind = _kind(schema, short)
        if kind == "object":
            return self._object(schema, depth, seen, short)
        if kind == "array":
            return self._array(schema, name, depth, seen, short)
        if kind == "string":
            return _string(schema, name)
        if kind in ("number", "integer"):
            return _number(schema, kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self.free_text  # a schema that asks for nothing in particular

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def _merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        """`allOf`'s branches (their `$ref`s followed) folded into one schema:
        properties and required names joined, any other key the first given."""
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            followed: set[str] = set()
            while isinstance(branch, dict) and isinstance(branch.get("$ref"), str):
                if branch["$ref"] in followed:  # a `$ref` naming itself names nothing
                    branch = None
                    break
                followed.add(branch["$ref"])
                branch = self._resolve(branch["$ref"])
            if not isinstance(branch, dict):
                continue
            for key, part in branch.items():
                if key == "properties" and isinstance(part, dict):
                    merged["properties"] = {**merged.get("properties", {}), **part}
                elif key == "required" and isinstance(part, list):
                    merged["required"] = [*merged.get("required", []), *part]
                else:
                    merged.setdefault(key, part)
        return merged

    def _object(self, schema: dict[str, Any], depth: int, seen: frozenset[str],
                short: bool) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [n for n in schema.get("required") or () if isinstance(n, str)]
        order = [n for n in schema.get("propertyOrdering") or () if n in properties]
        names = order + [n for n in properties if n not in order]
        if short:
            names = [n for n in names if n in required]
        out = {n: self.value(properties[n], n, depth + 1, seen, short) for n in names}
        extra = schema.get("additionalProperties", True)
        for name in required:
            if name not in out:
                out[name] = self.value(extra if isinstance(extra, dict) else {"type": "string"},
                                       name, depth + 1, seen, short)
        if not properties and not required and extra is not False and not short:
            # An open object: one property, so the answer still says who spoke.
            out[FREE_PROPERTY] = (self.value(extra, FREE_PROPERTY, depth + 1, seen)
                                  if isinstance(extra, dict) and extra else self.free_text)
        return out

    def _array(self, schema: dict[str, Any], name: str, depth: int, seen: frozenset[str],
               short: bool) -> list[Any]:
        fewest = _count(schema.get("minItems")) or 0
        most = _count(schema.get("maxItems"))
        count = fewest if short else max(fewest, 1)
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        # A tuple written the old way: `items` a list of schemas.
        if isinstance(items, list):
            prefix, items = items, schema.get("additionalItems")
        count = max(count, len(prefix))
        if items is False:  # nothing past the tuple
            count = len(prefix)
        if most is not None:
            count = min(count, most)
        count = min(count, _MAX_ITEMS)
        items = items if isinstance(items, dict) else {}
        return [self.value(prefix[i] if i < len(prefix) else items, name, depth + 1, seen,
                           short) for i in range(count)]


def _pick(branches: list[Any], short: bool) -> Any:
    """The first branch; when cutting short, a null one if there is one."""
    if short:
        for branch in branches:
            if isinstance(branch, dict) and _kind(branch, True) == "null":
                return branch
    return branches[0]


def _kind(schema: dict[str, Any], short: bool) -> str | None:
    """The type to write: Gemini's upper-case names read as JSON Schema's, the
    first that is not null from a list (null itself when cutting short and the
    schema allows it), else what the keywords present imply."""
    given = schema.get("type")
    kinds = [k.lower() for k in (given if isinstance(given, list) else [given])
             if isinstance(k, str)]
    if short and ("null" in kinds or schema.get("nullable") is True):
        return "null"
    named = next((k for k in kinds if k != "null"), kinds[0] if kinds else None)
    if named is not None:
        return named
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _string(schema: dict[str, Any], name: str) -> str:
    fmt = schema.get("format")
    text = _FORMATTED.get(fmt, f"simulated {name}") if isinstance(fmt, str) \
        else f"simulated {name}"
    shortest = min(_count(schema.get("minLength")) or 0, _MAX_LENGTH)
    longest = _count(schema.get("maxLength"))
    if len(text) < shortest:
        text += "x" * (shortest - len(text))
    return text if longest is None else text[:longest]


def _number(schema: dict[str, Any], whole: bool) -> int | float:
    """1 (1.5 for a number) when the bounds allow it, else the middle of the
    bounds or next to one, each on a multiple of `multipleOf` (of 1 for an
    integer) when one is given."""
    low, low_open = _bound(schema, "minimum")
    high, high_open = _bound(schema, "maximum")

    def fits(v: float) -> bool:
        return ((low is None or v > low or (v == low and not low_open))
                and (high is None or v < high or (v == high and not high_open)))

    seeds: list[float] = [1 if whole else 1.5]
    if low is not None and high is not None:
        seeds.append((low + high) / 2)
    seeds += [b + d for b, d in ((low, 0), (low, 1), (high, 0), (high, -1)) if b is not None]
    given = schema.get("multipleOf")
    multiple = given if _is_number(given) and given > 0 else (1 if whole else None)
    for seed in seeds:
        tries = [seed] if multiple is None else [math.ceil(seed / multiple) * multiple,
                                                 math.floor(seed / multiple) * multiple]
        for v in tries:
            # Rounded, so 0.1's multiples are written as 0.3, not 0.30000000000000004.
            v = round(v, 9)
            if fits(v):
                return int(v) if whole else v
    return int(seeds[0]) if whole else seeds[0]


def _bound(schema: dict[str, Any], key: str) -> tuple[float | None, bool]:
    """The bound `key` sets, and whether it is exclusive: JSON Schema's
    `exclusiveMinimum` is the bound itself, OpenAPI 3.0's a flag on `minimum`
    (and the same for the maximum)."""
    inclusive = schema.get(key)
    exclusive = schema.get("exclusive" + key[0].upper() + key[1:])
    if _is_number(exclusive):
        return float(exclusive), True
    if _is_number(inclusive):
        return float(inclusive), exclusive is True
    return None, False


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> int | None:
    """A length or count bound, when it is one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None
