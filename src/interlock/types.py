"""Provider-neutral request, message, response and stream types.

Every layer speaks these: the server translates OpenAI JSON into a `ChatRequest`,
adapters translate a `ChatRequest` into one provider's wire format and the
provider's answer back into a `ChatResponse` (or a stream of `StreamDelta`).
Plain slotted dataclasses, not pydantic models, because they are built on every
request and validation has already happened at the edge.

Imports: the standard library only.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(slots=True)
class TextPart:
    text: str
    kind: Literal["text"] = "text"
    # A prompt-cache breakpoint after this part (Anthropic's and LiteLLM's
    # `{"type": "ephemeral", "ttl": "5m" | "1h"}`); adapters of providers that
    # cache without markers leave it out.
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ImagePart:
    """An image given as an http(s) URL or a `data:<media type>;base64,<data>` URL."""

    url: str
    detail: str | None = None
    kind: Literal["image"] = "image"
    cache_control: dict[str, Any] | None = None  # as TextPart's

    @property
    def is_data_url(self) -> bool:
        return self.url.startswith("data:")

    def data_url_parts(self) -> tuple[str, str]:
        """(media type, base64 data) of a data URL; ValueError if this is not one.
        The media type is lower-cased, and "image/jpg", common in data URLs
        (browsers and some SDKs write it) but not a registered type, is given as
        the "image/jpeg" that Anthropic and Gemini take."""
        if not self.is_data_url:
            raise ValueError("not a data URL")
        header, _, data = self.url.partition(",")
        media_type = header[len("data:") :].split(";", 1)[0].lower() or "application/octet-stream"
        if ";base64" not in header:
            raise ValueError("only base64 data URLs are supported for images")
        return ("image/jpeg" if media_type == "image/jpg" else media_type), data


Part = TextPart | ImagePart


@dataclass(slots=True)
class ToolCall:
    """One call the model asked for; `arguments` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str
    # Gemini's thoughtSignature for this call, to be sent back with it.
    thought_signature: str | None = None


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    # For role == "tool": which call this message answers.
    tool_call_id: str | None = None
    name: str | None = None
    # Anthropic's signed thinking blocks from an earlier answer, as LiteLLM's
    # `thinking_blocks`: sent back before that turn's tool calls, as it requires.
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text parts joined; images are left out."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def has_images(self) -> bool:
        return any(isinstance(p, ImagePart) for p in self.parts)


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None  # as TextPart's: cache the tools up to here


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


# The request fields a call's defaults may fill in (`ChatRequest.with_defaults`).
_DEFAULTABLE = ("temperature", "top_p", "max_tokens", "stop", "response_format", "user",
                "parallel_tool_calls")


@dataclass(slots=True)
class ChatRequest:
    """One chat request, as the caller asked for it.

    `model` is what the caller named: a model group, a routed group or a
    `router-<name>-<threshold>` alias. `extra` carries OpenAI parameters that
    have no neutral field (frequency_penalty, seed, logprobs, ...); adapters
    that cannot send one raise `UnsupportedParameter` unless `drop_params`.
    """

    model: str
    messages: list[Message]
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    tools: list[ToolSpec] | None = None
    # "auto" | "none" | "required" | {"name": "<function>"}
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    n: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Caller-supplied routing hints and tags (never sent upstream).
    metadata: dict[str, Any] = field(default_factory=dict)
    # Per-request fallbacks: fallback groups, or LiteLLM's {group: [groups]} (a
    # "*" key for any group). A gateway client's may only narrow the configured
    # chains; a library caller's apply as given (`fallbacks_as_given`).
    fallbacks: list[str] | dict[str, list[str]] | None = None
    fallbacks_as_given: bool = False
    # Its own chains for the special failures, in the same forms, by the name of
    # the setting they stand for ("context_window_fallbacks",
    # "content_policy_fallbacks"; LiteLLM takes both per call); the same rules.
    kind_fallbacks: dict[str, list[str] | dict[str, list[str]]] | None = None
    drop_params: bool | None = None
    # Answer with this text and call no provider (LiteLLM's `mock_response`; its
    # error sentinels, "litellm.RateLimitError" and the like, fail instead).
    mock_response: str | None = None
    # LiteLLM's testing switches. `mock_failures`: sentinels the next attempts fail
    # with, one each, before the request is answered for real (a list shared by
    # the request's copies, so an attempt uses its entry up for all of them);
    # `mock_timeout`: every attempt times out; `mock_group_failure`: the first
    # group fails at once, without a call, with the failure whose fallbacks
    # ("fallbacks", "context_window", "content_policy") are to be tested.
    mock_failures: list[str] | None = None
    mock_timeout: bool = False
    mock_group_failure: str | None = None
    # LiteLLM call arguments this request carried that do nothing here (they are
    # never sent upstream); the library warns about each once.
    ignored_params: tuple[str, ...] = ()
    # This request's own deadline (seconds) and retries, instead of the router's
    # (LiteLLM's per-call `timeout` and `num_retries`); never sent upstream.
    timeout: float | None = None
    num_retries: int | None = None
    # A gateway client's request: its num_retries may only lower the retries the
    # operator set for each group it reaches (a library caller may raise them).
    retries_bounded: bool = False
    # Asked with OpenAI's deprecated `functions` (no `tools`): answered in that
    # API's shape, `function_call` instead of `tool_calls`, as its callers read it.
    legacy_functions: bool = False
    # A library call's own HTTP headers for the provider (LiteLLM's per-call
    # `extra_headers`), over the deployment's; out of the repr, as they may hold
    # a secret of the caller's.
    extra_headers: dict[str, str] | None = field(default=None, repr=False)
    # The gateway caller's key id (a client key's name), set by the gateway for
    # the budgets that name one; never sent upstream.
    api_key_id: str | None = None
    # The one deployment (by name) this request may go to, with no other of its
    # group and no fallback: LiteLLM's `specific_deployment=True`, which only a
    # library call sets (`specific_deployment`); never sent upstream.
    deployment: str | None = None

    def with_defaults(self, defaults: ChatRequest) -> ChatRequest:
        """This request with what it leaves unset taken from `defaults` (call
        arguments set ahead of the call, as a deployment's litellm_params)."""
        changes: dict[str, Any] = {
            name: getattr(defaults, name) for name in _DEFAULTABLE
            if getattr(self, name) is None and getattr(defaults, name) is not None}
        extra = {k: v for k, v in defaults.extra.items() if k not in self.extra}
        if extra:
            changes["extra"] = {**extra, **self.extra}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def tags(self) -> frozenset[str]:
        """`tags` and `metadata.tags`, which parsing merges into a list of strings."""
        return frozenset(self.metadata.get("tags") or ())

    @property
    def system_text(self) -> str:
        return "\n\n".join(m.text for m in self.messages if m.role == "system")

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.text
        return ""

    @property
    def prompt_text(self) -> str:
        """All message text, for token estimates and routing features."""
        return "\n".join(m.text for m in self.messages)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # Input tokens served from the provider's prompt cache (a subset of input_tokens).
    cached_input_tokens: int = 0
    # Input tokens written to the provider's cache (Anthropic), a subset of input_tokens.
    cache_write_tokens: int = 0
    # Reasoning ("thinking") tokens, a subset of output_tokens.
    reasoning_tokens: int = 0
    # Web searches the provider billed for the call (Anthropic's web search tool;
    # Gemini's grounding queries, or the grounded prompt), on top of the tokens.
    web_searches: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        """Two calls' usage together (a stream continued on another deployment)."""
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.cached_input_tokens + other.cached_input_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     self.reasoning_tokens + other.reasoning_tokens,
                     self.web_searches + other.web_searches)


