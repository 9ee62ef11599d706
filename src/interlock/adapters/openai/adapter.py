"""The OpenAI-compatible adapter itself: chat completions (whole, or streamed a
network read at a time) and embeddings, over the shared HttpClient.

Imports: `types`, `tokens`, `catalog`, `adapters.base`, `adapters.http`,
`adapters.openai.*`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from interlock.adapters.base import (
    SHAPE_ERRORS,
    DeltaBatch,
    flatten,
    request_body,
    token_count_ok,
    with_call_headers,
)
from interlock.adapters.http import HttpClient, Timeouts
from interlock.adapters.openai.endpoint import (
    Endpoint,
    endpoint_headers,
    endpoint_labels,
    endpoint_url,
)
from interlock.adapters.openai.error_mapping import decode_answer, malformed
from interlock.adapters.openai.request import build_body
from interlock.adapters.openai.response import parsed_answer
from interlock.adapters.openai.server_params import deployment_rules, sendable_extra
from interlock.adapters.openai.stream_reading import read_batches
from interlock.catalog import Deployment
from interlock.tokens import estimate_inputs_tokens
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    StreamDelta,
    Usage,
)


class OpenAIAdapter:
    """Chat completions and embeddings over the OpenAI wire format."""

    provider: ClassVar[str] = "openai"
    keeps_time: ClassVar[bool] = True  # every call is bounded by adapters.http

    def __init__(self, http: HttpClient) -> None:
        self._http = http
        # Per deployment (a config's deployments are fixed for the adapter's life):
        # its URL, headers and labels were rebuilt on every call before, about a
        # hundred opcodes of each request's own work.
        self._endpoints: dict[Deployment, Endpoint] = {}

    def _endpoint(self, deployment: Deployment) -> Endpoint:
        endpoint = self._endpoints.get(deployment)
        if endpoint is None:
            endpoint = self._endpoints[deployment] = Endpoint(
                chat_url=endpoint_url(deployment, "/chat/completions"),
                embeddings_url=endpoint_url(deployment, "/embeddings"),
                headers=endpoint_headers(deployment, stream=False),
                stream_headers=endpoint_headers(deployment, stream=True),
                labels=endpoint_labels(deployment),
                rules=deployment_rules(deployment))
        return endpoint

    # -- calls ---------------------------------------------------------------
    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        endpoint = self._endpoint(deployment)
        body = build_body(request, deployment, endpoint.rules, stream=False)
        resp = await self._http.post(
            endpoint.chat_url, headers=with_call_headers(endpoint.headers, request),
            body=request_body(body),
            timeouts=timeouts, labels=endpoint.labels)
        return parsed_answer(resp.status, resp.headers, resp.body, deployment)

    def stream(self, request: ChatRequest, deployment: Deployment,
               timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        return flatten(self.stream_batches(request, deployment, timeouts))

    def stream_batches(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> AsyncIterator[DeltaBatch]:
        # The body is built now (a request it cannot take fails here) and the call
        # is made and read by one generator: a generator relaying another cost a
        # resumption per network read.
        endpoint = self._endpoint(deployment)
        body = build_body(request, deployment, endpoint.rules, stream=True)
        return read_batches(self._http.stream(
            endpoint.chat_url, headers=with_call_headers(endpoint.stream_headers, request),
            body=request_body(body),
            timeouts=timeouts, labels=endpoint.labels), deployment)

    async def embeddings(self, request: EmbeddingRequest, deployment: Deployment,
                         timeouts: Timeouts) -> EmbeddingResult:
        """One vector per input, in input order, and the tokens billed."""
        endpoint = self._endpoint(deployment)
        body: dict[str, Any] = {"model": deployment.model, "input": request.inputs,
                                "encoding_format": "float"}
        if request.extra:
            drop = bool(request.routing.drop_params or deployment.drop_params)
            body = {**sendable_extra(request.extra, deployment, drop, embeddings=True,
                                     known=endpoint.rules), **body}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.routing.user is not None:
            body["user"] = request.routing.user
        resp = await self._http.post(
            endpoint.embeddings_url, headers=with_call_headers(endpoint.headers, request.routing),
            body=request_body(body), timeouts=timeouts, labels=endpoint.labels)
        data = decode_answer(resp.status, resp.headers, resp.body, deployment)
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
            usage = data.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or 0)
        except SHAPE_ERRORS:
            raise malformed(deployment, "an embeddings answer without data[].embedding") from None
        if len(vectors) != len(request.inputs):
            raise malformed(deployment, f"{len(vectors)} embeddings for "
                            f"{len(request.inputs)} inputs")
        if not token_count_ok(tokens):
            raise malformed(deployment, f"an embeddings answer with an impossible token count "
                            f"({tokens})")
        if not tokens:  # some OpenAI-compatible servers leave usage out
            return EmbeddingResult(vectors, Usage(input_tokens=estimate_inputs_tokens(
                request.inputs)), usage_estimated=True)
        return EmbeddingResult(vectors, Usage(input_tokens=tokens))
