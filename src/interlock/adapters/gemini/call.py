"""One call to the Gemini API as it goes out: its URL (`models/{model}:{method}`),
headers (the key in `x-goog-api-key`, never in the URL) and body, and the
labels and key its errors are reported and redacted with.

Imports: orjson, the standard library, `errors`, `catalog`, `types`,
`adapters.base`, `adapters.http`, `adapters.registry`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from interlock.adapters.base import request_body, with_call_headers, with_extra_headers
from interlock.adapters.http import Labels
from interlock.adapters.registry import API_KEY_ENV, resolve_base_url
from interlock.catalog import Deployment
from interlock.errors import AuthenticationFailed
from interlock.types import ChatRequest

PROVIDER = "gemini"


@dataclass(slots=True)
class GeminiCall:
    url: str
    # Kept out of the repr with the key: they carry it (x-goog-api-key), and a
    # deployment's extra headers may carry other secrets.
    headers: dict[str, str] = field(repr=False)
    body: bytes
    labels: Labels
    model: str
    key: str | None = field(repr=False)
    deployment: Deployment | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """What its error texts must not show: the key (the deployment's or the
        environment's) and the deployment's other secrets. Gathered when an error
        needs them, not on every call."""
        return (self.key or "", *(self.deployment.secrets() if self.deployment else ()))


def new_call(deployment: Deployment, method: str, request: ChatRequest,
             build: Callable[[str], dict[str, Any]]) -> GeminiCall:
    """A call to `models/{model}:{method}` for `request` (whose `extra_headers` go
    with it); `build` makes the body from the bare model name, after the key
    check, so a keyless call fails on the key first."""
    key = deployment.key() or _key_from_env(os.environ)
    labels = Labels(PROVIDER, deployment.name)
    if not key:
        raise AuthenticationFailed(
            f"No API key for Gemini deployment {deployment.name!r}: set api_key, or "
            f"{' or '.join(API_KEY_ENV[PROVIDER])}.",
            provider=PROVIDER, deployment=deployment.name)
    model = deployment.model.removeprefix("models/")
    body = build(model)
    headers = with_call_headers(with_extra_headers(
        {"content-type": "application/json", "x-goog-api-key": key}, deployment), request)
    return GeminiCall(url=_url(deployment, model, method), headers=headers,
                      body=request_body(body), labels=labels, model=model, key=key,
                      deployment=deployment)


def _key_from_env(environ: Mapping[str, str]) -> str | None:
    return next((environ[n] for n in API_KEY_ENV[PROVIDER] if environ.get(n)), None)


def _url(deployment: Deployment, model: str, method: str) -> str:
    """The URL of `method` (with its query, if any) on `model`."""
    base = deployment.api_base or resolve_base_url(PROVIDER, None, os.environ)
    base = base.rstrip("/")
    if not re.search(r"/v1(beta|alpha)?$", base):
        base += "/v1beta"
    return f"{base}/models/{quote(model, safe='-._')}:{method}"
