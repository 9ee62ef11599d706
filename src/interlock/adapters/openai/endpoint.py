"""What every call to one deployment sends the same way: its URLs, headers (the
key among them), labels and extra-field rules, built once per deployment.

Imports: the standard library, `catalog`, `adapters.base`, `adapters.http`,
`adapters.registry`, `adapters.openai.server_params`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from interlock.adapters.base import with_extra_headers
from interlock.adapters.http import Labels
from interlock.adapters.openai.server_params import DeploymentRules
from interlock.adapters.registry import resolve_base_url
from interlock.catalog import Deployment


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What every call to one deployment sends the same way. Its headers go
    to aiohttp, which copies them and never changes the dict it was given. They
    hold the key (and any extra_headers), so the repr leaves them out."""

    chat_url: str
    embeddings_url: str
    headers: dict[str, str] = field(repr=False)
    stream_headers: dict[str, str] = field(repr=False)
    labels: Labels
    # Which extra fields its server takes: read from the deployment's settings
    # once, not on every call that carries one.
    rules: DeploymentRules


def endpoint_url(deployment: Deployment, path: str) -> str:
    base = deployment.api_base or resolve_base_url(deployment.provider, None, os.environ)
    return base.rstrip("/") + path


def endpoint_headers(deployment: Deployment, *, stream: bool) -> dict[str, str]:
    # A whole answer needs no Accept of its own: aiohttp's */* serves, and each
    # header is work on every call. A stream says what it expects.
    headers = ({"content-type": "application/json", "accept": "text/event-stream"} if stream
               else {"content-type": "application/json"})
    key = deployment.key()
    if key:
        headers["authorization"] = f"Bearer {key}"
    organization = deployment.extra.get("organization")
    if organization:
        headers["openai-organization"] = str(organization)
    return with_extra_headers(headers, deployment)


def endpoint_labels(deployment: Deployment) -> Labels:
    return Labels(provider=deployment.provider, deployment=deployment.name)
