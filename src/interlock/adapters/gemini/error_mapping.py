"""Error mapping at the boundary: Google's error bodies (`{"error": {"code",
"message", "status", "details"}}`, in an HTTP error or inside a 200 answer)
as `interlock.errors` types, with RetryInfo as the retry delay, and a
malformed answer as UpstreamServerError.

Imports: orjson, the standard library, `errors`, `adapters.base`,
`adapters.gemini.call`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from interlock.adapters.base import parse_retry_after, upstream_error_text
from interlock.adapters.gemini.call import PROVIDER, GeminiCall
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
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

_CONTEXT_WINDOW = re.compile(
    r"exceeds the maximum number of tokens|input token count.{0,80}exceeds", re.IGNORECASE)
_BAD_KEY = re.compile(r"API[_ ]key (not valid|not found|expired|invalid)", re.IGNORECASE)

_STATUS_TO_ERROR: dict[str, type[ProviderError]] = {
    "UNAUTHENTICATED": AuthenticationFailed,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAVAILABLE": Overloaded,
    "INTERNAL": UpstreamServerError,
    "DEADLINE_EXCEEDED": Timeout,
}


def error_from_response(status: int, headers: Mapping[str, str], body: bytes,
                        call: GeminiCall) -> ProviderError:
    """The typed error for a non-2xx answer (Google's body, or whatever came)."""
    try:
        data: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # the JSON-array stream wraps errors too
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        text = body[:500].decode("utf-8", errors="replace").strip()
        err = {"code": status, "message": text or f"HTTP {status}"}
    err.setdefault("code", status)
    return error_from_object(err, headers, call, status=status)


def error_from_object(err: Any, headers: Mapping[str, str], call: GeminiCall,
                      status: int | None = None) -> ProviderError:
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = status if status is not None else int_or(err.get("code"), 500)
    grpc = str(err.get("status") or "")
    message = str(err.get("message") or "")
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    cls = classify(code, grpc, message, details)
    retry_after = _retry_delay(details)
    if retry_after is None:
        retry_after = parse_retry_after(headers)
    # Inside a 200 answer the error object's own code stands where the HTTP status would.
    label = grpc if status is not None else f"{code} {grpc}".strip()
    text = redact(upstream_error_text(PROVIDER, call.labels.deployment, status, label, message),
                  *call.secrets())
    return cls(text, provider=PROVIDER, deployment=call.labels.deployment, status=code,
               retry_after=retry_after, body=redact_json(err, *call.secrets()))


def classify(status: int, grpc: str, message: str,
             details: Iterable[dict[str, Any]]) -> type[ProviderError]:
    """Which error a Gemini error body means; token limits and bad keys come as 400s."""
    if status in (400, 413) and _CONTEXT_WINDOW.search(message):
        return ContextWindowExceeded
    reasons = {str(d.get("reason", "")) for d in details}
    if status == 400 and ("API_KEY_INVALID" in reasons or _BAD_KEY.search(message)):
        return AuthenticationFailed
    if grpc in _STATUS_TO_ERROR:
        return _STATUS_TO_ERROR[grpc]
    if status == 400:
        return BadRequest
    return error_for_status(status)


def _retry_delay(details: Iterable[dict[str, Any]]) -> float | None:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            found = re.fullmatch(r"\s*([\d.]+)s\s*", str(delay)) if delay is not None else None
            if found:
                return float(found.group(1))
    return None


def int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def load_json(raw: bytes | str, call: GeminiCall) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise malformed(call, "it is not valid JSON") from None


def malformed(call: GeminiCall, why: str) -> UpstreamServerError:
    return UpstreamServerError(f"Gemini sent a malformed answer: {why}.", provider=PROVIDER,
                               deployment=call.labels.deployment)
