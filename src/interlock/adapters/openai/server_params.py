"""Which body fields each server behind the OpenAI adapter takes, and what becomes
of the others, with and without `drop_params`.

One adapter serves every prefix of `registry.OPENAI_COMPATIBLE_BASES`, and those
servers do not take the same fields: vLLM's `top_k`, `min_p` and
`repetition_penalty`, or OpenRouter's `provider` and `transforms`, are right for
them and a 400 at OpenAI ("Unrecognized request argument supplied: top_k"). So
each server has its rules (`ServerParams`), and a field a request carries beyond
the neutral ones (`ChatRequest.extra`) is, for that server:

- taken (on the server's list, when it has one): sent as given;
- refused, known not to be taken there (another provider's field, or one the
  server's documentation says it answers 400 to): without drop_params, an
  `UnsupportedParameter` (a 400 naming the parameter and the provider, before
  any call; the dispatcher passes the deployment over for its group's others and
  the fallback groups, as it does for Claude or Gemini); with drop_params, left
  out;
- unknown: without drop_params, sent as given, the server's own answer to take
  or refuse it (a typo, or a field the server added after its list here was
  written: refusing those ourselves would block what the server takes until an
  Interlock release). With drop_params, left out where the server has a list
  (the user asked that what the provider may not take be dropped), sent where it
  has none.

A value that asks for nothing (null; false, 0, {} or Anthropic's
`{"type": "disabled"}` thinking where the rules say so) of
a refused field, or a null of an unknown one where the server has a list, is
left out either way, so a client that sends every default is not refused.

The rules of each server:

- OpenAI's own API (`openai/` with no api_base, wherever OPENAI_BASE_URL sends
  it: a proxy, an egress gateway, a test double; or at api.openai.com or one of
  its regional hosts, eu.api.openai.com): the fields of its
  chat-completions reference are taken; the fields a client of Anthropic or
  Gemini sends (`thinking`, `top_k`, `stop_sequences`, `system`,
  `generation_config`, ...) and a per-call `organization` (a header, set on the
  deployment) are refused, each with what to send instead; any other is
  unknown. Its embeddings likewise, with Cohere's, Voyage's and Gemini's fields
  (`input_type`, `task_type`, ...) refused.
- Groq (`groq/`): what its compatibility page says it answers 400 to
  (`logprobs`, `top_logprobs`, `logit_bias`) is refused; everything else is
  unknown, and sent under drop_params too (there is no list of what it takes).
- OpenRouter, Together, DeepSeek, vLLM (`hosted_vllm/`), Ollama and llama.cpp:
  everything unknown and sent. Their own parameters are theirs to take, and the
  local servers ignore what they do not know.
- `openai/` at any other api_base: a server that cannot be named from here (a
  vLLM, a proxy, another gateway that takes Anthropic's `thinking` for its
  Claude deployments), so everything is unknown and sent on: what those
  servers' users want. OpenAI itself behind a proxy (Helicone, Cloudflare's AI
  Gateway, a company's egress) gets OpenAI's rules with `params_like: openai` in
  the deployment's litellm_params; any prefix of the list above may be named
  there, to give a base URL that server's rules.

A deployment's `allowed_openai_params` (LiteLLM's name) lists fields to send
whatever the rules say, drop_params or not: how a field OpenAI added after this
list was written reaches it from a gateway that drops what it does not know.

A deployment's api_base is resolved when the config loads, OPENAI_BASE_URL
included, so "no api_base" is recorded then as `params_like: openai`
(`config.schema.DeploymentParams.adapter_settings`). Config load checks
`params_like` and `allowed_openai_params` (`config.schema`); the adapter reads
them once per deployment (`deployment_rules`, kept with its URL and headers) on
its first call, which checks them again for a `Deployment` built by hand.

Imports: the standard library, `types`, `errors`, `catalog`, `adapters.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.adapters.registry import OPENAI_COMPATIBLE_BASES, at_default_host
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
_GEMINI_REASONING = "It is Gemini's; reasoning_effort asks every provider for reasoning."
# Fields a client of another provider sends (Anthropic's Messages API, Gemini's
# generateContent as its SDK and LiteLLM name them) that OpenAI's API refuses,
# each with what to send instead: the 400's own words. Sent to OpenAI they are a
# mistake, not a field OpenAI may have added, so they are refused before the call.
_OPENAI_CHAT_FOREIGN = {
    "thinking": "OpenAI has no such field (Anthropic and DeepSeek do); reasoning_effort "
                "asks every provider for reasoning (OpenAI's reasoning models take it as "
                "sent).",
    "top_k": "OpenAI samples with temperature and top_p only.",
    "organization": "It is sent as the OpenAI-Organization header: set organization in "
                    "the deployment's litellm_params.",
    "stop_sequences": "It is Anthropic's; send stop, which every provider takes.",
    "system": "It is Anthropic's; send the system prompt as a message with role "
              "'system'.",
    "thinking_config": _GEMINI_REASONING,
    "safety_settings": "It is Gemini's.",
    "generation_config": "It is Gemini's; send its fields as OpenAI names them "
                         "(temperature, top_p, max_tokens, stop, response_format).",
    "system_instruction": "It is Gemini's; send the system prompt as a message with "
                          "role 'system'.",
    "tool_config": "It is Gemini's; send tool_choice.",
    "cached_content": "It is Gemini's; OpenAI caches long prompts by itself "
                      "(prompt_cache_key steers it).",
}
# The same for embeddings: Cohere's and Voyage's `input_type`, Gemini's task.
_OPENAI_EMBEDDING_FOREIGN = {
    "input_type": "It is Cohere's and Voyage's; OpenAI embeds queries and documents "
                  "alike.",
    "task_type": "It is Gemini's; OpenAI embeds every task alike.",
    "output_dimensionality": "It is Gemini's; send dimensions.",
    "truncate": "It is Cohere's; OpenAI refuses input longer than the model takes.",
}


@dataclass(frozen=True, slots=True)
class ServerParams:
    """One server's rules. `accepted`: every field it is known to take (None: no
    list, every field not refused is sent, drop_params or not). `refused`:
    fields known not to be taken, each with the values that ask for nothing;
    `hints`: what to send instead of a refused one."""

    accepted: frozenset[str] | None = None
    refused: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)


# Values of another provider's fields that ask for nothing beyond the null any
# field may be: Anthropic's way to say "no reasoning", which its adapter reads as
# off, and which a client sending every setting of a Claude call sends to all.
_OPENAI_CHAT_NOTHING: Mapping[str, tuple[Any, ...]] = {"thinking": ({"type": "disabled"},)}


def _openai(accepted: frozenset[str], foreign: Mapping[str, str],
            nothing: Mapping[str, tuple[Any, ...]]) -> ServerParams:
    return ServerParams(accepted=accepted,
                        refused={name: nothing.get(name, ()) for name in foreign},
                        hints=foreign)


OPENAI_CHAT = _openai(OPENAI_CHAT_FIELDS, _OPENAI_CHAT_FOREIGN, _OPENAI_CHAT_NOTHING)
OPENAI_EMBEDDINGS = _openai(OPENAI_EMBEDDING_FIELDS, _OPENAI_EMBEDDING_FOREIGN, {})
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


@dataclass(frozen=True, slots=True)
class DeploymentRules:
    """What one deployment's extra fields go by, read once from its settings:
    its server's rules for chat and for embeddings, and its
    `allowed_openai_params`."""

    chat: ServerParams
    embeddings: ServerParams
    allowed: frozenset[str]


def deployment_rules(deployment: Deployment) -> DeploymentRules:
    """The deployment's rules; raises ConfigError for a `params_like` or
    `allowed_openai_params` that cannot be read. The adapter reads them on a
    deployment's first call, whatever that call carries, rather than on the
    first that happens to carry an extra field."""
    return DeploymentRules(chat=server_params(deployment),
                           embeddings=server_params(deployment, embeddings=True),
                           allowed=_allowed(deployment))


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


def _hint(rules: ServerParams, name: str, deployment: Deployment) -> str:
    """The refusal's hint; where OpenAI's rules hold for a host that is not
    OpenAI's (no api_base, and OPENAI_BASE_URL elsewhere), also why and the way out:
    configs that sent a vLLM or a proxy everything before are refused here now."""
    hint = rules.hints.get(name, "")
    if rules.accepted is not None and not _at_openai(deployment.api_base):
        hint += (f" OpenAI's rules hold for deployment {deployment.name!r}, as it names no "
                 "api_base (or says params_like: openai); if the server at its base URL "
                 "is not OpenAI, give it an api_base, or its server's prefix "
                 "(hosted_vllm/, openrouter/, ...) or params_like.")
    return hint.strip()


def _at_openai(api_base: str | None) -> bool:
    # OpenAI's data-residency hosts (eu.api.openai.com, us.api.openai.com) are
    # its own API too; the registry's reading, which the known windows share.
    return api_base is None or at_default_host("openai", api_base)


def sendable_extra(extra: Mapping[str, Any], deployment: Deployment, drop: bool,
                   reserved: frozenset[str] = frozenset(), *, embeddings: bool = False,
                   known: DeploymentRules | None = None) -> dict[str, Any]:
    """The fields of `extra` (but the `reserved` ones) to send to this deployment;
    raises UnsupportedParameter for one it refuses, unless `drop`. `known`: the
    deployment's rules as the adapter keeps them, else read from it now."""
    if known is None:
        known = deployment_rules(deployment)
    rules = known.embeddings if embeddings else known.chat
    allowed = known.allowed
    listed = rules.accepted
    out: dict[str, Any] = {}
    for name, value in extra.items():
        if name in reserved:
            continue
        if name in allowed or (listed is not None and name in listed):
            out[name] = value
        elif name in rules.refused:
            if not (drop or value is None or value in rules.refused[name]):
                raise UnsupportedParameter(name, deployment.provider,
                                           _hint(rules, name, deployment))
        elif listed is None or not (drop or value is None):
            out[name] = value  # unknown: the server's to take or refuse
    return out
