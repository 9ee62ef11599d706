"""A gateway without a key (`allow_unauthenticated`) answers this machine's own
clients only: a loopback Host, and POST bodies declared as JSON, so that a web
page the operator visits can neither spend through it nor, by DNS rebinding,
read its answers. A gateway with a key is not affected."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest
from tests.server.gateways import MASTER_KEY, RunningGateway, three_provider_config

from interlock.server.local_only import host_name, is_json, is_loopback
from interlock.testing import FakeUpstream

BODY = b'{"model": "budget", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
def open_gateway(fake_upstream: FakeUpstream,
                 start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    config = three_provider_config(fake_upstream)
    config["general_settings"] = {"allow_unauthenticated": True}
    return start_gateway(config)


def _post(gateway: RunningGateway, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.post(gateway.base_url + "/chat/completions", content=BODY, headers=headers)


def test_a_web_page_s_simple_post_is_refused(open_gateway: RunningGateway,
                                            fake_upstream: FakeUpstream) -> None:
    """The reviewer's request: a form-like POST from another site, through a name
    rebound to 127.0.0.1. It used to get a completion."""
    answer = _post(open_gateway, {"content-type": "text/plain",
                                  "origin": "http://evil.example",
                                  "host": f"evil.example:{open_gateway.port}"})
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "host_not_allowed"
    assert f"'evil.example:{open_gateway.port}'" in error["message"]
    assert fake_upstream.calls() == 0


def test_a_rebound_name_is_refused_even_with_json(open_gateway: RunningGateway) -> None:
    answer = _post(open_gateway, {"content-type": "application/json",
                                  "host": f"evil.example:{open_gateway.port}"})
    assert answer.status_code == 403
    with httpx.Client(timeout=10) as http:
        models = http.get(open_gateway.base_url + "/models", headers={"host": "evil.example"})
    assert models.status_code == 403


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_not_declared_json_is_refused(open_gateway: RunningGateway,
                                             fake_upstream: FakeUpstream,
                                             content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = _post(open_gateway, headers)
    assert answer.status_code == 415
    error = answer.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]
    assert fake_upstream.calls() == 0


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "LOCALHOST", "127.0.0.1:{port}",
                                  "localhost:{port}", "[::1]:{port}"])
def test_this_machine_s_names_and_json_are_served(open_gateway: RunningGateway,
                                                  host: str) -> None:
    answer = _post(open_gateway, {"content-type": "application/json; charset=utf-8",
                                  "host": host.format(port=open_gateway.port)})
    assert answer.status_code == 200, answer.text


def test_a_request_without_a_host_is_refused(open_gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", open_gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 403"


def test_a_gateway_with_a_key_checks_the_key_not_the_host(gateway: RunningGateway) -> None:
    answer = _post(gateway, {"content-type": "text/plain", "host": "gateway.internal",
                             "authorization": f"Bearer {MASTER_KEY}"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(("value", "name"), [
    ("localhost", "localhost"), ("localhost:4000", "localhost"), ("[::1]:4000", "::1"),
    ("[::1]", "::1"), ("127.0.0.1:80", "127.0.0.1"), ("evil.example:4000", "evil.example")])
def test_host_name_drops_the_port(value: str, name: str) -> None:
    assert host_name(value) == name


def test_what_counts_as_this_machine_and_as_json() -> None:
    assert [is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1")] == [True] * 4
    assert [is_loopback(h) for h in ("localhost.evil.example", "10.0.0.1", "0.0.0.0", "")] == [
        False] * 4
    assert is_json("Application/JSON ; charset=utf-8")
    assert not is_json("application/json-patch+json") and not is_json(None)
