"""LiteLLM's `specific_deployment=True`: a library call that names one
deployment, not a model group, and goes to that deployment alone.

LiteLLM's Router takes the call's `model` then as a deployment's
`model_info.id` or its `litellm_params.model` string. Here the id is the
deployment's name (`Router.get_model_list` shows it as `model_info.id`), and a
`litellm_params.model` is taken as written in the model list or as
provider/model. A name that fits no deployment, or a litellm model several
deployments share, is an `InvalidRequest` that says how to name one.

The request keeps its own group's decision (no router picks for it), and the
dispatcher calls no other deployment of the group (`ChatRequest.deployment`)
and falls back to no other group: its chains are emptied here, so that the
dispatcher has nothing to check for them. The retries, cooldowns, limits and
budgets of that deployment apply as to any call: its failures count toward its
cooldown and its successes are recorded (the dispatcher's one path does both),
so routed traffic avoids it while it cools. A cooling deployment is not called
when pinned either (the call waits for it within max_cooldown_wait, else fails
with NoDeploymentAvailable and its Retry-After). LiteLLM skips the cooldown for
a lookup by id but not by litellm model; one rule for both here, and the one
that keeps callers off a provider that asked for a pause.

Only the library takes it: a gateway client may not step around the operator's
routing (it names groups, routers and aliases, never deployments), so the
gateway drops the field as it drops LiteLLM's other call arguments.

Imports: the standard library, `types`, `errors`, `catalog`, `config.schema`.
"""

from __future__ import annotations

import dataclasses

from interlock.catalog import Catalog, Deployment
from interlock.config.schema import InterlockConfig
from interlock.errors import InvalidRequest
from interlock.types import ChatRequest

# The call's own chains that would send it elsewhere, refused beside it.
_FALLBACK_ARGS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def wanted(value: object) -> bool:
    """Whether a call's `specific_deployment` asks for it (None and False do not)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise InvalidRequest(f"'specific_deployment' must be true or false, got "
                         f"{type(value).__name__}.", param="specific_deployment",
                         code="invalid_value")


def find_deployment(config: InterlockConfig, catalog: Catalog, name: str) -> Deployment:
    """The deployment a `specific_deployment` call's `model` names: its id
    (deployment name), else its litellm_params.model."""
    ids = config.deployment_names()
    if name in ids:
        return catalog.deployment(name)
    matches = [d for d, entry in zip(ids, config.model_list, strict=True)
               if name in (entry.litellm_params.model, catalog.deployment(d).qualified_model)]
    if len(matches) == 1:
        return catalog.deployment(matches[0])
    if matches:
        raise InvalidRequest(
            f"specific_deployment=True: {name!r} is the litellm_params.model of "
            f"{len(matches)} deployments ({', '.join(matches)}); name one of them by its "
            "model_info.id instead.", param="model", code="ambiguous_deployment")
    models = dict.fromkeys(entry.litellm_params.model for entry in config.model_list)
    raise InvalidRequest(
        f"specific_deployment=True: {name!r} names no deployment. Name one by its "
        f"model_info.id ({', '.join(ids)}) or its litellm_params.model "
        f"({', '.join(models)}); Router.get_model_list() shows both. Without "
        "specific_deployment, model names a model group.",
        param="model", code="model_not_found")


def pinned(request: ChatRequest, deployment: Deployment) -> ChatRequest:
    """`request` sent to `deployment` alone: its group's, with no fallbacks. A
    call that gives fallbacks of its own too is refused, not quietly cut."""
    if request.fallbacks is not None or request.kind_fallbacks is not None:
        raise InvalidRequest(
            "specific_deployment=True sends the call to that one deployment and falls "
            f"back to no other; drop {' / '.join(_FALLBACK_ARGS)}, or name the model "
            f"group ({deployment.group!r}) without specific_deployment to use them.",
            param="specific_deployment", code="invalid_value")
    return dataclasses.replace(request, model=deployment.group, deployment=deployment.name,
                               fallbacks=[], fallbacks_as_given=True,
                               # Every chain a plan reads, empty (made per call:
                               # nothing shared between requests), so that a
                               # failure falls back to no group.
                               kind_fallbacks={"context_window_fallbacks": [],
                                               "content_policy_fallbacks": []})
