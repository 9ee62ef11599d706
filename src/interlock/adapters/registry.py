"""Which adapter serves which provider name.

The only place that maps the `<provider>/` prefix of a model string to an
adapter class; nothing else in Interlock branches on provider names but the
OpenAI adapter's rules for which fields each of its servers takes
(`adapters.openai.server_params`, keyed by the prefixes below).

Imports: `adapters.*`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from interlock.errors import ConfigError

if TYPE_CHECKING:  # config imports this module; keep aiohttp out of that path
    from interlock.adapters.base import Adapter
    from interlock.adapters.http import HttpClient


def _adapter_classes() -> dict[str, type[Adapter]]:
    from interlock.adapters.anthropic import AnthropicAdapter
    from interlock.adapters.gemini import GeminiAdapter
    from interlock.adapters.openai import OpenAIAdapter

    return {
        "openai": OpenAIAdapter,
        "anthropic": AnthropicAdapter,
        "gemini": GeminiAdapter,
    }


# Prefixes that are OpenAI-compatible services: the openai adapter serves them,
# each with its usual base URL when api_base is not set. They take different
# body fields (vLLM's top_k is a 400 at OpenAI): `adapters.openai.server_params`.
OPENAI_COMPATIBLE_BASES: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "groq": "https://api.groq.com/openai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "hosted_vllm": "http://localhost:8000/v1",
    "ollama": "http://localhost:11434/v1",
    "llamacpp": "http://localhost:8080/v1",
}

PROVIDER_ALIASES: dict[str, str] = {name: "openai" for name in OPENAI_COMPATIBLE_BASES} | {
    "anthropic": "anthropic",
    "gemini": "gemini",
}


# Where each adapter family looks for a base URL and a key when the config
# gives none. GEMINI_BASE_URL is Interlock's own name (Google's SDKs have none).
BASE_URL_ENV: dict[str, str] = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GEMINI_BASE_URL",
}
DEFAULT_BASE_URL: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
API_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "together_ai": ("TOGETHER_API_KEY", "TOGETHERAI_API_KEY"),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}
# Local servers usually need no key.
KEYLESS_PROVIDERS = frozenset({"hosted_vllm", "ollama", "llamacpp"})


def resolve_base_url(provider: str, api_base: str | None, environ: Mapping[str, str]) -> str:
    """api_base if given, else the family's environment variable (for the bare
    provider name only), else the provider's public endpoint."""
    if api_base:
        return api_base.rstrip("/")
    family = PROVIDER_ALIASES.get(provider, provider)
    env_name = BASE_URL_ENV.get(family)
    if env_name and provider == family and environ.get(env_name):
        return environ[env_name].rstrip("/")
    if provider in OPENAI_COMPATIBLE_BASES:
        return OPENAI_COMPATIBLE_BASES[provider]
    return DEFAULT_BASE_URL[family]


def at_default_host(provider: str, api_base: str) -> bool:
    """Whether `api_base` is on the host of the provider's usual endpoint (the
    one a `provider/` deployment calls when neither the config nor the
    environment names a base URL), or a host under it: for `openai/`,
    `anthropic/` and `gemini/`, the provider's own API (api.openai.com and its
    data-residency hosts such as eu.api.openai.com, api.anthropic.com,
    generativelanguage.googleapis.com). The OpenAI adapter's field rules and
    the known context windows both read "the provider's own API" this way.
    For a local server's provider (`hosted_vllm/`, `ollama/`) the usual endpoint
    is localhost, so any localhost base URL counts: no reader asks about those.
    A base URL that does not parse is on no provider's host (and its error,
    which may quote the URL's password, is not raised)."""
    own = _default_host(provider)
    try:
        # urlsplit lowers the hostname, so any case matches.
        host = urlsplit(api_base).hostname
    except ValueError:  # "http://[::1", a netloc NFKC normalisation changes
        return False
    return own is not None and host is not None and (
        host == own or host.endswith(f".{own}"))


@functools.cache
def _default_host(provider: str) -> str | None:
    """The host of the provider's usual endpoint; parsed once per provider, as
    the field rules ask for each request with fields beyond the usual."""
    family = PROVIDER_ALIASES.get(provider, provider)
    default = OPENAI_COMPATIBLE_BASES.get(provider) or DEFAULT_BASE_URL.get(family)
    return urlsplit(default).hostname if default is not None else None


def known_providers() -> list[str]:
    return sorted(PROVIDER_ALIASES)


class AdapterRegistry:
    """Adapter instances for one gateway, all sharing its HttpClient."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http
        self._classes = _adapter_classes()
        self._instances: dict[str, Adapter] = {}

    def for_provider(self, provider: str) -> Adapter:
        adapter = self._instances.get(provider)
        if adapter is None:
            family = PROVIDER_ALIASES.get(provider)
            if family is None:
                raise ConfigError(
                    f"Unknown provider {provider!r}. "
                    f"Known providers: {', '.join(known_providers())}."
                )
            adapter = self._classes[family](self._http)
            self._instances[provider] = adapter
        return adapter
