"""Interlock: route each LLM request to the model that does the job for the
least money, fail over when a provider breaks, and record what it cost.

Public API: `Router` (LiteLLM-shaped), `Controller` (RouteLLM-shaped),
`load_config`, the error tree, and LiteLLM's names for its errors
(`interlock.exceptions`: `from litellm import RateLimitError` ports by changing
the import). Names are imported on first use so that
`import interlock` stays fast and touches nothing outside the process.

Imports: nothing at import time; `client`, `controller`, `config`,
`errors` and `exceptions` on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# LiteLLM's top-level exception names (interlock.exceptions says what each one is).
_LITELLM_NAMES = (
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BudgetExceededError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedParamsError",
)

_EXPORTS = {
    "Router": "interlock.client",
    "Controller": "interlock.controller",
    "load_config": "interlock.config",
    "InterlockError": "interlock.errors",
    "ConfigError": "interlock.errors",
    "InvalidRequest": "interlock.errors",
    "UnknownModel": "interlock.errors",
    "UnsupportedParameter": "interlock.errors",
    "BudgetExceeded": "interlock.errors",
    "NoDeploymentAvailable": "interlock.errors",
    "RouterNotTrained": "interlock.errors",
    "RouterClosed": "interlock.errors",
    "ProviderError": "interlock.errors",
    "RateLimited": "interlock.errors",
    "Overloaded": "interlock.errors",
    "ContextWindowExceeded": "interlock.errors",
    "ContentFiltered": "interlock.errors",
    "AuthenticationFailed": "interlock.errors",
    "PermissionDenied": "interlock.errors",
    "NotFound": "interlock.errors",
    "BadRequest": "interlock.errors",
    "UnprocessableEntity": "interlock.errors",
    "Timeout": "interlock.errors",
    "UpstreamServerError": "interlock.errors",
    "ConnectionFailed": "interlock.errors",
    **dict.fromkeys(_LITELLM_NAMES, "interlock.exceptions"),
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "AuthenticationFailed",
    "BadGatewayError",
    "BadRequest",
    "BadRequestError",
    "BudgetExceeded",
    "BudgetExceededError",
    "ConfigError",
    "ConnectionFailed",
    "ContentFiltered",
    "ContentPolicyViolationError",
    "ContextWindowExceeded",
    "ContextWindowExceededError",
    "Controller",
    "InterlockError",
    "InternalServerError",
    "InvalidRequest",
    "NoDeploymentAvailable",
    "NotFound",
    "NotFoundError",
    "Overloaded",
    "PermissionDenied",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "RateLimited",
    "Router",
    "RouterClosed",
    "RouterNotTrained",
    "ServiceUnavailableError",
    "Timeout",
    "UnknownModel",
    "UnprocessableEntity",
    "UnprocessableEntityError",
    "UnsupportedParameter",
    "UnsupportedParamsError",
    "UpstreamServerError",
    "load_config",
]

if TYPE_CHECKING:
    from interlock.client import Router
    from interlock.config import load_config
    from interlock.controller import Controller
    from interlock.errors import (
        AuthenticationFailed,
        BadRequest,
        BudgetExceeded,
        ConfigError,
        ConnectionFailed,
        ContentFiltered,
        ContextWindowExceeded,
        InterlockError,
        InvalidRequest,
        NoDeploymentAvailable,
        NotFound,
        Overloaded,
        PermissionDenied,
        ProviderError,
        RateLimited,
        RouterClosed,
        RouterNotTrained,
        Timeout,
        UnknownModel,
        UnprocessableEntity,
        UnsupportedParameter,
        UpstreamServerError,
    )
    from interlock.exceptions import (
        APIConnectionError,
        APIError,
        AuthenticationError,
        BadGatewayError,
        BadRequestError,
        BudgetExceededError,
        ContentPolicyViolationError,
        ContextWindowExceededError,
        InternalServerError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ServiceUnavailableError,
        UnprocessableEntityError,
        UnsupportedParamsError,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interlock' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
