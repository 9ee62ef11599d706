"""The Anthropic adapter itself: one Messages API call (`POST {base}/v1/messages`),
whole or streamed, over the shared HttpClient.

Imports: orjson, the standard library, `types`, `errors`, `catalog`,
`adapters.base`, `adapters.http`, `adapters.registry`, `adapters.anthropic.*`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import ClassVar

import orjson

from interlock.adapters.anthropic.error_mapping import (
    error_from_body,
    error_from_response,
    malformed,
)
from interlock.adapters.anthropic.messages_api import API_VERSION, JSON_CHOICE, PROVIDER
from interlock.adapters.anthropic.request import build_body
from interlock.adapters.anthropic.response import parse_message
from interlock.adapters.anthropic.stream import StreamState
from interlock.adapters.base import (
    answer_shape,
    checked_delta,
    checked_response,
    iter_sse,
    request_body,
    with_call_headers,
    with_extra_headers,
)
from interlock.adapters.http import HttpClient, Labels, Timeouts
from interlock.adapters.registry import resolve_base_url
from interlock.catalog import Deployment
from interlock.errors import ConnectionFailed
from interlock.types import ChatRequest, ChatResponse, StreamDelta


class AnthropicAdapter:
    """Calls the Messages API over the shared HttpClient."""

    provider: ClassVar[str] = PROVIDER
    keeps_time: ClassVar[bool] = True  # every call is bounded by adapters.http

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        url, headers, body, json_answer = self._prepare(request, deployment, stream=False)
        labels = Labels(PROVIDER, deployment.name)
        resp = await self._http.post(url, headers=headers, body=body, timeouts=timeouts,
                                     labels=labels)
        with answer_shape(PROVIDER, deployment.name):
            if resp.status != 200:
                raise error_from_response(resp.status, resp.headers, resp.body, deployment)
            try:
                data = orjson.loads(resp.body)
            except ValueError:
                raise malformed(deployment, resp.body) from None
            if isinstance(data, dict) and data.get("type") == "error":
                raise error_from_body(resp.status, resp.headers, data, deployment)
            return checked_response(parse_message(data, deployment, json_answer=json_answer))

    async def stream(self, request: ChatRequest, deployment: Deployment,
                     timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        url, headers, body, json_answer = self._prepare(request, deployment, stream=True)
        labels = Labels(PROVIDER, deployment.name)
        async with self._http.stream(url, headers=headers, body=body, timeouts=timeouts,
                                     labels=labels) as resp:
            if resp.status != 200:
                body = await resp.read()
                with answer_shape(PROVIDER, deployment.name):
                    raise error_from_response(resp.status, resp.headers, body, deployment)
            state = StreamState(deployment, json_answer=json_answer)
            async for event in iter_sse(resp.line_batches()):
                with answer_shape(PROVIDER, deployment.name):
                    delta = state.feed(event)
                    if delta is not None:
                        checked_delta(delta)
                if delta is not None:
                    yield delta
                if state.done:
                    return
            raise ConnectionFailed(
                "The Anthropic stream ended before message_stop",
                provider=PROVIDER, deployment=deployment.name,
            )

    def _prepare(self, request: ChatRequest, deployment: Deployment,
                 *, stream: bool) -> tuple[str, dict[str, str], bytes, bool]:
        """URL, headers, body, and whether the answer comes as the `json_answer`
        tool's input (OpenAI's JSON mode)."""
        base = deployment.api_base or resolve_base_url(PROVIDER, None, os.environ)
        payload = build_body(request, deployment, stream=stream)
        headers = {
            "content-type": "application/json",
            "anthropic-version": str(deployment.extra.get("anthropic_version") or API_VERSION),
        }
        key = deployment.key()
        if key:
            headers["x-api-key"] = key
        beta = deployment.extra.get("anthropic_beta")
        if beta:
            headers["anthropic-beta"] = str(beta)
        return (f"{base.rstrip('/')}/v1/messages",
                with_call_headers(with_extra_headers(headers, deployment), request),
                request_body(payload), payload.get("tool_choice") is JSON_CHOICE)
