"""drop_params on an OpenAI deployment through the gateway: the
`litellm_settings` default and a client's own, streamed and not; without it,
another provider's parameter is the gateway's 400 before any call, and one
Interlock does not know is sent, OpenAI's own 400 reaching the client."""

from __future__ import annotations

from typing import Any

import httpx
from tests.server.gateways import MASTER_KEY, deployment, three_provider_config
from tests.test_drop_params_openai import DROPPED, MESSAGES

from interlock.testing import FakeUpstream


def _gateway_config(fake: FakeUpstream, **settings: Any) -> dict[str, Any]:
    config = three_provider_config(fake)
    config["model_list"] = [deployment(fake, "budget", "openai", params_like="openai")]
    if settings:
        config["litellm_settings"] = settings
    return config


def _post(gateway: Any, **fields: Any) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {MASTER_KEY}"},
                      json={"model": "budget", "messages": MESSAGES, **fields})


def test_gateway_drop_params_setting_drops_them(fake_upstream: FakeUpstream,
                                                start_gateway: Any) -> None:
    gateway = start_gateway(_gateway_config(fake_upstream, drop_params=True))
    for stream in (False, True):
        answer = _post(gateway, stream=stream, logprobs=True, **DROPPED)
        assert answer.status_code == 200, answer.text
        body = fake_upstream.received[-1].body
        assert body["logprobs"] is True and not set(DROPPED) & set(body)


def test_gateway_without_drop_params_answers_our_400(fake_upstream: FakeUpstream,
                                                     start_gateway: Any) -> None:
    gateway = start_gateway(_gateway_config(fake_upstream))
    answer = _post(gateway, top_k=3)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "top_k" and error["code"] == "unsupported_parameter"
    assert "'openai'" in error["message"] and "drop_params" in error["message"]
    assert fake_upstream.calls() == 0
    # The client's own drop_params, with the setting off.
    assert _post(gateway, top_k=3, drop_params=True).status_code == 200
    assert "top_k" not in fake_upstream.received[-1].body


def test_gateway_without_drop_params_relays_openai_s_400_for_an_unknown_field(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    gateway = start_gateway(_gateway_config(fake_upstream))
    for stream in (False, True):
        answer = _post(gateway, stream=stream, foo=1, seed=2)
        assert answer.status_code == 400, answer.text
        assert "Unrecognized request argument supplied: foo" in answer.json()["error"]["message"]
        assert fake_upstream.received[-1].body["foo"] == 1
    # The client's own drop_params drops it; OpenAI's own field goes on.
    assert _post(gateway, foo=1, seed=2, drop_params=True).status_code == 200
    body = fake_upstream.received[-1].body
    assert "foo" not in body and body["seed"] == 2


def test_a_per_request_allowed_openai_params_is_refused_with_where_it_goes(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    gateway = start_gateway(_gateway_config(fake_upstream))
    answer = _post(gateway, allowed_openai_params=["foo"], foo=1)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "allowed_openai_params"
    assert "litellm_params.allowed_openai_params" in error["message"]
    assert fake_upstream.calls() == 0


def test_a_per_request_allowed_openai_params_is_refused_for_embeddings_too(
        fake_upstream: FakeUpstream, start_gateway: Any) -> None:
    config = three_provider_config(fake_upstream)
    config["model_list"] = [deployment(fake_upstream, "embed", "openai",
                                       "text-embedding-3-small", params_like="openai")]
    gateway = start_gateway(config)
    answer = httpx.post(gateway.base_url + "/embeddings",
                        headers={"Authorization": f"Bearer {MASTER_KEY}"},
                        json={"model": "embed", "input": ["hi"],
                              "allowed_openai_params": ["foo"], "foo": 1})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "allowed_openai_params"
    assert "litellm_params.allowed_openai_params" in error["message"]
    assert fake_upstream.calls() == 0
