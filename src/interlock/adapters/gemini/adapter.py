"""The Gemini adapter itself: generateContent, streamGenerateContent (SSE, or a
whole JSON array from a proxy) and batchEmbedContents over the shared
HttpClient.

Imports: the standard library, `types`, `catalog`, `adapters.base`,
`adapters.http`, `adapters.gemini.*`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from interlock.adapters.base import answer_shape, checked_delta, checked_response, iter_sse
from interlock.adapters.gemini.call import PROVIDER, GeminiCall, new_call
from interlock.adapters.gemini.error_mapping import error_from_response, load_json, malformed
from interlock.adapters.gemini.request import build_body, build_embedding_body
from interlock.adapters.gemini.response import parse_embeddings, parse_response
from interlock.adapters.gemini.stream import StreamState, fed_deltas
from interlock.adapters.http import HttpClient, Timeouts
from interlock.catalog import Deployment
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    StreamDelta,
    Usage,
)

# batchEmbedContents refuses more requests than this in one call.
EMBED_BATCH = 100


class GeminiAdapter:
    """Gemini API (Google AI Studio keys) over the shared HttpClient."""

    provider: ClassVar[str] = PROVIDER
    keeps_time: ClassVar[bool] = True  # every call is bounded by adapters.http

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        call = prepare_call(request, deployment, stream=False)
        data = await self._post(call, timeouts)
        with answer_shape(PROVIDER, deployment.name):
            return checked_response(parse_response(data, call))

    async def _post(self, call: GeminiCall, timeouts: Timeouts) -> dict[str, Any]:
        """The JSON object a non-streamed call answers with; errors raised typed."""
        resp = await self._http.post(call.url, headers=call.headers, body=call.body,
                                     timeouts=timeouts, labels=call.labels)
        with answer_shape(PROVIDER, call.labels.deployment):
            if resp.status >= 400:
                raise error_from_response(resp.status, resp.headers, resp.body, call)
        data = load_json(resp.body, call)
        if not isinstance(data, dict):
            raise malformed(call, "the response is not a JSON object")
        return data

    async def stream(self, request: ChatRequest, deployment: Deployment,
                     timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        call = prepare_call(request, deployment, stream=True)
        async with self._http.stream(call.url, headers=call.headers, body=call.body,
                                     timeouts=timeouts, labels=call.labels) as resp:
            if resp.status >= 400:
                body = await resp.read()
                with answer_shape(PROVIDER, deployment.name):
                    raise error_from_response(resp.status, resp.headers, body, call)
            state = StreamState(call)
            if "event-stream" in resp.headers.get("content-type", ""):
                async for event in iter_sse(resp.line_batches()):
                    for delta in fed_deltas(state, load_json(event.data, call)):
                        yield delta
            else:
                # A proxy (or the API without alt=sse) may answer with one JSON
                # array or object instead of events; same chunks, all at once.
                whole = load_json(await resp.read(), call)
                for chunk in whole if isinstance(whole, list) else [whole]:
                    for delta in fed_deltas(state, chunk):
                        yield delta
            with answer_shape(PROVIDER, deployment.name):
                last = checked_delta(state.finish())
            yield last

    async def embeddings(self, request: EmbeddingRequest, deployment: Deployment,
                         timeouts: Timeouts) -> EmbeddingResult:
        """One vector per input, in input order, and the tokens billed.

        The API takes at most `EMBED_BATCH` inputs a call, and OpenAI clients
        send up to 2048, so longer lists go in consecutive calls."""
        vectors: list[list[float]] = []
        tokens = 0
        estimated = False
        # One deadline for all the calls: the attempt's timeout bounds the whole.
        deadline = None if timeouts.total is None else time.monotonic() + timeouts.total
        for start in range(0, len(request.inputs), EMBED_BATCH):
            part = dataclasses.replace(request,
                                       inputs=request.inputs[start:start + EMBED_BATCH])
            if deadline is not None and start:
                timeouts = dataclasses.replace(
                    timeouts, total=max(0.001, deadline - time.monotonic()))
            result = await self._embed_batch(part, deployment, timeouts)
            vectors += result.vectors
            tokens += result.usage.input_tokens
            # One batch's count estimated makes the sum an estimate.
            estimated = estimated or result.usage_estimated
        return EmbeddingResult(vectors, Usage(input_tokens=tokens), usage_estimated=estimated)

    async def _embed_batch(self, request: EmbeddingRequest, deployment: Deployment,
                           timeouts: Timeouts) -> EmbeddingResult:
        call = new_call(deployment, "batchEmbedContents", request.routing,
                        lambda model: build_embedding_body(request, deployment, model))
        data = await self._post(call, timeouts)
        with answer_shape(PROVIDER, deployment.name):
            return parse_embeddings(data, request.inputs, call)


def prepare_call(request: ChatRequest, deployment: Deployment, *, stream: bool) -> GeminiCall:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return new_call(deployment, method, request, lambda model: build_body(request, deployment))
