"""What the fake upstream should do: replies, faults, and what it received.

Tests build `Reply` and `Fault` values and hand them to `FakeUpstream.script`;
the provider wire modules (`openai_wire`, `anthropic_wire`, `gemini_wire`)
render them in each provider's real format.

Imports: the standard library only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ScriptedToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(slots=True)
class Reply:
    """The answer to give. Unset fields get deterministic defaults.

    `finish` is neutral ("stop", "length", "tool_calls", "content_filter");
    each wire module writes its provider's own word for it. Token counts
    default to an estimate from the request and reply text.
    """

    text: str | None = None
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    finish: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Streamed replies are cut into chunks of this many characters.
    chunk_chars: int = 8
    # The model declines: the OpenAI wire sends this as `message.refusal` (streamed
    # as `delta.refusal`) with no content, as OpenAI does for structured outputs.
    refusal: str | None = None
    # URL citations, as a web-search model gives them (`web_search.url_citation`
    # builds one): the OpenAI wire sends them as `message.annotations` (streamed in
    # one chunk of `delta.annotations` after the text).
    annotations: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Fault:
    """A misbehaviour, applied to the next `times` matching requests (None: all).

    status:        answer with this HTTP status and the provider's real error body
    kind:          a provider-specific error flavour the wire module knows
                   ("context_window", "safety", "overloaded", "auth", ...)
    retry_after:   seconds, sent as Retry-After (and provider headers; Gemini
                   has none and sends it in the 429 body's RetryInfo)
    latency:       seconds before the response starts
    first_token_delay: seconds between the stream's headers and its first chunk
    hang:          never answer (until the client gives up)
    disconnect_after: close the connection after this many stream chunks
    malformed_at:  replace stream chunk number N with bytes that are not JSON
    chunk_interval: seconds between streamed chunks (lets a client read what
                   came before a disconnect, as it would from a real server)
    """

    status: int | None = None
    kind: str | None = None
    message: str | None = None
    retry_after: float | None = None
    latency: float = 0.0
    first_token_delay: float = 0.0
    hang: bool = False
    disconnect_after: int | None = None
    malformed_at: int | None = None
    chunk_interval: float = 0.0
    times: int | None = 1


@dataclass(slots=True)
class ReceivedRequest:
    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    model: str


@dataclass
class _Rule:
    provider: str | None
    model: str | None
    fault: Fault | None = None
    reply: Reply | None = None
    remaining: int | None = None

    def matches(self, provider: str, model: str) -> bool:
        return (self.provider in (None, provider)) and (self.model in (None, model))


class Script:
    """Thread-safe list of rules; the first live rule that matches applies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Rule] = []
        self._replies: list[_Rule] = []

    def add_fault(self, fault: Fault, *, provider: str | None, model: str | None) -> None:
        with self._lock:
            self._faults.append(_Rule(provider, model, fault=fault, remaining=fault.times))

    def set_reply(self, reply: Reply, *, provider: str | None, model: str | None) -> None:
        with self._lock:
            self._replies.insert(0, _Rule(provider, model, reply=reply))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._replies.clear()

    def take_fault(self, provider: str, model: str) -> Fault | None:
        with self._lock:
            for rule in self._faults:
                if rule.matches(provider, model) and rule.remaining != 0:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
        return None

    def reply_for(self, provider: str, model: str) -> Reply | None:
        with self._lock:
            for rule in self._replies:
                if rule.matches(provider, model):
                    return rule.reply
        return None
