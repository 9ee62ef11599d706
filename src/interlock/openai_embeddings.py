"""The OpenAI embeddings body, both ways: parse a request, render a result.

    POST /v1/embeddings {"model": "embed", "input": ["a", "b"], "dimensions": 256}

The routing fields a chat request takes (timeout, num_retries, fallbacks, tags,
metadata, mock_response, drop_params) mean the same here, and are parsed by
the chat parser so that both endpoints accept and refuse the same values.

Imports: the standard library, `errors`, `openai_request`, `types`.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from interlock.errors import InvalidRequest
from interlock.openai_request import (
    DEPLOYMENT_ONLY,
    LITELLM_ONLY,
    PER_DEPLOYMENT_SETTINGS,
    merged_extra_body,
    parse_chat_request,
)
from interlock.types import EmbeddingRequest, EmbeddingResult

# Parsed here; everything else an OpenAI client sends goes to `extra`.
_OWN = {"model", "input", "dimensions", "encoding_format", "user", "stream"}
# Read by the chat parser into the routing request (which refuses the
# deployment-only keys and settings, as `allowed_openai_params`: sent on, it
# would reach the provider as a field); never sent upstream.
_ROUTING = {"timeout", "num_retries", "fallbacks", "tags", "metadata", "mock_response",
            "drop_params", "max_retries", "extra_headers", *DEPLOYMENT_ONLY, *LITELLM_ONLY,
            *PER_DEPLOYMENT_SETTINGS}
_FORMATS = ("float", "base64")
# The call arguments of a Router's `default_litellm_params` that an embeddings
# call takes too: the routing ones and `user`. Chat's sampling arguments
# (temperature, max_tokens, ...) would be sent to the embeddings endpoint,
# which has no use for them, so they stay with chat calls.
CALL_DEFAULTS = frozenset(_ROUTING - {"mock_response", *DEPLOYMENT_ONLY, *LITELLM_ONLY,
                                       *PER_DEPLOYMENT_SETTINGS}) | {"user"}
# OpenAI's own bound on texts per request; a provider may allow fewer.
MAX_INPUTS = 2048


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str) and not value:  # said of `input` as given: no input[0]
        raise InvalidRequest("'input' must be a non-empty string, or a non-empty list of "
                             "non-empty strings; got an empty string.",
                             param="input", code="invalid_value")
    if isinstance(value, str):
        value = [value]
    if value is None or (isinstance(value, list) and not value):
        raise InvalidRequest("'input' is required: a string or a non-empty list of strings.",
                             param="input", code="missing_required_parameter")
    if not isinstance(value, list):  # a tuple, a number, a library caller's array
        raise InvalidRequest(f"'input' must be a string or a list of strings; got "
                             f"{type(value).__name__} (a NumPy array: call .tolist()).",
                             param="input", code="invalid_value")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' holds {len(value)} texts; send at most {MAX_INPUTS} "
                             "per request.", param="input", code="invalid_value")
    for i, text in enumerate(value):
        if isinstance(text, (int, list)):
            raise InvalidRequest(
                "'input' as token ids is not supported: Interlock routes across providers "
                "with different tokenizers. Send the text instead.",
                param="input", code="invalid_value")
        if not isinstance(text, str) or not text:
            raise InvalidRequest(f"'input[{i}]' must be a non-empty string.",
                                 param="input", code="invalid_value")
    return value


def parse_embedding_request(body: Any) -> EmbeddingRequest:
    """Validate an OpenAI embeddings body and build the neutral request."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if "extra_body" in body:  # a call argument, never a field to send
        body = merged_extra_body({k: v for k, v in body.items() if k != "extra_body"},
                                 body["extra_body"])
    if body.get("stream"):
        raise InvalidRequest("'stream' is not supported for embeddings: the answer comes "
                             "whole. Leave it out.", param="stream", code="invalid_value")
    inputs = _inputs(body.get("input"))
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(
            dimensions, int) or dimensions < 1):
        raise InvalidRequest("'dimensions' must be a positive integer.", param="dimensions",
                             code="invalid_value")
    encoding = body.get("encoding_format", "float")
    if encoding not in _FORMATS:
        raise InvalidRequest(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}.",
                             param="encoding_format", code="invalid_value")
    routing_body = {k: v for k, v in body.items() if k in _ROUTING}
    routing = parse_chat_request({
        **routing_body, "model": body.get("model"), "user": body.get("user"),
        "messages": [{"role": "user", "content": text} for text in inputs]})
    return EmbeddingRequest(routing=routing, inputs=inputs, dimensions=dimensions,
                            extra={k: v for k, v in body.items()
                                   if k not in _OWN and k not in _ROUTING})


def wants_base64(body: Any) -> bool:
    """The client asked for base64 (the openai SDK does unless told otherwise)."""
    return isinstance(body, dict) and body.get("encoding_format") == "base64"


def _base64(vector: list[float]) -> str:
    # OpenAI's base64 form: little-endian float32s, which the SDKs decode.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_dict(result: EmbeddingResult, *, model: str, base64_out: bool = False
                   ) -> dict[str, Any]:
    """The OpenAI `list` of embeddings for one result."""
    tokens = result.usage.input_tokens
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i,
                  "embedding": _base64(v) if base64_out else v}
                 for i, v in enumerate(result.vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