@dataclass(slots=True)
class ChatResponse:
    """The final answer of one upstream call, streamed or not (house rule 5)."""

    id: str
    model: str
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = "stop"
    usage: Usage | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    # Reasoning text where the provider returns it (Anthropic thinking, Gemini thoughts).
    reasoning: str | None = None
    # Anthropic's thinking blocks with their signatures, to be sent back (Message).
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)
    # OpenAI's `choices[0].logprobs` object ({"content": [...], "refusal": ...}) when
    # the request asked for logprobs: as an OpenAI-compatible deployment sent it, or
    # translated from Gemini's; Anthropic's adapter refuses `logprobs` (Unsupported-
    # Parameter) rather than drop it.
    logprobs: dict[str, Any] | None = None
    # The model's refusal (OpenAI's `message.refusal`), given instead of content.
    refusal: str | None = None
    # OpenAI's `message.annotations` (the URL citations of a web-search model), as
    # the OpenAI-compatible deployment sent them.
    annotations: list[dict[str, Any]] | None = None
    # What an OpenAI-compatible deployment said of the backend that answered
    # (`system_fingerprint`, for reproducibility with `seed`) and the tier it was
    # served at (`service_tier`); None from the other providers.
    system_fingerprint: str | None = None
    service_tier: str | None = None


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of one streamed tool call; `index` says which call it belongs to."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    thought_signature: str | None = None


@dataclass(slots=True)
class StreamDelta:
    """One streamed event. Adapters yield these; `StreamAccumulator` folds them."""

    text: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    # Set on the first delta when the provider names its response / model.
    id: str | None = None
    model: str | None = None
    reasoning: str | None = None
    # A finished thinking block with its signature (Anthropic); None, not an
    # empty list, so that the usual delta allocates nothing for it.
    thinking_blocks: list[dict[str, Any]] | None = None
    # This chunk's `choices[0].logprobs` object (OpenAI-compatible deployments).
    logprobs: dict[str, Any] | None = None
    # A piece of the model's refusal (OpenAI's `delta.refusal`).
    refusal: str | None = None
    # Annotations this chunk adds (OpenAI's `delta.annotations`; see ChatResponse).
    annotations: list[dict[str, Any]] | None = None
    # Set on the first delta, as id and model are (see ChatResponse).
    system_fingerprint: str | None = None
    service_tier: str | None = None


@dataclass(slots=True)
class EmbeddingRequest:
    """One embeddings request: the texts, and what the provider is asked for.

    `routing` is the request as the dispatcher and the ledger see it: the model
    name, the caller's timeout, retries, fallbacks and tags, and the texts as
    one user message each (for the spend log and the token estimate)."""

    routing: ChatRequest
    inputs: list[str]
    dimensions: int | None = None
    # OpenAI parameters with no neutral field, sent to OpenAI-compatible upstreams.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.routing.model


@dataclass(slots=True)
class EmbeddingResult:
    """One vector per input, in input order, and the tokens billed."""

    vectors: list[list[float]]
    usage: Usage
    # The provider sent no token count and `usage` is Interlock's estimate (Gemini
    # never sends one), so the ledger row says so, as for a stream cut short.
    usage_estimated: bool = False
