"""The context window genai-prices' bundled data gives a deployment's model.

A LiteLLM config ported unchanged names no `max_input_tokens`: LiteLLM takes
the limit from its own model table. `listed_context_window` is Interlock's
equivalent; the gateway hands it to `config.build_catalog`, which uses it for a
deployment whose config gives no limit of its own, so the pre-call checks and
`get_model_group_info` read it from the deployment like a configured one.

Only OpenAI's, Anthropic's and Gemini's own models take one (`_TAKEN_FROM`
says why). The figure is genai-prices' `context_window`: the model's whole window as its
data gives it (input and output together, which for most models is also the
most input they take). It has no output limits, so none are taken from it.

Imports: `catalog`, `costs.prices` (which loads genai-prices' data lazily: it
takes ~0.2 s, and the price book loads it at start-up anyway).
"""

from __future__ import annotations

from collections.abc import Callable

from interlock.catalog import Deployment
from interlock.costs.prices import base_model, genai_models, genai_provider

# (tokens, where they came from: "genai-prices openai/gpt-4o")
KnownWindow = tuple[int, str]

# The providers whose windows are taken, and only for a model found under that
# provider (genai-prices' id for it, `genai_provider`). A window too small refuses prompts the
# model takes, which is worse than the one failed call it saves: the data's
# figures for OpenAI-compatible hosts were seen stale (DeepSeek's 64,000 where
# its API takes 131,072), and a name looked up alone can find another host's
# model (a Together "DeepSeek-R1-Distill-Llama-70B" found DeepSeek's reasoner).
_TAKEN_FROM = frozenset({"openai", "anthropic", "gemini"})


def known_context_window(model: str, provider: str | None = None) -> KnownWindow | None:
    """The context window of `model` in genai-prices' data, found as its price
    is (`genai_models`), for OpenAI's, Anthropic's and Gemini's own models
    (`_TAKEN_FROM`); None when the data has no such model of that provider, or
    gives the model it finds first no window."""
    if provider is None:  # a name given with its prefix: "openai/gpt-4o"
        prefix, slash, _ = model.partition("/")
        provider = prefix if slash else None
    if provider not in _TAKEN_FROM:
        return None
    expected = genai_provider(provider)
    for found_provider, info in genai_models(model, provider):
        # The first model found decides: a less specific lookup further down
        # may find another provider's model of the same name.
        if found_provider.id != expected:
            return None
        window = info.context_window
        if isinstance(window, int) and window > 0:
            return window, f"genai-prices {found_provider.id}/{info.id}"
        return None
    return None


def listed_context_window(
        deployment: Deployment,
        find: Callable[[str, str | None], KnownWindow | None] = known_context_window,
) -> KnownWindow | None:
    """The known window of the deployment's model, else of its `base_model`
    (a fine-tune or a renamed deployment says what it runs that way, as for its
    price); None when neither is known."""
    found = find(deployment.model, deployment.provider)
    base = base_model(deployment)
    if found is None and base is not None:
        found = find(base, deployment.provider)
    return found
