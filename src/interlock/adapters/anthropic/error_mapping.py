"""Error mapping at the boundary: Anthropic's `{"type": "error", "error": {...}}`
bodies and `event: error` frames as `interlock.errors` types, its rate-limit
headers as a retry delay, and a malformed answer as UpstreamServerError.

Imports: the standard library, `errors`, `catalog`, `adapters.base`,
`adapters.anthropic.messages_api`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from interlock.adapters.anthropic.messages_api import PROVIDER
from interlock.adapters.base import parse_retry_after, upstream_error_text
from interlock.catalog import Deployment
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ContextWindowExceeded,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamServerError,
    error_for_status,
    redact,
    redact_json,
)

# Anthropic's error types; anything else goes through the generic status table.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "authentication_error": AuthenticationFailed, "permission_error": PermissionDenied,
    "billing_error": AuthenticationFailed, "not_found_error": NotFound,
    "rate_limit_error": RateLimited, "overloaded_error": Overloaded,
    "api_error": UpstreamServerError, "timeout_error": Timeout,
    "invalid_request_error": BadRequest,
}

# A type that names no cause of its own: Anthropic sends api_error with any 5xx
# (a 503 from its edge among them).
GENERIC_TYPES = frozenset({"api_error"})

# The status Anthropic documents for each error type, for `event: error` frames
# that arrive inside a 200 stream.
DOCUMENTED_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}

# Lower-cased fragments of Anthropic's 400 texts when the prompt does not fit, and
# when its output filter blocked the answer.
CONTEXT_WINDOW_TEXTS = ("prompt is too long", "exceed context limit", "context window",
                        "context length", "too many tokens")
CONTENT_FILTER_TEXTS = ("content filtering policy",)


RATELIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def error_from_response(status: int, headers: Mapping[str, str], body: bytes,
                        deployment: Deployment) -> ProviderError:
    """The typed error for a non-200 answer."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        text = body.decode("utf-8", errors="replace")[:500]
        data = {"type": "error", "error": {"type": "", "message": text or f"HTTP {status}"}}
    return error_from_body(status, headers, data, deployment)


def error_from_body(status: int | None, headers: Mapping[str, str], data: dict[str, Any],
                    deployment: Deployment) -> ProviderError:
    """The typed error for an Anthropic error object (HTTP body or `event: error`)."""
    found = data.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    etype = str(error.get("type") or "")
    secrets = deployment.secrets()
    message = redact(str(error.get("message") or ""), *secrets)
    cls = classify(status, etype, message)
    retry_after = parse_retry_after(headers)
    if retry_after is None and cls is RateLimited:
        retry_after = ratelimit_reset_after(headers)
    return cls(
        upstream_error_text(PROVIDER, deployment.name, status, etype, message),
        provider=PROVIDER, deployment=deployment.name,
        status=status if status is not None else DOCUMENTED_STATUS.get(etype),
        retry_after=retry_after, body=redact_json(data, *secrets),
    )


def classify(status: int | None, etype: str, message: str) -> type[ProviderError]:
    lowered = message.lower()
    if (status in (None, 400, 413) or etype == "invalid_request_error") and any(
            text in lowered for text in CONTEXT_WINDOW_TEXTS):
        return ContextWindowExceeded
    if any(text in lowered for text in CONTENT_FILTER_TEXTS):
        return ContentFiltered
    by_type = ERROR_TYPES.get(etype)
    if status is None:
        return by_type or UpstreamServerError
    by_status = error_for_status(status)
    # The status wins where the type says only "something failed" (so a 503 is
    # Overloaded, as it is from OpenAI and Gemini) or less than the status does
    # (an invalid_request_error sent with 422 is an UnprocessableEntity).
    if by_type is None or etype in GENERIC_TYPES or issubclass(by_status, by_type):
        return by_status
    return by_type


def ratelimit_reset_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until Anthropic's exhausted rate limits reset, from the RFC 3339
    `anthropic-ratelimit-*-reset` headers (all of them when none says which)."""
    now = time.time() if now is None else now
    resets: list[float] = []
    exhausted: list[float] = []
    for kind in RATELIMIT_KINDS:
        value = headers.get(f"anthropic-ratelimit-{kind}-reset")
        when = _parse_rfc3339(value) if value else None
        if when is None:
            continue
        resets.append(when)
        if headers.get(f"anthropic-ratelimit-{kind}-remaining") == "0":
            exhausted.append(when)
    chosen = exhausted or resets
    if not chosen:
        return None
    return max(0.0, max(chosen) - now)


def _parse_rfc3339(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def malformed(deployment: Deployment, raw: bytes) -> UpstreamServerError:
    snippet = redact(raw[:200].decode("utf-8", errors="replace"), *deployment.secrets())
    return UpstreamServerError(
        f"Anthropic sent a malformed answer: {snippet!r}",
        provider=PROVIDER, deployment=deployment.name,
    )
