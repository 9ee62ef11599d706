"""LiteLLM's exception names, for code ported from LiteLLM.

A handler written against LiteLLM (`from litellm import RateLimitError`, or
`from litellm.exceptions import ...`) keeps working once that import reads
`interlock` (or `interlock.exceptions`) instead: each name here is the
Interlock class raised where LiteLLM raises its own. Where one LiteLLM class
stands for several of Interlock's, the name is a tuple of them, which `except`
and `isinstance` accept as they accept a class (it cannot be raised or
subclassed: raise the Interlock class itself). Interlock's own names
(`interlock.errors`) say more and are the ones to use in new code.

What differs from LiteLLM: these are not subclasses of the `openai` package's
exceptions (Interlock does not depend on it), so `except openai.RateLimitError`
catches nothing from Interlock; `status_code` is the status the gateway answers
with (504 for a timeout, 502 for a failed upstream), while the upstream's own
status is `status`; `llm_provider` is there, `model` is not (`deployment` names
the deployment that failed). PermissionDeniedError and UnprocessableEntityError
are subclasses of AuthenticationFailed and BadRequest here, so code catching
those (or their LiteLLM names) also catches 403s and 422s.

Imports: `errors`.
"""

from __future__ import annotations

from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    BudgetExceeded,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    Timeout,
    UnprocessableEntity,
    UnsupportedParameter,
    UpstreamServerError,
)

# A 400 from the provider, or a request Interlock refuses before any call (an
# unknown model group among them, which LiteLLM's Router also refuses with a
# BadRequestError). ContextWindowExceeded and ContentFiltered are BadRequests.
BadRequestError = (BadRequest, InvalidRequest)
UnprocessableEntityError = UnprocessableEntity
UnsupportedParamsError = UnsupportedParameter
ContextWindowExceededError = ContextWindowExceeded
ContentPolicyViolationError = ContentFiltered
AuthenticationError = AuthenticationFailed
# A subclass of AuthenticationFailed: `except AuthenticationError` catches 403s
# too, as it did before they had a class of their own.
PermissionDeniedError = PermissionDenied
NotFoundError = NotFound
RateLimitError = RateLimited
ServiceUnavailableError = Overloaded
# Every deployment of the group is cooling down or over its limits (LiteLLM's
# Router raises this one, a ValueError there, from litellm.types.router).
RouterRateLimitError = NoDeploymentAvailable
InternalServerError = UpstreamServerError
BadGatewayError = UpstreamServerError
APIError = UpstreamServerError
APIConnectionError = ConnectionFailed
BudgetExceededError = BudgetExceeded
# Timeout: LiteLLM's name and Interlock's are the same class name.

__all__ = [
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
    "RouterRateLimitError",
    "ServiceUnavailableError",
    "Timeout",
    "UnprocessableEntityError",
    "UnsupportedParamsError",
]
