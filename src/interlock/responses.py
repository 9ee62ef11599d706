"""OpenAI-shaped response objects for the library: attribute and dict access.

    resp.choices[0].message.content == resp["choices"][0]["message"]["content"]
    resp.model_dump()      # plain dicts and lists
    resp.interlock         # which deployment answered, attempts, cost, route

Imports: the standard library only.
"""

from __future__ import annotations

import builtins
import copy
import json
from typing import Any


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, OpenAIObject):
        return OpenAIObject(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# Fields the OpenAI SDK's objects (and LiteLLM's) always have, None when the wire
# leaves them out: ported code reads `chunk.choices[0].delta.content or ""` and
# `message.tool_calls` without checking first. Any other missing name is still
# an AttributeError, so a typo does not pass as None.
_OPTIONAL_FIELDS = frozenset({
    "content", "role", "name", "tool_calls", "function_call", "refusal",
    "reasoning_content", "audio", "annotations", "finish_reason", "logprobs", "usage",
    "system_fingerprint", "service_tier", "prompt_tokens_details",
    "completion_tokens_details", "thinking_blocks",
})


class OpenAIObject(dict[str, Any]):
    """A dict whose keys are also attributes, recursively."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__({k: _wrap(v) for k, v in (data or {}).items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name in _OPTIONAL_FIELDS:
                return None
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}") from None

    def model_dump(self) -> dict[str, Any]:
        return _plain(self)

    def model_dump_json(self, **kwargs: Any) -> str:
        return json.dumps(self.model_dump(), **kwargs)

    # The other spellings ported code uses: the OpenAI SDK's `to_dict` and
    # `to_json` (indented by default, as there), and LiteLLM's `json()` and
    # pydantic v1's `dict()`, both of which return a dict.
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(), indent=indent)

    def json(self) -> dict[str, Any]:
        return self.model_dump()

    def __deepcopy__(self, memo: dict[int, Any]) -> OpenAIObject:
        clone = type(self)(copy.deepcopy(self.model_dump(), memo))
        memo[id(self)] = clone
        # Attributes set beside the items (`ModelResponse.interlock`) are part of
        # the value too, as `copy.copy` and pickle already keep them.
        for name, value in vars(self).items():
            object.__setattr__(clone, name, copy.deepcopy(value, memo))
        return clone

    # Last: inside the class body, `dict` names this method from here on.
    def dict(self) -> builtins.dict[str, Any]:
        return self.model_dump()


class ModelResponse(OpenAIObject):
    """A chat completion. `interlock` holds the routing and dispatch metadata."""

    def __init__(self, data: dict[str, Any], interlock: dict[str, Any] | None = None, *,
                 api_base: str | None = None) -> None:
        super().__init__(data)
        object.__setattr__(self, "interlock", OpenAIObject(interlock or {}))
        # The answering deployment's base URL, credentials taken out by the caller.
        object.__setattr__(self, "_api_base", api_base)

    @property
    def _hidden_params(self) -> dict[str, Any]:
        """The names LiteLLM users read metadata from (`custom_llm_provider` and
        `api_base` are LiteLLM's keys; `provider` is Interlock's name too)."""
        meta = self.interlock
        cost = meta.get("cost_usd")
        return {"model_id": meta.get("deployment"), "deployment": meta.get("deployment"),
                "provider": meta.get("provider"), "custom_llm_provider": meta.get("provider"),
                "api_base": getattr(self, "_api_base", None),
                "response_cost": float(cost) if cost is not None else None}


class EmbeddingResponse(ModelResponse):
    """A list of embeddings: `data[i].embedding` is the vector of input i."""


class ModelResponseChunk(OpenAIObject):
    """One streamed chat.completion.chunk."""
