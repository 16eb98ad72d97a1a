"""Settings, Connectivity, SMTP Accounts card, through the web face against a real aiosmtpd server:
New SMTP Account with Test Connection before saving, Edit with a write-only password, Test
Connection of a saved account, Delete, and another user's accounts."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from sqlmodel import select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import SmtpAccount
from tests.fixtures.smtp import SmtpServer, StartSmtpServer
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.settings_web import htmx_post, input_value, sign_in_as_other_user, text_of
from web.app import create_app

SMTP_PASSWORD = "smtp-Secret-77"


@pytest.fixture
def smtp(smtp_server: StartSmtpServer) -> SmtpServer:
    return smtp_server(mode="starttls", users={"alice": SMTP_PASSWORD})


@pytest.fixture
def web_app(settings: Settings, smtp: SmtpServer) -> Litestar:
    """The app, trusting the SMTP fixture's self-signed certificate (as a company CA would be)."""
    return create_app(settings.model_copy(update={"extra_ca_file": smtp.cert_pem_path}))


def _fields(smtp: SmtpServer, **overrides: str) -> dict[str, str]:
    fields = {
        "display_name": "Alice Example",
        "email_address": "alice@example.test",
        "host": "127.0.0.1",
        "security": "starttls",
        "port": str(smtp.port),
        "auth_required": "on",
        "username": "alice",
        "password": SMTP_PASSWORD,
        "verify_certificate": "on",
        "timeout_seconds": "10",
        "signature_text": "-- \nAlice",
        "save_copy_in_sent": "on",
        "is_active": "on",
    }
    fields.update(overrides)
    return fields


async def _only_account(db: Database) -> SmtpAccount:
    async with db.read() as session:
        [account] = (await session.exec(select(SmtpAccount))).all()
    return account


async def test_an_account_is_tested_before_saving_then_saved_edited_tested_and_deleted(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp: SmtpServer
) -> None:
    await set_up_admin(web_client)
    cards = await web_client.get("/settings/connectivity")
    assert "SMTP Accounts" in cards.text
    assert '<button type="submit" class="button button-primary">New SMTP Account</button>' in cards.text

    form = await web_client.get("/settings/smtp/new")
    for field_id, label in [
        ("smtp-display-name", "Display name"),
        ("smtp-email", "Email address"),
        ("smtp-host", "Server address"),
        ("smtp-security", "Security"),
        ("smtp-port", "Port"),
        ("smtp-auth", "Use authentication"),
        ("smtp-username", "Username"),
        ("smtp-password", "Password"),
        ("smtp-verify", "Verify certificate"),
        ("smtp-timeout", "Connection timeout (seconds)"),
        ("smtp-signature", "Signature"),
        ("smtp-save-sent", "Save a copy in Sent"),
        ("smtp-rate", "Send rate (messages per minute)"),
        ("smtp-default", "Default From address"),
    ]:
        assert f'<label for="{field_id}">{label}</label>' in form.text
    assert input_value(form.text, "smtp-port") == "587"

    fields = _fields(smtp)
    tested = await htmx_post(web_client, "/settings/smtp/test", fields)
    shown = text_of(tested.text)
    assert "Test Connection succeeded" in shown
    for step in ["Connect: passed", "STARTTLS: passed", "Sign in: passed"]:
        assert step in shown
    wrong = await htmx_post(web_client, "/settings/smtp/test", {**fields, "password": "wrong"})
    assert "Test Connection failed." in text_of(wrong.text)
    assert "Sign in: failed" in text_of(wrong.text)

    saved = await post_form(web_client, "/settings/smtp/new", fields)
    assert saved.status_code == 303, text_of(saved.text)
    account = await _only_account(db)
    assert saved.headers["location"] == f"/settings/connectivity#smtp-{account.id}"
    page = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Saved the SMTP account Alice Example <alice@example.test>." in page
    assert "signs in as alice" in page
    assert "Not used yet" in page

    edit = await web_client.get(f"/settings/smtp/{account.id}/edit")
    assert input_value(edit.text, "smtp-password") == ""
    assert SMTP_PASSWORD not in edit.text
    renamed = await post_form(
        web_client, f"/settings/smtp/{account.id}/edit", {**fields, "display_name": "Alice A.", "password": ""}
    )
    assert renamed.status_code == 303
    stored = await _only_account(db)
    assert stored.display_name == "Alice A."
    assert stored.password_encrypted is not None
    assert secret_box.decrypt(stored.password_encrypted) == SMTP_PASSWORD

    checked = await htmx_post(web_client, f"/settings/smtp/{account.id}/test")
    assert "Sign in: passed" in text_of(checked.text)
    plain = await post_form(web_client, f"/settings/smtp/{account.id}/test", {})
    assert plain.status_code == 200
    assert "Sign in: passed" in text_of(plain.text)
    assert f'id="smtp-{account.id}"' in plain.text
    for response in (tested, saved, edit, checked, plain):
        assert SMTP_PASSWORD not in response.text

    deleted = await post_form(web_client, f"/settings/smtp/{account.id}/delete", {})
    assert deleted.status_code == 303
    page = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Deleted the SMTP account" in page
    assert "No SMTP accounts yet" in page


async def test_smtp_mistakes_are_inline_and_other_users_accounts_are_not_found(
    web_client: WebClient, db: Database, smtp: SmtpServer
) -> None:
    await set_up_admin(web_client)
    bad = await post_form(
        web_client,
        "/settings/smtp/new",
        _fields(smtp, email_address="not an address", port="x", timeout_seconds="1", password=""),
    )
    assert bad.status_code == 400
    for field_id in ["smtp-email", "smtp-port", "smtp-timeout", "smtp-password"]:
        assert re.search(rf'<p class="field-error" id="{field_id}-error">', bad.text), field_id
    assert "Enter the password for this SMTP account, or turn authentication off." in bad.text

    assert (await post_form(web_client, "/settings/smtp/new", _fields(smtp))).status_code == 303
    duplicate = await post_form(web_client, "/settings/smtp/new", _fields(smtp))
    assert duplicate.status_code == 400
    assert '<p class="field-error" id="smtp-email-error">You already have an SMTP account' in duplicate.text

    account = await _only_account(db)
    await sign_in_as_other_user(web_client, db)
    assert (await web_client.get(f"/settings/smtp/{account.id}/edit")).status_code == 404
    for action in ["test", "delete", "edit", "edit/test"]:
        fields = _fields(smtp) if "edit" in action else {}
        assert (await post_form(web_client, f"/settings/smtp/{account.id}/{action}", fields)).status_code == 404
    assert "No SMTP accounts yet" in (await web_client.get("/settings/connectivity")).text
    assert (await _only_account(db)).display_name == "Alice Example"
