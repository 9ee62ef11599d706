"""Which body fields each server behind the OpenAI adapter takes, and what becomes
of the others, with and without `drop_params`.

One adapter serves every prefix of `registry.OPENAI_COMPATIBLE_BASES`, and those
servers do not take the same fields: vLLM's `top_k`, `min_p` and
`repetition_penalty`, or OpenRouter's `provider` and `transforms`, are right for
them and a 400 at OpenAI ("Unrecognized request argument supplied: top_k"). So
each server has its rules (`ServerParams`), and a field a request carries beyond
the neutral ones (`ChatRequest.extra`) is, for that server:

- accepted: sent as given;
- refused, known not to be taken there: without drop_params, an
  `UnsupportedParameter` (a 400 naming the parameter and the provider, before
  any call; the dispatcher passes the deployment over for its group's others and
  the fallback groups, as it does for Claude or Gemini); with drop_params, left
  out. A value that asks for nothing (null; false, 0 or {} where the rules say
  so) is left out either way, so a client that sends every default is not refused;
- unknown: sent as given, the server's own answer to take or refuse it.

The rules of each server:

- OpenAI's own API (`openai/` at api.openai.com): the fields of its
  chat-completions reference, and no other. OpenAI refuses every other, so here
  none is unknown: Anthropic's `thinking`, `top_k`, a per-call `organization`
  (a header, set on the deployment) or a typo are all refused. Its embeddings
  take `input_type` and the like no more.
- Groq (`groq/`): what its compatibility page says it answers 400 to
  (`logprobs`, `top_logprobs`, `logit_bias`); everything else unknown.
- OpenRouter, Together, DeepSeek, vLLM (`hosted_vllm/`), Ollama and llama.cpp:
  everything unknown. Their own parameters are theirs to take, and the local
  servers ignore what they do not know.
- `openai/` at any other base URL: a server that cannot be named from here (a
  vLLM, a proxy, another gateway that takes Anthropic's `thinking` for its
  Claude deployments), so everything is unknown and sent on: what those
  servers' users want. OpenAI itself behind a proxy (Helicone, Cloudflare's AI
  Gateway, a company's egress) gets OpenAI's rules with `params_like: openai` in
  the deployment's litellm_params; any prefix of the list above may be named
  there, to give a base URL that server's rules.

A deployment's `allowed_openai_params` (LiteLLM's name) lists fields to send
whatever the rules say: a parameter OpenAI added after this list was written
need not wait for a release.

Decided per call from the deployment only when the request has extra fields,
which most have not.

Imports: the standard library, `types`, `errors`, `catalog`, `adapters.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from interlock.adapters.registry import OPENAI_COMPATIBLE_BASES
from interlock.catalog import Deployment
from interlock.errors import ConfigError, UnsupportedParameter

# What a body field of OpenAI's chat completions may be named, as its API
# reference lists them. `model`, `messages`, `stream` and `stream_options` are
# the adapter's own (`request._RESERVED`), but listed: the list is OpenAI's.
OPENAI_CHAT_FIELDS = frozenset({
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
    "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
    "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p",
    "user", "verbosity", "web_search_options",
})
OPENAI_EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions",
                                     "user"})
# The host of OpenAI's own API: a deployment there gets OpenAI's rules.
OPENAI_HOST = urlsplit(OPENAI_COMPATIBLE_BASES["openai"]).hostname
# Why OpenAI's API refuses some fields a client of another provider may send,
# and what to do instead: the 400's own words.
_OPENAI_HINTS = {
    "thinking": "OpenAI has no such field (Anthropic and DeepSeek do); reasoning_effort "
                "asks every provider for reasoning (OpenAI's reasoning models take it as "
                "sent).",
    "top_k": "OpenAI samples with temperature and top_p only.",
    "organization": "It is sent as the OpenAI-Organization header: set organization in "
                    "the deployment's litellm_params.",
    "thinking_config": "It is Gemini's; reasoning_effort asks every provider for "
                       "reasoning.",
    "safety_settings": "It is Gemini's.",
}


@dataclass(frozen=True, slots=True)
class ServerParams:
    """One server's rules. `accepted`: every field it takes, when that is known
    (None: any field not refused is sent). `refused`: fields known not to be
    taken, each with the values that ask for nothing."""

    accepted: frozenset[str] | None = None
    refused: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)

    def refuses(self, name: str) -> bool:
        if self.accepted is not None:
            return name not in self.accepted
        return name in self.refused


OPENAI_CHAT = ServerParams(accepted=OPENAI_CHAT_FIELDS, hints=_OPENAI_HINTS)
OPENAI_EMBEDDINGS = ServerParams(accepted=OPENAI_EMBEDDING_FIELDS, hints=_OPENAI_HINTS)
ANY_FIELD = ServerParams()
# Groq's OpenAI-compatibility page: "will result in a 400 error if they are supplied".
GROQ = ServerParams(refused={"logprobs": (False,), "top_logprobs": (0,), "logit_bias": ({},)},
                    hints={name: "Groq answers 400 to it." for name in
                           ("logprobs", "top_logprobs", "logit_bias")})
# By prefix, for chat and embeddings; a prefix not here takes any field.
_CHAT_RULES = {"openai": OPENAI_CHAT, "groq": GROQ}
_EMBEDDING_RULES = {"openai": OPENAI_EMBEDDINGS}


def server_params(deployment: Deployment, *, embeddings: bool = False) -> ServerParams:
    """The rules of the server behind this deployment (see the module docstring)."""
    rules = _EMBEDDING_RULES if embeddings else _CHAT_RULES
    named = deployment.extra.get("params_like")
    if named is not None:
        if not isinstance(named, str) or named not in OPENAI_COMPATIBLE_BASES:
            raise ConfigError(
                f"Deployment {deployment.name!r}: params_like {named!r} names no "
                "OpenAI-compatible server; use one of "
                f"{', '.join(sorted(OPENAI_COMPATIBLE_BASES))}, or leave it out.")
        return rules.get(named, ANY_FIELD)
    if deployment.provider == "openai" and not _at_openai(deployment.api_base):
        return ANY_FIELD  # a custom base URL: a server that cannot be named
    return rules.get(deployment.provider, ANY_FIELD)


def check_settings(deployment: Deployment) -> None:
    """Raise ConfigError for a `params_like` or `allowed_openai_params` that
    cannot be read: on a deployment's first call, whatever that call carries,
    rather than on the first that happens to carry an extra field."""
    server_params(deployment)
    _allowed(deployment)


def _allowed(deployment: Deployment) -> frozenset[str]:
    """The deployment's `allowed_openai_params`: a list of names, or nothing."""
    given = deployment.extra.get("allowed_openai_params")
    if given is None:
        return frozenset()
    if not (isinstance(given, list) and all(isinstance(name, str) for name in given)):
        raise ConfigError(
            f"Deployment {deployment.name!r}: allowed_openai_params must be a list of "
            f"parameter names (e.g. [\"verbosity\"]), got {type(given).__name__}.")
    return frozenset(given)


def _at_openai(api_base: str | None) -> bool:
    return api_base is None or urlsplit(api_base).hostname == OPENAI_HOST


def sendable_extra(extra: Mapping[str, Any], deployment: Deployment, drop: bool,
                   reserved: frozenset[str] = frozenset(), *,
                   embeddings: bool = False) -> dict[str, Any]:
    """The fields of `extra` (but the `reserved` ones) to send to this deployment;
    raises UnsupportedParameter for one it refuses, unless `drop`."""
    rules = server_params(deployment, embeddings=embeddings)
    allowed = _allowed(deployment)
    out: dict[str, Any] = {}
    for name, value in extra.items():
        if name in reserved:
            continue
        if name in allowed or not rules.refuses(name):
            out[name] = value
        elif not (drop or value is None or value in rules.refused.get(name, ())):
            raise UnsupportedParameter(name, deployment.provider, rules.hints.get(name, ""))
    return out
