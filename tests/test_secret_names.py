"""Which names hold secrets, and what a deployment keeps secret for them.

One rule judges a name (`errors.names_a_credential`): the catalog's secrets,
the config's masked values (in an error report, a repr, a model listing) and
the parameters made `Secret` at build all ask it. Before, the config asked a
second pattern (`SECRET_NAME`) that missed `private_key`, `azure_ad_token`, a
client key's `key` and an `X-Api-Key` header, and took a credential's *name*
(`litellm_credential_name`) for a credential; a deployment's `extra_headers`
were no secret at all, so a provider echoing part of a proxy's header showed it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from interlock.catalog import Deployment, Secret
from interlock.config import build_catalog, load_config
from interlock.errors import (
    ConfigError,
    ProviderError,
    names_a_credential,
    names_a_credential_outright,
    redact,
    url_credentials,
)
from interlock.testing import FakeUpstream, Fault

PROXY_KEY = "pxk-7Hq2Lm9Vw4Rt8Ny3Bc6Zd1Fs5"
TOKEN = "aad-Tk9mQ2wLx7Rv4Nc8Bz3Hd6Fj1G"
ENV = {"OPENAI_API_KEY": "sk-proj-FAKEopenaiKEY0123456789"}



# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("name", [
    # A JSON web token is a bearer credential; a DSN (Sentry's, a database's)
    # carries the key or password it connects with.
    "jwt", "client_jwt", "assertion_jwts", "sentry_dsn", "dsn", "SENTRY_DSN", "databaseDsn",
    # As before.
    "api_key", "private_key", "client_secret", "X-Api-Key", "id_token", "password",
    # A password or a secret run together with any word before it (the config's
    # old pattern masked these; the prefixes of keys and tokens did not take them).
    "dbpassword", "adminpassword", "mysecret", "DB_ADMINPASSWORD", "rootPasswd2",
    "vaultpassphrase", "topsecrets",
])
def test_names_of_credentials(name: str) -> None:
    assert names_a_credential(name) and names_a_credential_outright(name)


@pytest.mark.parametrize("name", [
    # A token that pages through a listing, a public key and a key that finds a
    # cache entry are not secrets, whatever their word says.
    "page_token", "next_page_token", "nextPageToken", "public_key", "client_public_key",
    "public_key_pem", "cache_key", "idempotency_key",
    # A unit or a verb, not a credential: config fields a listing and an error
    # report must show (they were masked once the config asked this rule).
    "input_cost_per_token", "cached_input_cost_per_token", "cache_read_input_token_cost",
    "auth_cooldown_time", "use_in_pass_through",
    # Names of credentials and ids of them, not the credentials.
    "litellm_credential_name", "secret_name", "aws_access_key_id", "credentials_path",
    # A word that only holds one, not at its end; a key or a token after any word
    # other than the few prefixes of a credential's.
    "secretary", "mysecretary", "passwordless", "dbpassword_file", "monkey", "turnkey",
    "hotkey", "mytoken",
])
def test_names_that_are_not_credentials(name: str) -> None:
    assert not names_a_credential(name)


def test_a_credential_word_beside_a_qualifier_elsewhere_in_the_name_still_counts() -> None:
    # The qualifier speaks for the word right after it only.
    assert names_a_credential("public_key_secret") and names_a_credential("page_jwt")
    assert names_a_credential_outright("cache_password")


def test_a_url_s_query_keeps_its_jwt_and_dsn_and_shows_its_page_token() -> None:
    url = ("https://h.example/v1?page_token=CAESBggBEgIQAQ0123&jwt=eyJhbGciOi.eyJzdWIi.sig0"
           "&dsn=https%3A%2F%2Fk3y%40o1.ingest.example%2F7&public_key=pk-lf-0123456789")
    assert url_credentials(url) == ["eyJhbGciOi.eyJzdWIi.sig0",
                                    "https%3A%2F%2Fk3y%40o1.ingest.example%2F7",
                                    "https://k3y@o1.ingest.example/7"]


# --------------------------------------------------------------------------- extra_headers


def test_the_credential_headers_of_a_deployment_are_its_secrets() -> None:
    headers = {"X-Api-Key": PROXY_KEY, "Authorization": "Bearer tok-short1",
               "Cookie": "session=c00kie-value-0123", "X-Proxy-Token": "ptok-0123456789",
               "X-Request-Source": "my-app-frontend-service", "anthropic-beta": "tools-2024"}
    deployment = Deployment(name="d", group="g", provider="openai", model="m",
                            extra={"extra_headers": headers})
    # Authorization's credential is taken on its own too: an echo of the token
    # alone, shorter than a run, would not match the whole "Bearer ..." value.
    assert deployment.secrets() == (PROXY_KEY, "Bearer tok-short1", "tok-short1",
                                    "session=c00kie-value-0123", "ptok-0123456789")
    text = "from my-app-frontend-service with tools-2024: denied"
    assert redact(text, *deployment.secrets()) == text


async def test_a_provider_echoing_part_of_a_proxy_header_shows_none_of_it(
        fake_upstream: FakeUpstream) -> None:
    from interlock import Router

    fake_upstream.script(Fault(status=401, message=f"proxy: bad x-api-key {PROXY_KEY[4:24]}"),
                         provider="openai")
    router = Router(model_list=[{"model_name": "g", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-proj-FAKEopenaiKEY0123456789",
        "api_base": fake_upstream.base_url("openai"),
        "extra_headers": {"X-Api-Key": PROXY_KEY, "X-Request-Source": "my-app"}}}],
        num_retries=0)
    async with router:
        with pytest.raises(ProviderError) as info:
            await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
    assert fake_upstream.received[0].headers["x-api-key"] == PROXY_KEY  # still sent
    assert "bad x-api-key [redacted]" in str(info.value)
    for text in (str(info.value), repr(info.value), repr(info.value.body)):
        assert PROXY_KEY[4:24] not in text


# --------------------------------------------------------------------------- one rule


def _entry(**params: Any) -> dict[str, Any]:
    return {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o-mini", **params}}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data, environ=ENV)
    return str(info.value)


def test_a_bad_value_under_a_credential_name_the_old_pattern_missed_is_masked() -> None:
    # A YAML number where a string belongs: the error quoted it.
    message = _error({"model_list": [_entry(extra_headers={"X-Api-Key": 918273645546372819})],
                      "general_settings": {"api_keys": [{"name": "team",
                                                         "key": 192837465564738291}]}})
    assert "918273645546372819" not in message and "192837465564738291" not in message
    assert "extra_headers.X-Api-Key: got '********'" in message
    assert "api_keys[0].key: got '********'" in message


def test_a_bad_value_under_a_name_that_only_looks_like_a_credential_is_shown() -> None:
    message = _error({"model_list": [_entry(input_cost_per_token="cheap")]})
    assert "input_cost_per_token: got 'cheap'" in message


def test_listings_reprs_and_errors_judge_a_name_by_the_same_rule() -> None:
    # An Azure AD token was listed and shown in errors; a credential's name,
    # an access key's id and a price were masked in the listing, and the first
    # two hidden from every error of the deployment.
    config = load_config({"model_list": [_entry(
        azure_ad_token=TOKEN, private_key="-----BEGIN KEY-----abc",
        litellm_credential_name="azure-prod-creds", aws_access_key_id="AKIAEXAMPLE0123",
        input_cost_per_token=0.000002, use_in_pass_through=False)]}, environ=ENV)
    params = config.model_list[0].litellm_params
    listed = json.dumps(params.model_dump(mode="json"))
    for shown in (listed, repr(params)):
        assert TOKEN not in shown and "BEGIN KEY" not in shown
        assert "azure-prod-creds" in shown and "AKIAEXAMPLE0123" in shown
    assert '"input_cost_per_token": "0.000002"' in listed
    assert '"use_in_pass_through": false' in listed
    deployment = next(build_catalog(config).deployments())
    assert deployment.extra["azure_ad_token"] == Secret(TOKEN)
    assert deployment.extra["litellm_credential_name"] == "azure-prod-creds"
    assert set(deployment.secrets()) == {ENV["OPENAI_API_KEY"], TOKEN,
                                         "-----BEGIN KEY-----abc"}


def test_a_setting_that_mentions_a_credential_keeps_its_short_values_visible() -> None:
    # `use_auth_token` takes a token or `true`; made Secret by the one rule, its
    # short values and numbers stay ordinary text in errors, as in a mapping.
    config = load_config({"model_list": [_entry(use_auth_token="hf_0123456789abcdef",
                                                token_lifetime_seconds=3600)]}, environ=ENV)
    deployment = next(build_catalog(config).deployments())
    assert deployment.secrets() == (ENV["OPENAI_API_KEY"], "hf_0123456789abcdef")
