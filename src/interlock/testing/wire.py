"""The interface each provider's fake wire format implements, and shared bits.

A `WireFormat` knows one provider's paths, request fields, reply and stream
shapes and error bodies. The server in `fake_upstream` does everything else
(faults, latency, recording) the same way for all of them.

Imports: the standard library, `testing.script`, `testing.schema_instance`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from interlock.testing.schema_instance import schema_instance
from interlock.testing.script import Fault, Reply, ScriptedToolCall


@dataclass(slots=True)
class Route:
    """A request the wire format recognised."""

    endpoint: str  # "chat", "embeddings", "models", ...
    model: str
    stream: bool


@dataclass(slots=True)
class ErrorAnswer:
    status: int
    headers: dict[str, str]
    body: Any


class WireFormat(Protocol):
    provider: str
    # The path prefix this wire format serves under on the fake, e.g. "/anthropic".
    prefix: str

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Route | None:
        """Recognise a request (path already stripped of `prefix`); None: 404."""
        ...

    def reply(self, route: Route, body: Any, reply: Reply) -> Any:
        """The JSON body of a successful non-streamed answer."""
        ...

    def stream(self, route: Route, body: Any, reply: Reply) -> list[bytes]:
        """The frames of a successful streamed answer, each sent as one write."""
        ...

    def error(self, status: int, fault: Fault, route: Route | None) -> ErrorAnswer:
        """The provider's real error answer for this status and fault kind."""
        ...

    def stream_content_type(self, route: Route) -> str: ...

    # Optional (looked up with getattr, so not part of the protocol):
    # `check_request(route, headers, body) -> ErrorAnswer | None`, the refusals
    # the real API gives before any scripted fault (missing key header, ...);
    # `fault_reply(fault) -> Reply | None`, a fault the provider answers as a
    # reply (streamed when the request streams) rather than an error body;
    # `fault_stream(fault, route) -> list[bytes] | None`, the frames of a fault
    # answered with a 200 that is no Reply (Gemini's blocked prompt), for a
    # streamed request; `retry_after_header = False`, a provider whose errors
    # carry no Retry-After header (Gemini says when to retry in the body);
    # `shaped_reply(route, body) -> Reply | None`, the JSON answer (as text, or
    # as a call to a tool the request forces) that a request for structured
    # output gets where a real model would give one, in place of the default text.


def estimate_tokens(text: str) -> int:
    """A stable, cheap token estimate: about four characters a token."""
    return max(1, (len(text) + 3) // 4)


def request_text(body: Any) -> str:
    """All string values in a request body, for token estimates and echo replies."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if not value.startswith("data:"):
                out.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                if k not in ("model", "role", "type"):
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(body)
    return " ".join(out)


def default_reply_text(model: str, body: Any) -> str:
    """A deterministic answer that shows which model was asked."""
    return f"[simulated {model}] Hello! This is a simulated answer from the fake upstream."


def json_reply(schema: Any, model: str, body: Any) -> Reply:
    """The answer to a request for JSON: text holding a value `schema` (None:
    any JSON object) accepts, its open strings the default text."""
    value = schema_instance(schema if schema is not None else {"type": "object"},
                            default_reply_text(model, body))
    return Reply(text=json.dumps(value, separators=(",", ":")))


@dataclass(frozen=True, slots=True)
class Forced:
    """A request's demand that the model call a tool: `names`, the tools it may
    call (a request that allows none of those it offers gets no call), or None
    for any tool it offers. Two meanings an empty list would blur."""

    names: tuple[str, ...] | None = None


def forced_call(offered: Iterable[tuple[str, Any]], forced: Forced, model: str,
                body: Any) -> Reply | None:
    """The answer to a request that forces a tool call: one call, as a real
    model gives, to the first of the forced names a tool offered has (any tool:
    the first offered). `offered`: (name, parameter schema) pairs in the
    request's order. None when no offered tool may be called (a real API
    refuses that request; the fake answers it as if nothing were forced)."""
    schemas: dict[str, Any] = {}
    for name, schema in offered:
        schemas.setdefault(name, schema)
    pick = (next(iter(schemas), None) if forced.names is None
            else next((n for n in forced.names if n in schemas), None))
    if pick is None:
        return None
    arguments = tool_arguments(schemas[pick], default_reply_text(model, body))
    return Reply(tool_calls=[ScriptedToolCall(pick, arguments)])


def tool_arguments(schema: Any, free_text: str) -> dict[str, Any]:
    """A call's arguments: a value of the tool's parameter schema, which every
    provider requires to be an object (`{"text": free_text}` for one that is
    not, or that leaves the object open); none for a tool without one."""
    if schema is None:
        return {}
    value = schema_instance(schema if isinstance(schema, dict) else {"type": "object"},
                            free_text)
    return value if isinstance(value, dict) else {"text": free_text}


def resolved(reply: Reply, model: str, body: Any, shaped: Reply | None = None) -> Reply:
    """Fill in a reply's defaults (text, finish, token counts) for this request.
    `shaped`: the answer the request asks for by its form (JSON, a forced tool
    call), which stands in for the default text; a scripted text, call or
    refusal wins over it."""
    text, calls = reply.text, reply.tool_calls
    if text is None and not calls and reply.refusal is None:
        if shaped is not None:
            text, calls = shaped.text, shaped.tool_calls
        else:
            text = default_reply_text(model, body)
    finish = reply.finish or ("tool_calls" if calls else "stop")
    out_text = (text or reply.refusal or "") + "".join(
        tc.name + json.dumps(tc.arguments) for tc in calls
    )
    # replace(), not a new Reply: a field added to Reply is kept without a word here.
    return dataclasses.replace(
        reply,
        text=text,
        tool_calls=calls,
        finish=finish,
        input_tokens=reply.input_tokens if reply.input_tokens is not None
        else estimate_tokens(request_text(body)),
        output_tokens=reply.output_tokens if reply.output_tokens is not None
        else estimate_tokens(out_text) + reply.reasoning_tokens,
    )


def logprobs_asked(asked: Any, top: Any) -> int | None:
    """How many alternatives a token gets when a request asked for logprobs
    (`asked` is true, `top` the count it gave, 0 when it gave none), else None.
    Each wire reads the two from its provider's fields."""
    if asked is not True:
        return None
    return top if isinstance(top, int) and not isinstance(top, bool) else 0


def token_alternatives(token: str, position: int, top: int) -> list[tuple[str, float]]:
    """The fake's logprobs for one token (its tokens are its chunks): made-up but
    fixed numbers, the token itself first and likeliest, then `top` - 1 more.
    Each wire writes them in its provider's shape."""
    logprob = -0.01 * (position + 1)
    return [(token, logprob)] + [(f"{token}~{k}", logprob - k) for k in range(1, max(top, 1))]


def chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event frame."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
