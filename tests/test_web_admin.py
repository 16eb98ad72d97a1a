"""The Administration page: only for administrators; per-domain switches, company relay (its
password write-only), limits and allowed hosts; the users list and "Add user"."""

from __future__ import annotations

import re

import httpx
from sqlmodel import select

from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain
from service.usecases.domains import get_domain_settings, list_domain_settings
from service.usecases.users import add_user, list_users
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import WebClient, csrf_token, log_in
from tests.test_web_compose import HTMX, add_account, post_compose, send_from_options, signed_in_user, text_of

DISABLED = "Your administrator turned off SMTP accounts for example.test."
RELAY_PASSWORD = "relay-pa55word-never-shown"
MEMBER = ("member@example.test", "member password long")


def domain_fields(**changes: str) -> dict[str, str]:
    """Every field of the domain form as a browser posts it with the defaults (checkboxes "on")."""
    fields = {
        "retrieval_enabled": "on",
        "smtp_accounts_enabled": "on",
        "oauth_enabled": "on",
        "relay_host": "",
        "relay_port": "",
        "relay_security": "starttls",
        "relay_username": "",
        "relay_password": "",
        "relay_verify_certificate": "on",
        "max_tasks_per_user": "",
        "max_smtp_accounts_per_user": "",
        "max_message_mb": "50",
        "allowed_hosts": "",
    }
    fields.update(changes)
    return {name: value for name, value in fields.items() if value != "off"}  # an unticked box is not sent


async def _post_domain(
    client: WebClient, domain_id: int, changes: dict[str, str], headers: dict[str, str] | None
) -> httpx.Response:
    data = {"_csrf_token": await csrf_token(client), **domain_fields(**changes)}
    return await client.post(f"/admin/domains/{domain_id}", data=data, headers=headers)


async def save(client: WebClient, domain_id: int, **changes: str) -> httpx.Response:
    return await _post_domain(client, domain_id, changes, None)


async def save_htmx(client: WebClient, domain_id: int, **changes: str) -> httpx.Response:
    return await _post_domain(client, domain_id, changes, HTMX)


async def _domain_id(db: Database) -> int:
    return (await get_domain_settings(db=db, name="example.test")).id


async def test_only_administrators_reach_the_page(web_client: WebClient, db: Database) -> None:
    assert (await web_client.get("/admin")).headers["location"] in ("/setup", "/login")
    await signed_in_user(web_client, db)
    assert (await web_client.get("/admin")).status_code == 200
    domain_id = await _domain_id(db)
    await add_user(db=db, email=MEMBER[0], password=MEMBER[1])
    web_client.cookies.clear()
    await log_in(web_client, email=MEMBER[0], password=MEMBER[1])

    page = await web_client.get("/admin")
    assert page.status_code == 403
    assert "Only administrators can open the Administration page." in page.text
    assert 'href="/admin"' not in (await web_client.get("/compose")).text
    denied_save = await save(web_client, domain_id, smtp_accounts_enabled="off")
    denied_add = await web_client.post(
        "/admin/users",
        data={
            "_csrf_token": await csrf_token(web_client),
            "email": "x@example.test",
            "password": "x" * 12,
            "is_admin": "on",
        },
    )
    assert (denied_save.status_code, denied_add.status_code) == (403, 403)
    assert (await get_domain_settings(db=db, name="example.test")).smtp_accounts_enabled
    assert [u.email for u in await list_users(db=db)] == ["admin@example.test", MEMBER[0]]


