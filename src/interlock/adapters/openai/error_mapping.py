"""Error mapping at the boundary: OpenAI error bodies (and error objects inside
a 200 stream) as `interlock.errors` types, recognising context-window,
content-policy and quota errors, and the rate-limit reset headers as a retry
delay.

Imports: orjson, the standard library, `errors`, `catalog`, `adapters.base`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.adapters.base import parse_retry_after, upstream_error_text
from interlock.catalog import Deployment
from interlock.errors import (
    ContentFiltered,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    UpstreamServerError,
    error_for_status,
    redact,
    redact_json,
)

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_TEXTS = ("maximum context length", "context length", "context window",
                  "too many tokens", "prompt is too long", "reduce the length of the messages")
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
_FILTER_TEXTS = ("safety system", "content management policy", "usage policy",
                 "content_policy_violation")

# Status to assume for an error object that arrives inside a 200 stream.
_STREAM_ERROR_STATUS = {
    "rate_limit_exceeded": 429, "rate_limit_error": 429, "tokens": 429, "requests": 429,
    "insufficient_quota": 429, "invalid_request_error": 400, "authentication_error": 401,
    "invalid_api_key": 401, "permission_error": 403, "not_found_error": 404,
    "model_not_found": 404, "overloaded_error": 503, "server_error": 500,
}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                  "ns": 1e-9}


def stream_error_status(error: Any) -> int:
    if not isinstance(error, dict):
        return 500
    for key in ("status", "code"):
        if isinstance(error.get(key), int) and error[key] >= 400:
            return int(error[key])
    for key in ("code", "type"):
        status = _STREAM_ERROR_STATUS.get(str(error.get(key)))
        if status:
            return status
    return 500


def decode_answer(status: int, headers: Mapping[str, str], raw: bytes,
                  deployment: Deployment) -> dict[str, Any]:
    """The JSON of a successful answer, or the mapped error raised."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    if status == 200 and isinstance(data, dict) and "error" not in data:
        return data
    if status == 200 and data is None:
        raise malformed(deployment, f"an answer that is not JSON: {raw[:200]!r}")
    if status == 200:
        status = stream_error_status(data.get("error") if isinstance(data, dict) else None)
    raise error_from_body(status, headers, data if data is not None else raw, deployment)


def error_from_body(status: int, headers: Mapping[str, str], body: Any,
                    deployment: Deployment) -> ProviderError:
    secrets = deployment.secrets()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        text, code, kind = (str(error.get("message") or ""), str(error.get("code") or ""),
                            str(error.get("type") or ""))
    else:
        text = str(error) if error is not None else _short(body)
        code = kind = ""
    cls = classify_error(status, code, kind, text)
    if cls is RateLimited and "insufficient_quota" in (code, kind):
        text += " (This is the account's quota or billing limit, not a short rate limit.)"
    message = upstream_error_text(deployment.provider, deployment.name, status, code, text)
    return cls(redact(message, *secrets), provider=deployment.provider,
               deployment=deployment.name, status=status,
               retry_after=retry_after(status, headers), body=_redacted_body(body, secrets))


def classify_error(status: int, code: str, kind: str, text: str) -> type[ProviderError]:
    """OpenAI's own recognisers first, then the generic status table."""
    lowered = text.lower()
    if code in _CONTEXT_CODES or (status in (400, 413, 422)
                                  and any(t in lowered for t in _CONTEXT_TEXTS)):
        return ContextWindowExceeded
    if code in _FILTER_CODES or kind in _FILTER_CODES or (
            status == 400 and any(t in lowered for t in _FILTER_TEXTS)):
        return ContentFiltered
    return error_for_status(status)


def retry_after(status: int, headers: Mapping[str, str]) -> float | None:
    """Retry-After first; on a 429, else OpenAI's x-ratelimit-reset-* headers (the
    reset of whichever limit is exhausted, or the later of the two)."""
    seconds = parse_retry_after(headers)
    if seconds is not None or status != 429:
        return seconds
    resets = {}
    for kind in ("requests", "tokens"):
        value = parse_duration(headers.get(f"x-ratelimit-reset-{kind}") or "")
        if value is not None:
            resets[kind] = value
    exhausted = [v for k, v in resets.items()
                 if (headers.get(f"x-ratelimit-remaining-{k}") or "").strip() == "0"]
    candidates = exhausted or list(resets.values())
    return max(candidates) if candidates else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration as OpenAI writes them ("1s", "6m0s", "20ms")."""
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def _redacted_body(body: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(body, bytes):
        return redact(body[:2000].decode("utf-8", errors="replace"), *secrets)
    return redact_json(body, *secrets)


def _short(body: Any) -> str:
    if isinstance(body, bytes):
        return body[:500].decode("utf-8", errors="replace") or "(empty body)"
    return str(body)[:500]


def malformed(deployment: Deployment, what: str) -> UpstreamServerError:
    return UpstreamServerError(
        redact(f"{deployment.provider} sent {what} (deployment {deployment.name!r})",
               *deployment.secrets()),
        provider=deployment.provider, deployment=deployment.name)
