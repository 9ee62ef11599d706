"""`mock_response`: answer with a given text and call no provider.

LiteLLM users write `mock_response="..."` in a completion call, or in a
deployment's `litellm_params`, so that tests and load tests spend nothing.
Interlock used to drop the argument and call the real provider, which is the
one outcome such a user must never get. Here a mocked attempt still goes
through routing, retries, cooldowns and the ledger like any other, but its
answer is made up locally: usage is Interlock's own estimate (the provider
counted nothing) and its cost is recorded as zero, because nothing was billed.

An embeddings request with `mock_response` set gets made-up unit vectors, the
same for the same text, of the dimensions asked for (else `MOCK_DIMENSIONS`).

Only text is taken. LiteLLM also takes an exception or a response object; those
are refused with a pointer to the fake upstream, which scripts failures in each
provider's real wire format. LiteLLM's error sentinels (`MOCK_ERRORS`, such as
"litellm.RateLimitError") are text it never answers with: the attempt fails with
the matching error instead, so the dispatcher retries, cools down and falls back
as for a real one, as LiteLLM's Router does. So do the testing switches a request
may carry (`mock_failures`, `mock_timeout`).

Imports: the standard library, `errors`, `types`, `catalog`, `mocked`, `tokens`,
`adapters.base`, `adapters.http`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import re
from collections.abc import AsyncIterator
from typing import ClassVar

from interlock.adapters.base import DeltaBatch, flatten
from interlock.adapters.http import HttpClient, Timeouts
from interlock.catalog import Deployment
from interlock.errors import (
    ContentFiltered,
    ContextWindowExceeded,
    Overloaded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamServerError,
)
from interlock.mocked import mock_text
from interlock.tokens import CHARS_PER_TOKEN, estimate_inputs_tokens, estimate_prompt_tokens
from interlock.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    StreamDelta,
    Usage,
)

MOCK_DIMENSIONS = 16
# A word and the space after it: streamed mock text arrives a word a chunk.
_PIECES = re.compile(r"\S+\s*|\s+")


# LiteLLM's mock_response values that raise rather than answer: the exact ones,
# then the prefixes, each with the error it stands for (and the status LiteLLM's
# mock gives it).
MOCK_ERRORS: dict[str, tuple[type[ProviderError], int]] = {
    "litellm.RateLimitError": (RateLimited, 429),
    "litellm.InternalServerError": (UpstreamServerError, 500),
    "litellm.ContextWindowExceededError": (ContextWindowExceeded, 400),
}
MOCK_ERROR_PREFIXES: dict[str, tuple[type[ProviderError], int]] = {
    "Exception: content_filter_policy": (ContentFiltered, 400),
    # Raised after the first chunk of a stream, and at once otherwise.
    "Exception: mock_streaming_error": (Overloaded, 529),
}
_MID_STREAM = "Exception: mock_streaming_error"


def _sentinel(text: str) -> tuple[type[ProviderError], int] | None:
    """The (error, status) a LiteLLM sentinel stands for, or None for answer text."""
    return MOCK_ERRORS.get(text) or next(
        (kind for prefix, kind in MOCK_ERROR_PREFIXES.items() if text.startswith(prefix)), None)


def is_failure_sentinel(text: str) -> bool:
    """Whether `mock_response` text stands for a failure rather than an answer."""
    return _sentinel(text) is not None


def mock_error(text: str, deployment: Deployment) -> ProviderError | None:
    """The error a LiteLLM sentinel stands for, or None for text to answer with."""
    found = _sentinel(text)
    if found is None:
        return None
    cls, status = found
    return cls(f"mock_response={text!r}: a mock {cls.__name__} (HTTP {status}); no "
               "provider was called", provider=deployment.provider,
               deployment=deployment.name, status=status)


class MockAdapter:
    """Answers every call with `mock_text`; never touches the network."""

    provider: ClassVar[str] = "mock"

    def __init__(self, http: HttpClient | None = None) -> None:
        self._serial = itertools.count(1)

    async def _failure(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts, *, stream: bool) -> None:
        """Raise what this attempt fails with, if anything."""
        if request.mock_timeout:
            # LiteLLM's mock_timeout waits out the timeout before failing.
            await asyncio.sleep(timeouts.total or 0.0)
            raise Timeout(f"mock_timeout: no answer within {timeouts.total or 0:g}s (a mock)",
                          provider=deployment.provider, deployment=deployment.name)
        if request.mock_failures:
            sentinel = request.mock_failures.pop(0)  # one attempt each
            error = mock_error(sentinel, deployment)
            if error is not None:
                raise error
        text = mock_text(request, deployment) or ""
        error = mock_error(text, deployment)
        if error is not None and not (stream and text.startswith(_MID_STREAM)):
            raise error

    def _answer(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        text = mock_text(request, deployment) or ""
        if mock_error(text, deployment) is not None:
            text = ""  # a mid-stream error's chunks carry no sentinel text
        output = -(-len(text) // CHARS_PER_TOKEN)
        return ChatResponse(
            id=f"chatcmpl-mock-{next(self._serial)}", model=deployment.model, content=text,
            finish_reason="stop",
            usage=Usage(input_tokens=estimate_prompt_tokens(request), output_tokens=output))

    async def complete(self, request: ChatRequest, deployment: Deployment,
                       timeouts: Timeouts) -> ChatResponse:
        await self._failure(request, deployment, timeouts, stream=False)
        return self._answer(request, deployment)

    def stream(self, request: ChatRequest, deployment: Deployment,
               timeouts: Timeouts) -> AsyncIterator[StreamDelta]:
        return flatten(self.stream_batches(request, deployment, timeouts))

    async def stream_batches(self, request: ChatRequest, deployment: Deployment,
                             timeouts: Timeouts) -> AsyncIterator[DeltaBatch]:
        await self._failure(request, deployment, timeouts, stream=True)
        answer = self._answer(request, deployment)
        pieces = _PIECES.findall(answer.content or "") or [""]
        ids = answer.id, answer.model
        yield DeltaBatch([StreamDelta(text=pieces[0], id=ids[0], model=ids[1])])
        error = mock_error(mock_text(request, deployment) or "", deployment)
        if error is not None:  # LiteLLM's mock_streaming_error: fail after the first chunk
            raise error
        rest = [StreamDelta(text=p, id=ids[0], model=ids[1]) for p in pieces[1:]]
        rest.append(StreamDelta(finish_reason="stop", usage=answer.usage, id=ids[0],
                                model=ids[1]))
        yield DeltaBatch(rest, final=True)

    async def embeddings(self, request: EmbeddingRequest, deployment: Deployment,
                         timeouts: Timeouts) -> EmbeddingResult:
        await self._failure(request.routing, deployment, timeouts, stream=False)
        size = request.dimensions or MOCK_DIMENSIONS
        return EmbeddingResult(
            [_unit_vector(text, size) for text in request.inputs],
            Usage(input_tokens=estimate_inputs_tokens(request.inputs)))


def _unit_vector(text: str, size: int) -> list[float]:
    # Seeded by the text, so equal texts get equal vectors in every process.
    seed = int.from_bytes(hashlib.blake2b(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
