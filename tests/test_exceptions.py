"""LiteLLM's exception names: a handler ported from LiteLLM, with only its import
changed, catches what Interlock raises in the same situations.

Driven through `Router` against the fake upstream (the `provider_env` fixture),
each provider answering its real error body.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import interlock
import interlock.exceptions
from interlock.errors import (
    BadRequest,
    ContentFiltered,
    ContextWindowExceeded,
    InterlockError,
    NoDeploymentAvailable,
    UnknownModel,
)
from interlock.testing import FakeUpstream
from interlock.testing.script import Fault

MESSAGES = [{"role": "user", "content": "x"}]


def _model_list() -> list[dict[str, Any]]:
    return [{"model_name": "claude",
             "litellm_params": {"model": "anthropic/claude-sonnet-4-20250514",
                                "api_key": os.environ["ANTHROPIC_API_KEY"]}}]


async def _raised(router: interlock.Router, model: str = "claude") -> InterlockError:
    with pytest.raises(InterlockError) as info:
        await router.acompletion(model=model, messages=MESSAGES)
    return info.value


async def _scripted(fake: FakeUpstream, fault: Fault, router: interlock.Router
                    ) -> InterlockError:
    fake.script(fault, provider="anthropic")
    return await _raised(router)


async def test_litellm_names_catch_what_interlock_raises(provider_env: FakeUpstream) -> None:
    # --- as a LiteLLM user imports them, with the package name changed ---
    from interlock import (
        AuthenticationError,
        BadRequestError,
        ContentPolicyViolationError,
        ContextWindowExceededError,
        RateLimitError,
        Router,
    )

    async with Router(model_list=_model_list(), num_retries=0) as router:
        # An unknown model group: LiteLLM's Router raises a BadRequestError too.
        unknown = await _raised(router, model="gpt-9")
        assert isinstance(unknown, UnknownModel) and isinstance(unknown, BadRequestError)

        too_long = await _scripted(provider_env, Fault(status=400, kind="context_window"), router)
        assert isinstance(too_long, ContextWindowExceededError)
        # As in LiteLLM, the special 400s are bad requests too.
        assert isinstance(too_long, BadRequestError) and isinstance(too_long, BadRequest)
        assert not isinstance(too_long, ContentPolicyViolationError)

        refused = await _scripted(provider_env, Fault(status=400, kind="safety"), router)
        assert isinstance(refused, ContentPolicyViolationError)
        assert isinstance(refused, BadRequestError)

        plain = await _scripted(provider_env, Fault(status=400), router)
        assert isinstance(plain, BadRequestError)
        assert not isinstance(plain, ContextWindowExceededError | ContentPolicyViolationError)

        limited = await _scripted(provider_env, Fault(status=429, retry_after=2), router)
        assert isinstance(limited, RateLimitError) and not isinstance(limited, BadRequestError)
        # The attributes a LiteLLM handler reads.
        assert limited.status_code == 429
        assert limited.llm_provider == "anthropic"
        assert limited.retry_after == 2

        denied = await _scripted(provider_env, Fault(status=401), router)
        assert isinstance(denied, AuthenticationError)

    # And in an except clause, where the tuple names must work as classes do.
    async with Router(model_list=_model_list(), num_retries=0) as router:
        provider_env.script(Fault(status=400, kind="context_window"), provider="anthropic")
        try:
            await router.acompletion(model="claude", messages=MESSAGES)
        except RateLimitError:
            pytest.fail("a context-window error is not a rate limit")
        except BadRequestError as exc:
            assert isinstance(exc, ContextWindowExceeded)
        else:
            pytest.fail("the context-window error was not raised")


def test_each_litellm_name_is_an_interlock_error_class_or_a_tuple_of_them() -> None:
    for name in interlock.exceptions.__all__:
        value = getattr(interlock.exceptions, name)
        classes = value if isinstance(value, tuple) else (value,)
        assert classes, name
        for cls in classes:
            assert isinstance(cls, type) and issubclass(cls, InterlockError), name
    # The top-level names LiteLLM exports are the same objects at interlock's top level.
    for name in interlock._LITELLM_NAMES:
        assert getattr(interlock, name) is getattr(interlock.exceptions, name)
        assert name in interlock.__all__


def test_the_special_bad_requests_keep_their_own_error_types() -> None:
    assert issubclass(ContextWindowExceeded, BadRequest)
    assert issubclass(ContentFiltered, BadRequest)
    assert ContentFiltered.error_type == "content_filter_error"
    assert ContextWindowExceeded.status_code == ContentFiltered.status_code == 400
    # LiteLLM's Router raises RouterRateLimitError when every deployment is cooling.
    assert interlock.exceptions.RouterRateLimitError is NoDeploymentAvailable


@pytest.mark.parametrize("provider", ["anthropic", "openai", "gemini"])
async def test_403_422_and_503_keep_litellm_s_classes_and_statuses(
        provider_env: FakeUpstream, provider: str) -> None:
    from interlock import (
        AuthenticationError,
        BadRequestError,
        PermissionDeniedError,
        ServiceUnavailableError,
        UnprocessableEntityError,
    )

    models = {"anthropic": "anthropic/claude-sonnet-4-20250514",
              "openai": "openai/gpt-4o-mini", "gemini": "gemini/gemini-2.0-flash"}
    model_list = [{"model_name": "m", "litellm_params": {"model": models[provider]}}]

    async def raised(status: int) -> InterlockError:
        # A fresh router each time: a 403 cools its deployment down.
        async with interlock.Router(model_list=model_list, num_retries=0) as router:
            provider_env.script(Fault(status=status), provider=provider)
            return await _raised(router, model="m")

    denied = await raised(403)
    assert isinstance(denied, PermissionDeniedError) and denied.status_code == 403
    # Handlers written for authentication failures still catch it ...
    assert isinstance(denied, AuthenticationError)
    # ... but a 401 is not a permission problem.
    unauthenticated = await raised(401)
    assert not isinstance(unauthenticated, PermissionDeniedError)
    assert unauthenticated.status_code == 401

    unprocessable = await raised(422)
    assert isinstance(unprocessable, UnprocessableEntityError)
    assert unprocessable.status_code == 422 and isinstance(unprocessable, BadRequestError)
    assert not isinstance(await raised(400), UnprocessableEntityError)

    unavailable = await raised(503)
    assert isinstance(unavailable, ServiceUnavailableError) and unavailable.status_code == 503
