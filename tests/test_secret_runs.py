"""A provider's error text that echoes part of a deployment's secret: the part is
hidden wherever the error goes (the exception, the client's error body, the log,
the ledger: tests/server/test_secret_runs_e2e.py), as the whole secret always was.

Before, `redact` replaced only the whole secret: an error quoting a 20-character
stretch of the key, or the key with its middle starred out, passed through.
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock.catalog import Deployment, Secret, url_credentials
from interlock.errors import SECRET_RUN, ProviderError, redact, redact_json
from interlock.testing import FakeUpstream, Fault

KEY = "sk-proj-Qm7xT2vLw9RbN4cKp8ZyH3dFj6GsA1eUo5iVn0tXrWq"
INFIX = KEY[14:34]  # 20 characters from the middle: neither its head nor its tail
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-20250514",
          "gemini": "gemini-2.5-pro"}


# --------------------------------------------------------------------------- redact


@pytest.mark.parametrize("echoed", [
    INFIX,
    KEY[:12] + "*" * 28 + KEY[-4:],         # OpenAI's masking: a long head and a tail
    KEY[:20] + "..." + KEY[-16:],           # a proxy's, with a long tail too
    KEY[5:] + "!",                          # all but the head
], ids=["infix", "openai-mask", "head-and-tail", "all-but-the-head"])
def test_a_long_run_of_the_key_is_hidden(echoed: str) -> None:
    shown = redact(f"Incorrect API key provided: {echoed}. Check it.", KEY)
    assert shown.startswith("Incorrect API key provided: ") and shown.endswith(". Check it.")
    for start in range(len(KEY) - SECRET_RUN + 1):
        assert KEY[start:start + SECRET_RUN] not in shown, shown


def test_runs_shorter_than_the_threshold_and_other_text_are_kept() -> None:
    # A key's short pieces are ordinary text (its provider's prefix, a word).
    short = KEY[14:14 + SECRET_RUN - 1]
    text = f"keys look like sk-proj-...; saw {short} in 5000 requests"
    assert redact(text, KEY) == text


def test_runs_of_every_secret_are_hidden_and_json_stays_json() -> None:
    other = "hunter2-correct-horse-battery"
    body = {"error": {"message": f"bad {KEY[3:25]} and {other[4:20]}", "code": 401}}
    shown = redact_json(body, KEY, other)
    assert shown == {"error": {"message": "bad [redacted] and [redacted]", "code": 401}}


def test_a_long_message_is_scanned_once() -> None:
    # A few KB of text around the run: found once, the rest kept as it was.
    filler = "upstream said no. " * 300
    shown = redact(filler + INFIX + filler, KEY)
    assert shown == filler + "[redacted]" + filler


# --------------------------------------------------------------------------- secrets


def test_a_deployment_s_secrets_include_its_api_base_credentials() -> None:
    deployment = Deployment(
        name="d", group="g", provider="openai", model="m", api_key=Secret(KEY),
        api_base="https://proxy-user:s3cr%40t-pass-phrase@proxy.example/v1?api-key=Az9-key-long"
                 "&api-version=2024-06-01",
        extra={"aws_secret_access_key": Secret("aws-secret-value")})
    assert deployment.secrets() == (KEY, "s3cr%40t-pass-phrase", "s3cr@t-pass-phrase",
                                    "Az9-key-long", "aws-secret-value")
    # A token written as the URL's user is its credential; a plain URL has none.
    assert url_credentials("https://tok3n-as-user@host.example/v1") == ["tok3n-as-user"]
    assert url_credentials("http://127.0.0.1:8900/v1?api-version=1") == []


# --------------------------------------------------------------------------- end to end


def entry(fake: FakeUpstream, provider: str, **params: Any) -> dict[str, Any]:
    return {"model_name": "g", "litellm_params": {
        "model": f"{provider}/{MODELS[provider]}", "api_key": KEY,
        "api_base": fake.base_url(provider), **params}}


@pytest.mark.parametrize("provider", list(MODELS))
async def test_the_library_s_error_hides_an_echoed_infix(
        fake_upstream: FakeUpstream, provider: str) -> None:
    from interlock import Router

    fake_upstream.script(Fault(status=401, message=f"Incorrect API key provided: {INFIX}"),
                         provider=provider)
    router = Router(model_list=[entry(fake_upstream, provider)], num_retries=0)
    try:
        with pytest.raises(ProviderError) as info:
            await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
    finally:
        await router.aclose()
    error = info.value
    assert fake_upstream.calls(provider) == 1
    shown = [str(error), repr(error), error.message, repr(error.body)]
    assert "Incorrect API key provided: [redacted]" in str(error)
    for text in shown:
        assert INFIX not in text, text


async def test_a_password_in_api_base_echoed_in_part_is_hidden(
        fake_upstream: FakeUpstream) -> None:
    password = "pr0xy-Pa55word-long-enough"
    # Anthropic's key goes in x-api-key, so the URL's credentials can go too.
    base = fake_upstream.base_url("anthropic").replace("://", f"://gw:{password}@")
    fake_upstream.script(Fault(status=403, message=f"proxy refused password {password[2:20]}"),
                         provider="anthropic")
    from interlock import Router

    router = Router(model_list=[entry(fake_upstream, "anthropic", api_base=base)],
                    num_retries=0)
    try:
        with pytest.raises(ProviderError) as info:
            await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
    finally:
        await router.aclose()
    assert "proxy refused password [redacted]" in str(info.value)
    assert password[2:20] not in repr(info.value.body)


# --------------------------------------------------------------------------- review fixes


async def test_a_secret_parameter_that_is_not_text_leaves_errors_as_they_were(
        fake_upstream: FakeUpstream) -> None:
    # A secret-named parameter holding a number made `redact` raise TypeError on
    # every provider error of its deployment: a 429 became a malformed-answer 502,
    # its Retry-After and class lost.
    from interlock import Router
    from interlock.errors import RateLimited

    fake_upstream.script(Fault(status=429, retry_after=7), provider="openai")
    router = Router(model_list=[entry(fake_upstream, "openai",
                                      aws_secret_access_key=123456789012345)], num_retries=0)
    try:
        with pytest.raises(RateLimited) as info:
            await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
    finally:
        await router.aclose()
    assert info.value.retry_after == 7


def test_the_strings_within_a_credential_field_of_a_mapping_secret_are_secret() -> None:
    # But for the fields that describe: a project, an endpoint (whose own URL
    # credentials stay secret), a number or a short setting.
    nested = Secret({"credentials": {  # type: ignore[arg-type]
        "value": "n3sted-s3cret-value", "project_id": "router-prod",
        "token_uri": "https://oauth2.googleapis.com/token", "flavor": "Google",
        "endpoint": "https://acct.blob.example/c?sv=2024-06-01&sig=SASsig0123456789",
        "retries": 4096, "note": "basic"}})
    deployment = Deployment(name="d", group="g", provider="openai", model="m",
                            extra={"client_config": nested})
    assert deployment.secrets() == ("n3sted-s3cret-value", "SASsig0123456789")


def test_the_credentials_inside_a_mapping_secret_are_secrets() -> None:
    # A service account's credentials: the private key inside is what to hide,
    # not its project, e-mail or endpoints, which an operator reads an error for.
    private = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    account = {"type": "service_account", "project_id": "router-prod",
               "private_key_id": "9f8e7d6c5b4a39281706", "private_key": private,
               "client_email": "router@router-prod.iam.gserviceaccount.com",
               "token_uri": "https://oauth2.googleapis.com/token", "n": [17]}
    deployment = Deployment(name="d", group="g", provider="gemini", model="m",
                            extra={"vertex_credentials": Secret(account)})  # type: ignore[arg-type]
    assert deployment.secrets() == (private,)
    shown = redact(f"bad key {private[20:40]} for router@router-prod.iam.gserviceaccount.com",
                   *deployment.secrets())
    assert shown == "bad key [redacted] for router@router-prod.iam.gserviceaccount.com"
    assert redact("text", None, 5, {"a": 1}) == "text"  # type: ignore[arg-type]


def test_only_query_parameters_named_as_credentials_are_taken() -> None:
    # Matched anywhere in the name, `bypass_cache=true` or `author=` had their
    # values hidden in every error of the deployment; matched by the last part
    # alone, `private_key_pem` or `api_key_2` were not. Values shorter than
    # NAMED_SECRET_MIN are settings, not secrets ("4096" would vanish from every
    # context-length error).
    named = ["api-key", "sig", "token", "code", "X-Amz-Signature", "X-Amz-Security-Token",
             "subscription-key", "auth_token", "client_secret", "apiKey", "apitoken",
             "private_key_pem", "api_key_2", "auth_header", "api_keys"]
    other = ["bypass_cache", "author", "country_code", "token_uri", "auth_mode", "token_type",
             "key_id", "token_limit", "key_path", "max_tokens", "api-version"]
    values = {name: f"v{i:02d}-{name[:3]}-0123456789" for i, name in enumerate(named + other)}
    url = "https://h.example/v1?" + "&".join(f"{k}={v}" for k, v in values.items())
    assert url_credentials(url) == [values[name] for name in named]
    assert url_credentials("https://h.example/v1?token_limit=4096&max_tokens=10") == []
    # A short credential is still one (a self-hosted server's token).
    assert url_credentials("http://llm.internal:8000/v1?token=s3cr3t7") == ["s3cr3t7"]


def test_a_connection_error_quoting_its_url_hides_the_url_s_credentials() -> None:
    # aiohttp quotes the URL in some errors (TooManyRedirects, InvalidURL): a
    # ?token= the default patterns do not know reached the log and the library.
    from interlock.adapters.http import Labels, _connection_error

    url = "https://proxy.example/v1/chat/completions?token=tok_9f8e7d6c5b4a&sig=zz9yy8xx7"
    error = _connection_error(ValueError(f"Invalid URL {url}"), Labels("openai", "d"), url)
    assert "tok_9f8e7d6c5b4a" not in error.message and "zz9yy8xx7" not in error.message
    assert "proxy.example" in error.message  # the operator's text keeps the host
    deployment = Deployment(name="d", group="g", provider="openai", model="m",
                            api_base="https://proxy.example/v1?token=tok_9f8e7d6c5b4a")
    assert "tok_9f8e7d6c5b4a" not in repr(deployment)


def test_url_passwords_are_hidden_as_the_pattern_before_the_one_pass_scan_hid_them() -> None:
    # The scan replaced a pattern that was quadratic in a run of `://x:` with no
    # '@' (40 KB of a provider's error text held the loop 3 s): the same hidden.
    assert redact("://a:" * 50) == "://a:" * 50
    assert redact("a://u:p@h b://v:q@k") == "a://u:[redacted]@h b://v:[redacted]@k"
    assert redact("dsn postgresql://u:p@ss/w:rd@db:5432/x, then redis://:s3cret@r:6379/0") == (
        "dsn postgresql://u:[redacted]@db:5432/x, then redis://:[redacted]@r:6379/0")


def test_a_credential_is_whole_at_any_length_and_a_url_anywhere_keeps_its_own() -> None:
    # A value named as a credential by its own field was dropped under 8
    # characters, or as a number (`password: 12345678` unquoted in YAML); a SAS
    # URL at the top of a mapping kept its signature visible (sixth review).
    sas = "https://acct.blob.example/c?sv=2024-06-01&sig=AbCd0123456789%3D"
    mapping = Secret({  # type: ignore[arg-type]
        "password": "hunter2", "pin": 4096,
        "db": {"password": 12345678, "port": 5432},
        "sas_url": sas,
        "credentials": {"web": {"client_secret": "cl1ent-s3cret-value",
                                "redirect_uris": ["http://localhost:8080/callback"],
                                "note": 4096}}})
    deployment = Deployment(name="d", group="g", provider="openai", model="m",
                            extra={"azure_credentials": mapping})
    assert deployment.secrets() == ("hunter2", "12345678", "AbCd0123456789%3D",
                                    "AbCd0123456789=", "cl1ent-s3cret-value")
    shown = redact("Connection refused: http://localhost:8080/v1 (4096 tokens, port 5432)",
                   *deployment.secrets())
    assert shown == "Connection refused: http://localhost:8080/v1 (4096 tokens, port 5432)"


def test_a_setting_that_only_mentions_a_credential_keeps_short_values_and_numbers() -> None:
    # Any part of the name was enough to take a value at any length, a number
    # too: "3600 requests per hour" and "one of auto, none, required" lost their
    # words (seventh review). Only a name ending in the word is a credential
    # outright; the bare `auth` may name a scheme.
    oauth = Secret({  # type: ignore[arg-type]
        "token_url": "https://idp.example/oauth2/token", "client_id": "gw",
        "client_secret": "cl1ent-s3cret-value", "token_lifetime_seconds": 3600,
        "auth_timeout_ms": 5000, "auth": "none", "use_auth_token": "true",
        "password": "pw12", "private_key_pem": "-----BEGIN-----abc"})
    deployment = Deployment(name="d", group="g", provider="openai", model="m",
                            api_base="http://llm.internal:8000/v1?auth=none&token=s3cr3t7",
                            extra={"oauth_credentials": oauth})
    assert deployment.secrets() == ("s3cr3t7", "cl1ent-s3cret-value", "pw12",
                                    "-----BEGIN-----abc")
    text = "Rate limit: 3600 requests per hour, retry after 5000 ms; one of auto, none, required"
    assert redact(text, *deployment.secrets()) == text


def test_a_connection_string_in_a_secret_mapping_keeps_its_credentials_secret() -> None:
    # Only URLs were looked into: an Azure connection string's AccountKey, a
    # Service Bus SharedAccessKey, an ODBC Password and a bare SAS query's sig
    # stayed visible in errors (seventh review).
    mapping = Secret({  # type: ignore[arg-type]
        "storage": "DefaultEndpointsProtocol=https;AccountName=acct;"
                   "AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==;EndpointSuffix=core.windows.net",
        "bus": "Endpoint=sb://ns.servicebus.example/;SharedAccessKeyName=root;"
               "SharedAccessKey=c2VjcmV0LWtleS12YWx1ZS0xMjM0NTY=",
        "odbc": "Server=db;User ID=u;Password=Pa55w0rd-xyz;",
        "sas": "sv=2024-06-01&ss=b&sig=AbCd0123456789",
        "note": "mode=fast;retries=3;auth=none"})
    deployment = Deployment(name="d", group="g", provider="openai", model="m",
                            extra={"azure_credentials": mapping})
    assert deployment.secrets() == ("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
                                    "c2VjcmV0LWtleS12YWx1ZS0xMjM0NTY=", "Pa55w0rd-xyz",
                                    "AbCd0123456789")