async def test_the_page_shows_each_domains_switches_and_the_users(web_client: WebClient, db: Database) -> None:
    await signed_in_user(web_client, db)
    await add_user(db=db, email="zoe@other.test", password="long enough", display_name="Zoë")
    page = await web_client.get("/admin")
    domain_id = await _domain_id(db)

    assert page.status_code == 200
    for label, name in [
        ("IMAP/POP Retrieval", "retrieval"),
        ("SMTP Accounts", "smtp"),
        ("OAuth2 sign-in (Google, Microsoft, ...)", "oauth"),
    ]:
        assert re.search(
            rf'<input type="checkbox" role="switch" class="switch" id="domain-{domain_id}-{name}"[^>]* checked',
            page.text,
        )
        assert f'<label for="domain-{domain_id}-{name}">{label}</label>' in page.text
    text = text_of(page)
    for words in (
        "example.test",
        "other.test",
        "Company relay",
        "Verify certificate",
        "Maximum message size (MB)",
        "Allowed remote hosts",
        "Retrieval task limit per user",
        "SMTP account limit per user",
    ):
        assert words in text
    assert "admin@example.test Ada Admin Administrator example.test" in text
    assert "zoe@other.test Zoë No other.test" in text


async def test_turning_smtp_accounts_off_stops_sending_through_an_account(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")

    saved = await save(web_client, await _domain_id(db), smtp_accounts_enabled="off", retrieval_enabled="off")
    assert saved.status_code == 200
    assert "Saved the settings of example.test." in saved.text
    settings = await get_domain_settings(db=db, name="example.test")
    assert (settings.retrieval_enabled, settings.smtp_accounts_enabled) == (False, False)

    compose = await web_client.get("/compose")
    assert f"{DISABLED[:-1]}, and there is no company relay" in text_of(compose)
    refused = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"})
    assert refused.status_code == 400
    assert DISABLED in text_of(refused)
    assert server.received == []

    await save(web_client, await _domain_id(db))
    sent = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"})
    assert "Message sent" in text_of(sent)


async def test_the_relay_password_is_write_only(web_client: WebClient, db: Database, secret_box: SecretBox) -> None:
    await signed_in_user(web_client, db)
    domain_id = await _domain_id(db)
    relay = {"relay_host": "Relay.Example.TEST", "relay_username": "relay-user", "relay_security": "ssl"}

    missing = await save(web_client, domain_id, **relay)
    assert missing.status_code == 400
    assert "Enter the relay&#39;s password" in missing.text
    saved = await save(web_client, domain_id, relay_password=RELAY_PASSWORD, **relay)
    assert saved.status_code == 200
    page = await web_client.get("/admin")
    for response in (saved, page):
        assert RELAY_PASSWORD not in response.text
        assert "A password is stored; it is never shown." in response.text
    async with db.read() as session:
        stored = (await session.exec(select(Domain.relay_password_encrypted))).one()
    assert stored is not None
    assert RELAY_PASSWORD not in stored
    assert secret_box.decrypt(stored) == RELAY_PASSWORD
    settings = await get_domain_settings(db=db, name="example.test")
    assert (settings.relay_host, settings.relay_port, settings.relay_username) == (
        "relay.example.test",
        465,
        "relay-user",
    )

    kept = await save(web_client, domain_id, relay_port="2465", **relay)  # no password typed: the stored one stays
    assert kept.status_code == 200
    assert (await get_domain_settings(db=db, name="example.test")).has_relay_password
    mistake = await save(web_client, domain_id, relay_password="typed-then-lost", relay_port="99999", **relay)
    assert mistake.status_code == 400
    assert "typed-then-lost" not in mistake.text
    assert "The relay password you typed was not kept: type it again." in mistake.text
    assert 'value="Relay.Example.TEST"' in mistake.text  # as typed

    await save(web_client, domain_id, relay_host="")
    cleared = await get_domain_settings(db=db, name="example.test")
    assert (cleared.relay_host, cleared.has_relay_password) == (None, False)


async def test_limits_and_allowed_hosts_are_checked_and_saved(web_client: WebClient, db: Database) -> None:
    await signed_in_user(web_client, db)
    domain_id = await _domain_id(db)
    for field, value, words in [
        ("max_tasks_per_user", "three", "Retrieval tasks per user must be a whole number"),
        ("max_message_mb", "lots", "The maximum message size must be a number of MB"),
        ("max_message_mb", "0.0001", "at least 1 KB"),
        ("relay_port", "x", "The relay&#39;s port must be a number"),
        ("allowed_hosts", "mail.example.com\nnot a host!", "&#39;not a host!&#39; is not a host name"),
    ]:
        response = await save(web_client, domain_id, **{field: value, "relay_host": "relay.example.test"})
        assert response.status_code == 400, field
        assert words in response.text, field
        assert 'role="alert"' in response.text

    saved = await save(
        web_client,
        domain_id,
        max_tasks_per_user="3",
        max_smtp_accounts_per_user="0",
        max_message_mb="0.5",
        allowed_hosts="Mail.Example.COM\n\n10.1.2.0/24\n*.corp.example\n192.0.2.7\nmail.example.com\n",
    )
    assert saved.status_code == 200
    [settings] = await list_domain_settings(db=db)
    assert (settings.max_tasks_per_user, settings.max_smtp_accounts_per_user, settings.max_message_bytes) == (
        3,
        0,
        512 * 1024,
    )
    assert settings.allowed_hosts == ("mail.example.com", "10.1.2.0/24", "*.corp.example", "192.0.2.7")
    assert 'value="0.5"' in saved.text


async def test_users_with_the_company_relay_send_as_themselves(
    web_client: WebClient, db: Database, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    await signed_in_user(web_client, db)
    await save(
        web_client,
        await _domain_id(db),
        relay_host=server.host,
        relay_port=str(server.port),
        relay_security="none",
        relay_verify_certificate="off",
    )
    page = await web_client.get("/compose")
    assert send_from_options(page.text) == [("relay", "Ada Admin <admin@example.test>", True)]
    sent = await post_compose(web_client, {"send_from": "relay", "to": "bob@example.test", "subject": "Via relay"})
    assert "Message sent" in text_of(sent)
    assert server.received[0].mail_from == "admin@example.test"


async def test_add_user_form(web_client: WebClient, db: Database) -> None:
    await signed_in_user(web_client, db)

    async def add(htmx: bool = False, **fields: str) -> httpx.Response:
        data = {"_csrf_token": await csrf_token(web_client), "email": "", "display_name": "", "password": "", **fields}
        return await web_client.post("/admin/users", data=data, headers=HTMX if htmx else None)

    weak = await add(email="new@example.test", display_name="Newbie", password="short")
    assert weak.status_code == 400
    assert "at least 8 characters" in weak.text
    assert 'value="new@example.test"' in weak.text
    assert 'value="Newbie"' in weak.text
    added = await add(email="New@Partner.test", display_name="Nina", password="secret password 1", is_admin="on")
    assert added.status_code == 200
    assert "Added new@partner.test as an administrator." in added.text
    assert "secret password 1" not in added.text
    duplicate = await add(htmx=True, email="new@partner.test", password="another password")
    assert duplicate.status_code == 200  # htmx swaps only 2xx answers in
    assert "<html" not in duplicate.text
    assert "A user with the address new@partner.test already exists." in duplicate.text
    assert 'id="domains" class="admin-section" aria-labelledby="domains-title" hx-swap-oob="true"' in duplicate.text
    assert [(u.email, u.is_admin, u.domain) for u in await list_users(db=db)] == [
        ("admin@example.test", True, "example.test"),
        ("new@partner.test", True, "partner.test"),
    ]
    assert "partner.test" in text_of(await web_client.get("/admin"))


async def test_saving_with_htmx_answers_with_the_domains_card(web_client: WebClient, db: Database) -> None:
    await signed_in_user(web_client, db)
    domain_id = await _domain_id(db)
    response = await save_htmx(web_client, domain_id, retrieval_enabled="off")
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<section class="card domain-card" id="domain-{domain_id}"')
    assert "Saved the settings of example.test." in response.text
    mistake = await save_htmx(web_client, domain_id, max_message_mb="huge")
    assert mistake.status_code == 200
    assert 'role="alert"' in mistake.text
    assert 'value="huge"' in mistake.text
    missing = await save(web_client, 9999)
    assert missing.status_code == 404
