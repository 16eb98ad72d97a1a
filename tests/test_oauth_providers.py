"""Which OAuth2 providers are offered (issue 15): Google and Microsoft built in, others from the
environment, and one sentence naming the variable for a value that cannot be used."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from service.config import Settings
from service.domain.oauth import ServerDefaults, configured_providers, usable_providers
from service.domain.outbound import OutboundPolicy
from service.domain.values import Security
from service.errors import InvalidInput, OAuthFailed
from service.usecases.oauth import endpoints as endpoints_module
from service.usecases.oauth import forget_discovery
from service.usecases.oauth.flow import _id_token_email
from tests.fixtures.oauth_server import OAuthServer

LOCAL = "TRIBUTARY_OAUTH_LOCAL_"


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    forget_discovery()
    yield
    forget_discovery()


def test_nothing_is_offered_without_client_ids() -> None:
    assert configured_providers(Settings(), {}) == {}


def test_google_defaults() -> None:
    settings = Settings(oauth_google_client_id="google-app", oauth_google_client_secret=SecretStr("shh"))
    google = configured_providers(settings, {})["google"]
    assert google.label == "Google"
    assert (google.client_id, google.client_secret) == ("google-app", "shh")
    assert "shh" not in repr(google)
    assert google.imap == ServerDefaults("imap.gmail.com", 993, Security.SSL)
    assert google.pop3 == ServerDefaults("pop.gmail.com", 995, Security.SSL)
    assert google.smtp == ServerDefaults("smtp.gmail.com", 587, Security.STARTTLS)
    assert "https://mail.google.com/" in google.scopes
    assert google.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.userinfo_url == "https://openidconnect.googleapis.com/v1/userinfo"
    assert "microsoft" not in configured_providers(settings, {})


def test_microsoft_defaults_and_tenant() -> None:
    settings = Settings(oauth_microsoft_client_id="ms-app", oauth_microsoft_tenant="contoso.onmicrosoft.com")
    microsoft = configured_providers(settings, {})["microsoft"]
    base = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0"
    assert microsoft.authorize_url == f"{base}/authorize"
    assert microsoft.token_url == f"{base}/token"
    assert microsoft.imap == ServerDefaults("outlook.office365.com", 993, Security.SSL)
    assert microsoft.pop3 == ServerDefaults("outlook.office365.com", 995, Security.SSL)
    assert microsoft.smtp == ServerDefaults("smtp.office365.com", 587, Security.STARTTLS)
    assert set(microsoft.scopes) >= {
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/POP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
        "openid",
        "email",
    }
    assert Settings(oauth_microsoft_client_id="ms-app").oauth_microsoft_tenant == "common"
    assert "common/oauth2" in str(configured_providers(Settings(oauth_microsoft_client_id="x"), {})["microsoft"])


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_PUBLIC_URL", "https://mail.example.com/")
    monkeypatch.setenv("TRIBUTARY_OAUTH_GOOGLE_CLIENT_ID", "from-env")
    monkeypatch.setenv("TRIBUTARY_OAUTH_MICROSOFT_TENANT", "organizations")
    settings = Settings()
    assert settings.oauth_redirect_uri == "https://mail.example.com/oauth/callback"
    assert settings.oauth_google_client_id == "from-env"
    assert settings.oauth_microsoft_tenant == "organizations"
    monkeypatch.setenv("TRIBUTARY_PUBLIC_URL", "mail.example.com")
    with pytest.raises(ValueError, match="web app's address"):
        Settings()


def test_a_custom_provider_from_the_environment(oauth_server: OAuthServer) -> None:
    environ = {
        **oauth_server.provider_env("local", "Local Test Mail"),
        LOCAL + "IMAP_HOST": "imap.example.net",
        LOCAL + "IMAP_PORT": "143",
        LOCAL + "POP3_HOST": "pop.example.net",
        LOCAL + "SMTP_HOST": "smtp.example.net",
        LOCAL + "SMTP_PORT": "465",
    }
    local = configured_providers(Settings(), environ)["local"]
    assert local.label == "Local Test Mail"
    assert local.issuer == oauth_server.issuer
    assert local.authorize_url is None  # from discovery
    assert local.client_secret == oauth_server.client.client_secret
    assert local.scopes == ("openid", "email", "offline_access", "mail")
    assert local.imap == ServerDefaults("imap.example.net", 143, Security.STARTTLS)
    assert local.pop3 == ServerDefaults("pop.example.net", 995, Security.SSL)
    assert local.smtp == ServerDefaults("smtp.example.net", 465, Security.SSL)
    # Without a client id it is not offered.
    del environ[LOCAL + "CLIENT_ID"]
    assert configured_providers(Settings(), environ) == {}


async def test_discovery_is_fetched_once_per_process(oauth_server: OAuthServer) -> None:
    settings = Settings(outbound_allow="127.0.0.0/8")
    local = configured_providers(settings, oauth_server.provider_env("local"))["local"]
    policy = OutboundPolicy.parse(["127.0.0.0/8"])
    first = await endpoints_module.endpoints_for(local, settings=settings, policy=policy)
    again = await endpoints_module.endpoints_for(local, settings=settings, policy=policy)
    assert first == again
    assert first.authorize_url == oauth_server.url("/authorize")
    assert first.token_url == oauth_server.url("/token")
    assert first.userinfo_url == oauth_server.url("/userinfo")
    assert oauth_server.requests["/.well-known/openid-configuration"] == 1


async def test_a_discovery_document_for_another_issuer_is_refused(oauth_server: OAuthServer) -> None:
    environ = oauth_server.provider_env("local")
    environ[LOCAL + "ISSUER"] = oauth_server.issuer.replace("127.0.0.1", "localhost")
    settings = Settings(outbound_allow="127.0.0.0/8")
    local = configured_providers(settings, environ)["local"]
    policy = OutboundPolicy.parse(["127.0.0.0/8", "::1/128"])
    with pytest.raises(OAuthFailed, match="discovery document is unusable"):
        await endpoints_module.endpoints_for(local, settings=settings, policy=policy)


@pytest.mark.parametrize(
    ("key", "value", "sentence"),
    [
        ("IMAP_PORT", "99999", "TRIBUTARY_OAUTH_LOCAL_IMAP_PORT must be a port number from 1 to 65535"),
        ("SMTP_PORT", "smtp", "TRIBUTARY_OAUTH_LOCAL_SMTP_PORT must be a port number"),
        ("SMTP_SECURITY", "tls-please", "TRIBUTARY_OAUTH_LOCAL_SMTP_SECURITY must be starttls or ssl"),
        ("SMTP_SECURITY", "none", "TRIBUTARY_OAUTH_LOCAL_SMTP_SECURITY must be starttls or ssl"),  # tokens need TLS
        ("IMAP_HOST", "bad host", "TRIBUTARY_OAUTH_LOCAL_IMAP_HOST is not a host name"),
        ("ISSUER", "http://idp.example.com", "TRIBUTARY_OAUTH_LOCAL_ISSUER must be an https:// address"),
        ("ISSUER", "", "TRIBUTARY_OAUTH_LOCAL_AUTHORIZE_URL is needed when TRIBUTARY_OAUTH_LOCAL_ISSUER is not set"),
    ],
)
def test_an_invalid_value_is_one_sentence_naming_the_variable(key: str, value: str, sentence: str) -> None:
    environ = {
        "TRIBUTARY_OAUTH_PROVIDERS": "local",
        LOCAL + "ISSUER": "https://idp.example.com",
        LOCAL + "CLIENT_ID": "app",
        LOCAL + "IMAP_HOST": "imap.example.com",
        LOCAL + "SMTP_HOST": "smtp.example.com",
        LOCAL + key: value,
    }
    with pytest.raises(InvalidInput) as refused:
        configured_providers(Settings(), environ)
    assert refused.value.message.startswith(sentence)
    assert refused.value.message.count(". ") == 0  # one sentence


def test_provider_names_are_checked() -> None:
    with pytest.raises(InvalidInput, match="built in"):
        configured_providers(Settings(oauth_providers="google"), {})
    with pytest.raises(InvalidInput, match="letters, digits and _"):
        configured_providers(Settings(oauth_providers="my-idp"), {})


def test_explicit_endpoints_need_no_issuer() -> None:
    environ = {
        "TRIBUTARY_OAUTH_PROVIDERS": "corp",
        "TRIBUTARY_OAUTH_CORP_AUTHORIZE_URL": "https://idp.corp.example/authorize",
        "TRIBUTARY_OAUTH_CORP_TOKEN_URL": "https://idp.corp.example/token",
        "TRIBUTARY_OAUTH_CORP_CLIENT_ID": "app",
    }
    corp = configured_providers(Settings(), environ)["corp"]
    assert (corp.label, corp.issuer, corp.userinfo_url) == ("Corp", None, None)
    assert corp.scopes == ("openid", "email", "offline_access")
    assert corp.imap is None


def _jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_the_address_from_an_id_token() -> None:
    """Microsoft's access tokens are for outlook.office.com: the address comes from the ID token."""
    assert _id_token_email({"id_token": _jwt({"email": "ann@contoso.example"})}) == "ann@contoso.example"
    assert _id_token_email({"id_token": _jwt({"preferred_username": "ann@contoso.example"})}) == "ann@contoso.example"
    assert _id_token_email({"id_token": _jwt({"preferred_username": "ann"})}) is None
    assert _id_token_email({"id_token": "not-a-jwt"}) is None
    assert _id_token_email({}) is None


