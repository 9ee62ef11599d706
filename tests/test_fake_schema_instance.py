"""`testing.schema_instance`: the value the fake providers answer a request for
structured output with is one the schema (and the model behind it) accepts."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from interlock.testing.schema_instance import schema_instance


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    postcode: Annotated[str, Field(min_length=5, max_length=5)]


class Node(BaseModel):
    """Refers to itself three ways: a list, an optional, a required list's items."""

    label: str
    children: list[Node] = []
    parent: Node | None = None


class Everything(BaseModel):
    name: str
    age: Annotated[int, Field(gt=17, le=120, multiple_of=5)]
    height: Annotated[float, Field(ge=0.2, lt=0.3)]
    price: Annotated[float, Field(multiple_of=0.1, gt=2)]
    when: datetime.datetime
    day: datetime.date
    key: uuid.UUID
    colour: Colour
    kind: Literal["a", "b"]
    fixed: Literal["only"]
    tags: Annotated[list[str], Field(min_length=2)]
    pair: tuple[int, str]
    home: Address
    work: Address | None = None
    scores: dict[str, float]
    either: int | str
    tree: Node
    flag: bool
    nothing: None


@pytest.mark.parametrize("model", [Everything, Node, Address])
def test_a_models_schema_gives_a_value_the_model_accepts(model: type[BaseModel]) -> None:
    value = schema_instance(model.model_json_schema(), "free")
    model.model_validate(value)  # raises on a value the schema refuses


def test_every_property_is_written_and_strings_say_simulated() -> None:
    value = schema_instance(Everything.model_json_schema(), "free")
    assert list(value) == list(Everything.model_fields)
    assert value["name"] == "simulated name"
    assert value["work"] == {"street": "simulated street", "postcode": "simul"}
    assert len(value["tags"]) == 2


def test_a_schema_that_refers_to_itself_is_cut_short_on_the_second_visit() -> None:
    value = schema_instance(Node.model_json_schema(), "free")
    # The second Node writes only what is required: its children list is left out.
    assert value == {"label": "simulated label", "children": [{"label": "simulated label"}],
                     "parent": {"label": "simulated label"}}


def test_a_required_self_reference_ends_in_the_fewest_items() -> None:
    schema = {"$defs": {"n": {"type": "object", "required": ["kids"], "properties": {
        "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}}, "$ref": "#/$defs/n"}
    assert schema_instance(schema, "free") == {"kids": [{"kids": []}]}


@pytest.mark.parametrize(("schema", "expected"), [
    # An open object holds the free text, so the answer still says who spoke.
    ({"type": "object"}, {"text": "free"}),
    ({"type": "object", "additionalProperties": False}, {}),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, {"text": 1}),
    ({}, "free"),
    # Gemini's OpenAPI subset: upper-case types, propertyOrdering, nullable.
    ({"type": "OBJECT", "properties": {
        "b": {"type": "STRING", "nullable": True},
        "a": {"type": "ARRAY", "items": {"type": "INTEGER", "minimum": 3}},
        "c": {"type": "STRING", "format": "enum", "enum": ["x", "y"]},
        "d": {"type": "NUMBER", "minimum": 0, "maximum": 1, "exclusiveMaximum": True}},
      "propertyOrdering": ["a", "b", "c", "d"]},
     {"a": [3], "b": "simulated b", "c": "x", "d": 0.5}),
    ({"type": ["null", "boolean"]}, True),
    ({"anyOf": [{"type": "integer", "exclusiveMinimum": 7}, {"type": "null"}]}, 8),
    ({"oneOf": [{"const": 4}, {"type": "string"}]}, 4),
    ({"allOf": [{"$ref": "#/definitions/a"}, {"properties": {"y": {"type": "boolean"}},
                                              "required": ["y"]}],
      "definitions": {"a": {"type": "object", "properties": {"x": {"type": "null"}}}}},
     {"x": None, "y": True}),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
      "items": False}, [1, True]),
    ({"type": "array", "maxItems": 0, "items": {"type": "string"}}, []),
    ({"type": "object", "required": ["unlisted"]}, {"unlisted": "simulated unlisted"}),
    ({"type": "string", "minLength": 20}, "simulated textxxxxxx"),
    ({"type": "string", "maxLength": 9}, "simulated"),
])
def test_schema_keywords_shape_the_value(schema: dict[str, Any], expected: Any) -> None:
    assert schema_instance(schema, "free") == expected


@pytest.mark.parametrize("schema", [
    # A `$ref` naming itself inside allOf: followed without end, it held the
    # fake's event loop, so every later request hung too (review).
    {"allOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": "#/$defs/a"}}},
    {"allOf": [{"$ref": "#/$defs/a"}],
     "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
])
def test_a_ref_cycle_in_all_of_ends(schema: dict[str, Any]) -> None:
    assert schema_instance(schema, "free") == "free"


def test_absurd_sizes_are_capped_so_one_schema_cannot_stall_the_fake() -> None:
    assert len(schema_instance({"type": "array", "minItems": 10**8}, "free")) == 100
    assert len(schema_instance({"type": "string", "minLength": 10**8}, "free")) == 10_000
    # A definition used by each of ten required branches at every level grows
    # as 10**depth: the count of values written stops it.
    branches = {f"b{i}": {"$ref": "#/$defs/n"} for i in range(10)}
    schema = {"$defs": {"n": {"type": "object", "required": list(branches),
                              "properties": branches}}, "$ref": "#/$defs/n"}
    assert isinstance(schema_instance(schema, "free"), dict)
