"""Set-up from the address (issue 18) through its faces: GET /api/v1/discover?email= and
`tributary discover EMAIL --json`, against the local DNS server of tests/fixtures/discovery.py."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import update

from service.config import Settings
from service.persistence.database import Database
from service.persistence.tables import Domain
from service.usecases.discovery import LOOKUPS_PER_MINUTE
from service.usecases.users import add_user
from tests.cli_runner import TRIBUTARY, cli_environment
from tests.fixtures.discovery import Zone
from tests.fixtures.webapp import WebClient, set_up_admin
from tests.test_api import ok

ADDRESS = "ada@example.test"


@pytest.fixture
def settings(settings: Settings, dns_zone: Zone) -> Settings:
    """The test's settings, asking the local DNS server; Google sign-in configured."""
    return settings.model_copy(
        update={
            "discovery_nameservers": dns_zone.nameservers,
            "discovery_timeout_seconds": 4,
            "oauth_google_client_id": "test-client.apps.example",
        }
    )


def discover_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_environment(settings)
    env["TRIBUTARY_DISCOVERY_NAMESERVERS"] = settings.discovery_nameservers
    env["TRIBUTARY_OAUTH_GOOGLE_CLIENT_ID"] = settings.oauth_google_client_id
    return subprocess.run(
        [TRIBUTARY, "discover", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# -- the API --------------------------------------------------------------------------------------------


async def test_the_api_answers_the_built_in_table_with_the_sign_in_it_offers(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    body = ok(await web_client.get("/api/v1/discover", params={"email": "someone@gmail.com"}))
    assert body["found"] is True
    assert body["source"] == "built-in"
    assert body["provider"] == "Gmail"
    assert body["imap"] == {
        "protocol": "imap", "host": "imap.gmail.com", "port": 993, "security": "ssl", "username": "someone@gmail.com",
        "source": "built-in", "where": "Gmail", "guess": False, "oauth2_only": False,
    }  # fmt: skip
    assert body["smtp"]["host"] == "smtp.gmail.com"
    assert body["oauth2"] == {"required": True, "provider": "google", "offered": True, "label": "Google"}


async def test_the_api_does_not_offer_a_sign_in_the_domain_turned_off(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    async with db.write() as session:
        await session.exec(update(Domain).values(oauth_enabled=False))
    body = ok(await web_client.get("/api/v1/discover", params={"email": "someone@gmail.com"}))
    assert body["oauth2"] == {"required": True, "provider": "google", "offered": False, "label": None}


async def test_the_api_finds_srv_records_and_says_where(web_client: WebClient, dns_zone: Zone) -> None:
    dns_zone.add("_imaps._tcp.example.test", "SRV", "0 1 993 imap.example.test.")
    dns_zone.add("_submission._tcp.example.test", "SRV", "0 1 587 smtp.example.test.")
    dns_zone.add("imap.example.test", "A", "127.0.0.1")
    dns_zone.add("smtp.example.test", "A", "127.0.0.1")
    await set_up_admin(web_client)
    body = ok(await web_client.get("/api/v1/discover", params={"email": ADDRESS}))
    assert body["source"] == "dns-srv"
    assert body["message"] == "Found in the domain's DNS SRV records."
    assert (body["imap"]["host"], body["imap"]["port"], body["imap"]["security"]) == ("imap.example.test", 993, "ssl")
    assert body["imap"]["where"] == "_imaps._tcp.example.test"
    assert (body["smtp"]["port"], body["smtp"]["security"]) == (587, "starttls")
    assert body["pop3"] is None
    assert body["oauth2"] is None


async def test_the_api_marks_the_mx_guess(web_client: WebClient, dns_zone: Zone) -> None:
    dns_zone.add("example.test", "MX", "10 mail.example.test.")
    dns_zone.add("mail.example.test", "A", "127.0.0.1")
    await set_up_admin(web_client)
    body = ok(await web_client.get("/api/v1/discover", params={"email": ADDRESS}))
    assert body["source"] == "mx-guess"
    assert body["guess"] is True
    assert body["imap"]["guess"] is True
    assert "guess" in body["message"]


@pytest.mark.parametrize("email", ["ada@example.test\r\nBcc: eve@example.test", "", "nobody", "ada@exa mple.test"])
async def test_the_api_refuses_an_address_that_is_not_one(web_client: WebClient, dns_zone: Zone, email: str) -> None:
    await set_up_admin(web_client)
    response = await web_client.get("/api/v1/discover", params={"email": email})
    assert response.status_code == 400
    assert response.json()["error"]
    assert dns_zone.asked == []


async def test_the_api_needs_a_signed_in_user(web_client: WebClient, dns_zone: Zone) -> None:
    response = await web_client.get("/api/v1/discover", params={"email": ADDRESS})
    assert response.status_code == 401
    assert dns_zone.asked == []


async def test_the_openapi_document_describes_discover(web_client: WebClient) -> None:
    schema = ok(await web_client.get("/api/v1/schema/openapi.json"))
    operation = schema["paths"]["/api/v1/discover"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"email"}
    assert {"200", "400", "401"} <= set(operation["responses"])


# -- the CLI --------------------------------------------------------------------------------------------


def test_the_cli_prints_what_was_found_and_where_as_json(settings: Settings, dns_zone: Zone) -> None:
    dns_zone.add("_imaps._tcp.example.test", "SRV", "0 1 993 imap.example.test.")
    dns_zone.add("imap.example.test", "A", "127.0.0.1")
    result = discover_cli(settings, ADDRESS, "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["source"] == "dns-srv"
    assert body["imap"]["host"] == "imap.example.test"
    assert body["imap"]["source"] == "dns-srv"
    assert body["smtp"] is None


def test_the_cli_says_it_in_words_and_names_the_sign_in(settings: Settings) -> None:
    result = discover_cli(settings, "someone@outlook.com")
    assert result.returncode == 0, result.stderr
    assert "Found in Tributary's list of large providers (Outlook.com / Microsoft 365)." in result.stdout
    assert "IMAP  outlook.office365.com:993 SSL/TLS (from built-in" in result.stdout
    assert "SMTP  smtp.office365.com:587 STARTTLS" in result.stdout
    assert "needs OAuth2 sign-in, which this server does not offer" in result.stdout


async def test_the_cli_with_a_user_takes_their_domain(settings: Settings, db: Database, dns_zone: Zone) -> None:
    dns_zone.add("example.test", "MX", "10 aspmx.l.google.com.")
    await add_user(db=db, email=ADDRESS, password="correct horse battery staple")
    result = discover_cli(settings, "team@example.test", "--user", ADDRESS, "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert (body["source"], body["provider"]) == ("mx", "Gmail")
    assert body["imap"]["where"] == "aspmx.l.google.com"
    assert body["oauth2"] == {"required": True, "provider": "google", "offered": True, "label": "Google"}
    unknown = discover_cli(settings, "team@example.test", "--user", "nobody@example.test")
    assert unknown.returncode == 1
    assert unknown.stderr.strip()


def test_the_cli_refuses_a_line_break_in_the_address(settings: Settings, dns_zone: Zone) -> None:
    result = discover_cli(settings, "ada@example.test\nBcc: eve@example.test")
    assert result.returncode == 1
    assert result.stderr.strip() == "An email address cannot contain line breaks or control characters."
    assert dns_zone.asked == []


async def test_the_api_limits_look_ups_per_user(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    for _ in range(LOOKUPS_PER_MINUTE):
        ok(await web_client.get("/api/v1/discover", params={"email": "someone@gmail.com"}))
    response = await web_client.get("/api/v1/discover", params={"email": "someone@gmail.com"})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"].startswith(f"You can look up addresses {LOOKUPS_PER_MINUTE} times a minute.")