def test_one_invalid_provider_leaves_the_others_offered() -> None:
    """A mistyped TRIBUTARY_OAUTH_<NAME>_* variable takes away that provider only (its sentence is
    shown on Administration); Google, Microsoft and the other custom providers stay."""
    settings = Settings(oauth_google_client_id="g-app", oauth_microsoft_client_id="m-app")
    environ = {
        "TRIBUTARY_OAUTH_PROVIDERS": "broken,local,google",
        "TRIBUTARY_OAUTH_BROKEN_ISSUER": "http://idp.example.com",
        "TRIBUTARY_OAUTH_BROKEN_CLIENT_ID": "app",
        LOCAL + "ISSUER": "https://idp.example.com",
        LOCAL + "CLIENT_ID": "app",
    }
    providers, problems = usable_providers(settings, environ)
    assert list(providers) == ["google", "microsoft", "local"]
    assert len(problems) == 2
    assert problems[0].startswith("TRIBUTARY_OAUTH_BROKEN_ISSUER must be an https:// address")
    assert "names google, which is built in" in problems[1]
    with pytest.raises(InvalidInput):  # the strict check still refuses
        configured_providers(settings, environ)


@pytest.mark.parametrize("key", ["authorization_endpoint", "token_endpoint", "userinfo_endpoint"])
async def test_discovered_endpoints_must_be_https(oauth_server: OAuthServer, key: str) -> None:
    """The https-only rule of configured endpoints holds for discovered ones (the client secret and the
    tokens go there)."""
    oauth_server.metadata_overrides[key] = "http://idp.example.com/endpoint"
    settings = Settings(outbound_allow="127.0.0.0/8")
    local = configured_providers(settings, oauth_server.provider_env("local"))["local"]
    policy = OutboundPolicy.parse(["127.0.0.0/8"])
    forget_discovery()
    with pytest.raises(OAuthFailed, match=f"names an {key} that is not an https:// address"):
        await endpoints_module.endpoints_for(local, settings=settings, policy=policy)
    forget_discovery()
