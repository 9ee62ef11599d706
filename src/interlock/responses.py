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


def hidden_params(deployment: str | None, provider: str | None, cost_usd: Any,
                  api_base: str | None) -> dict[str, Any]:
    """LiteLLM's `_hidden_params`, the names its users read metadata from
    (`model_id`, `custom_llm_provider`, `api_base` and `response_cost` are
    LiteLLM's keys; `deployment` and `provider` are Interlock's names too).
    `cost_usd` is a Decimal or its string, None while unknown."""
    return {"model_id": deployment, "deployment": deployment,
            "provider": provider, "custom_llm_provider": provider, "api_base": api_base,
            "response_cost": float(cost_usd) if cost_usd is not None else None}


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
        meta = self.interlock
        return hidden_params(meta.get("deployment"), meta.get("provider"), meta.get("cost_usd"),
                             getattr(self, "_api_base", None))


class EmbeddingResponse(ModelResponse):
    """A list of embeddings: `data[i].embedding` is the vector of input i."""


class ModelResponseChunk(OpenAIObject):
    """One streamed chat.completion.chunk. `_hidden_params` is its stream's, one
    dict shared by every chunk of the stream and filled in as the stream learns
    more (the cost once it has ended)."""

    def __init__(self, data: dict[str, Any],
                 hidden: dict[str, Any] | None = None) -> None:
        super().__init__(data)
        object.__setattr__(self, "_hidden_params", {} if hidden is None else hidden)
