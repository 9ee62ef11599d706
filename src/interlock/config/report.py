"""The config error report: every problem as `path: got VALUE; expected WHAT`.

Turns pydantic's errors into lines a person can act on: the field path as it
is written in the file (`model_list[2].litellm_params.rpm`), the bad value
(masked where the key names a secret), what was expected, and a did-you-mean
for unknown keys, found by walking the schema to the section the key is in.

Imports: pydantic, the standard library, `errors`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ValidationError

from interlock.errors import ConfigError, names_a_credential, redact


def config_error(where: str, problems: list[str],
                 lines: Mapping[str, int] | None = None) -> ConfigError:
    """One ConfigError listing every problem (`path: what`), each with the line of
    the file it is on when `lines` (path -> line) is known."""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    listed = "\n".join(f"  - {redact(_with_line(p, lines or {}))}"
                       for p in sorted(problems, key=_natural))
    return ConfigError(f"Invalid Interlock config {where}: {count}:\n{listed}")


def _with_line(problem: str, lines: Mapping[str, int]) -> str:
    path = problem.split(": ", 1)[0]
    # A missing key has no line of its own; the nearest enclosing one will do.
    while path and path not in lines:
        trimmed = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
        path = "" if trimmed == path else trimmed
    return f"{problem} (line {lines[path]})" if path else problem


def _natural(text: str) -> list[tuple[int, str]]:
    # model_list[2] before model_list[10].
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", text)]


def _path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _is_union_tag(part):
            text += f".{part}" if text else part
    return text or "(top level)"


def _is_union_tag(part: str) -> bool:
    # pydantic names the member of a union it tried: 'list[...]', 'function-after[...]'.
    return bool(re.match(r"^[\w-]+\[.*\]$", part))


def _show(value: Any, loc: Sequence[str | int]) -> str:
    names = [p for p in loc if isinstance(p, str) and not _is_union_tag(p)]
    # The rule the catalog keeps a deployment's secrets by, so that a value an
    # error would hide is never quoted in the config's own report either.
    if names and names_a_credential(names[-1]):
        return "'********'"
    if isinstance(value, str) and "://" in value and "@" in value:
        value = _without_credentials(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _without_credentials(url: str) -> str:
    """`url` with all before its last '@' after the scheme masked: a database
    driver reads a password up to the last '@', '/' and ':' included, and
    redaction's pattern stops at those."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://********@{rest.rpartition('@')[2]}"


def describe_validation_error(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem in a pydantic error, same-path union failures merged."""
    return _merge_same_path(_describe(err, root) for err in exc.errors())


def _describe(err: Mapping[str, Any], root: type[BaseModel]) -> tuple[str, str]:
    """(path, what is wrong) for one pydantic error."""
    raw = tuple(err["loc"])
    loc = _without_tags(root, raw)
    path = _path(loc)
    kind, msg = err["type"], str(err["msg"])
    if kind == "value_error" and isinstance(err.get("input"), Mapping):
        # A whole-section check (a model validator) has a sentence, not a bad value.
        return path, msg.removeprefix("Value error, ")
    if kind == "missing":
        return path, "missing; this key is required"
    if kind == "extra_forbidden":
        valid = _valid_keys(root, raw[:-1])
        return path, "unknown key" + did_you_mean(str(loc[-1]), valid or [])
    if kind == "union_tag_invalid":  # a `type:` naming no kind of section
        ctx = err.get("ctx") or {}
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        return f"{path}.{ctx.get('discriminator', 'type')}".replace("'", ""), (
            f"got {ctx.get('tag')!r}; expected one of {', '.join(map(repr, tags))}"
            + did_you_mean(str(ctx.get("tag")), tags, list_valid=False))
    if kind == "too_short" and isinstance(err.get("input"), list) and not err["input"]:
        return path, (f"got []; expected at least {(err.get('ctx') or {}).get('min_length', 1)}"
                      " entry")
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
    elif not msg.startswith("expected"):
        msg = msg[:1].lower() + msg[1:]
    return path, f"got {_show(err.get('input'), loc)}; {msg}"


def _merge_same_path(described: Iterable[tuple[str, str]]) -> list[str]:
    # A union field fails once per member; say it once ("expected a list or a dict").
    merged: dict[str, str] = {}
    for path, text in described:
        if path in merged and "; expected " in text and "; expected " in merged[path]:
            merged[path] += " or " + text.split("; expected ", 1)[1]
        elif path not in merged:
            merged[path] = text
    return [f"{path}: {text}" for path, text in merged.items()]


def did_you_mean(key: str, valid: Sequence[str], *, list_valid: bool = True) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if list_valid and valid and len(valid) <= 30:
        return f"; expected one of: {', '.join(valid)}"
    return ""


def _valid_keys(root: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The keys the model at `loc` under `root` accepts."""
    current: Any = root
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    model = _as_model(current)
    if model is None:
        return None
    keys: list[object] = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        keys.extend(alias.choices if isinstance(alias, AliasChoices) else [name])
    return [k for k in keys if isinstance(k, str)]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _as_model(get_args(annotation)[0])
    if origin in (Union, UnionType):
        models = (_as_model(a) for a in get_args(annotation))
        return next((m for m in models if m is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _without_tags(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """`loc` without the tags pydantic puts in it for a tagged union's member
    (`routing.routers.tiers.rules.rules[0]`: the first `rules` is the section's
    `type`), which name no key of the file."""
    current: Any = root
    out: list[str | int] = []
    for part in loc:
        member = _tagged_member(current, part)
        if member is not None:
            current = member
            continue
        out.append(part)
        current = None if current is None else _step(current, part)
    return tuple(out)


def _tagged_member(annotation: Any, part: str | int) -> type[BaseModel] | None:
    """The member of a union tagged by its `type` whose tag is `part`, if any."""
    if get_origin(annotation) is Annotated:
        return _tagged_member(get_args(annotation)[0], part)
    if get_origin(annotation) not in (Union, UnionType) or not isinstance(part, str):
        return None
    for member in get_args(annotation):
        model = _as_model(member)
        field = model.model_fields.get("type") if model is not None else None
        if (field is not None and get_origin(field.annotation) is Literal
                and part in get_args(field.annotation)):
            return model
    return None


def _step(annotation: Any, part: str | int) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _step(get_args(annotation)[0], part)
    if origin in (Union, UnionType):
        tagged = _tagged_member(annotation, part)
        if tagged is not None:  # the tag pydantic put in the path: that member
            return tagged
        members = [a for a in get_args(annotation) if a is not NoneType]
        steps = (_step(m, part) for m in members)
        return next((s for s in steps if s is not None), None)
    model = _as_model(annotation)
    if model is not None:
        if isinstance(part, str):
            for name, field in model.model_fields.items():
                alias = field.validation_alias
                names = alias.choices if isinstance(alias, AliasChoices) else [name]
                if part in names:
                    return field.annotation
        return None
    args = get_args(annotation)
    if origin in (list, Sequence, tuple) and isinstance(part, int) and args:
        return args[0]
    if origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
        return args[1]
    return None

