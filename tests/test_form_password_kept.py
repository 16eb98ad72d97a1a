"""A form error keeps the typed password for the next submit (issue 17, "rough edges"): the
New/Edit SMTP Account form shown again after a mistake has an empty password input marked
"(kept from your last try)"; submitted empty, the kept password is used. The password never
appears in a page, and the session file holds it only encrypted."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar import Litestar
from sqlmodel import select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import SmtpAccount
from tests.fixtures.smtp import SmtpServer, StartSmtpServer
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.settings_web import htmx_post, input_value, text_of
from web.app import create_app
from web.support import pending_secret

SMTP_PASSWORD = "smtp-Kept-Secret-42"
OTHER_PASSWORD = "another-Smtp-Secret-9"
KEPT = "(kept from your last try)"
ASK = "Enter the password for this SMTP account, or turn authentication off."


@pytest.fixture
def smtp(smtp_server: StartSmtpServer) -> SmtpServer:
    return smtp_server(mode="starttls", users={"alice": SMTP_PASSWORD, "bob": OTHER_PASSWORD})


@pytest.fixture
def web_app(settings: Settings, smtp: SmtpServer) -> Litestar:
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
        "is_active": "on",
    }
    fields.update(overrides)
    return fields


async def _stored_password(db: Database, secret_box: SecretBox) -> str:
    async with db.read() as session:
        [account] = (await session.exec(select(SmtpAccount))).all()
    assert account.password_encrypted is not None
    return secret_box.decrypt(account.password_encrypted)


def _session_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in Path(settings.data_dir, "sessions").iterdir() if p.is_file())


async def test_a_typo_in_the_port_does_not_cost_the_password(
    web_client: WebClient, db: Database, secret_box: SecretBox, settings: Settings, smtp: SmtpServer
) -> None:
    await set_up_admin(web_client)
    typo = await post_form(web_client, "/settings/smtp/new", _fields(smtp, port="5870000"))
    assert typo.status_code == 400
    assert "The port must be a number from 1 to 65535." in text_of(typo.text)
    assert f'placeholder="{KEPT}"' in typo.text
    assert input_value(typo.text, "smtp-password") == ""
    assert SMTP_PASSWORD not in typo.text
    assert SMTP_PASSWORD.encode() not in _session_bytes(settings)  # kept encrypted

    saved = await post_form(web_client, "/settings/smtp/new", _fields(smtp, password=""))
    assert saved.status_code == 303, text_of(saved.text)
    assert await _stored_password(db, secret_box) == SMTP_PASSWORD
    account_id = int(saved.headers["location"].rsplit("-", 1)[1])
    checked = await htmx_post(web_client, f"/settings/smtp/{account_id}/test")
    assert "Sign in: passed" in text_of(checked.text)

    # Saved: the kept password is forgotten, so the next new form asks for one again.
    again = await post_form(
        web_client, "/settings/smtp/new", _fields(smtp, email_address="alice2@example.test", password="")
    )
    assert again.status_code == 400
    assert ASK in text_of(again.text)
    assert KEPT not in again.text


async def test_the_kept_password_belongs_to_its_form_and_a_typed_one_wins(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp: SmtpServer
) -> None:
    await set_up_admin(web_client)
    assert (await post_form(web_client, "/settings/smtp/new", _fields(smtp))).status_code == 303
    async with db.read() as session:
        [account] = (await session.exec(select(SmtpAccount))).all()
    edit = f"/settings/smtp/{account.id}/edit"

    typo = await post_form(web_client, edit, _fields(smtp, port="x", username="bob", password=OTHER_PASSWORD))
    assert typo.status_code == 400
    assert f'placeholder="{KEPT}"' in typo.text
    assert OTHER_PASSWORD not in typo.text
    # The edit form's kept password is not the new form's.
    new = await post_form(web_client, "/settings/smtp/new", _fields(smtp, email_address="b@example.test", password=""))
    assert ASK in text_of(new.text)
    assert await _stored_password(db, secret_box) == SMTP_PASSWORD  # nothing saved yet

    fixed = await post_form(web_client, edit, _fields(smtp, username="bob", password=""))
    assert fixed.status_code == 303, text_of(fixed.text)
    assert await _stored_password(db, secret_box) == OTHER_PASSWORD

    # A password typed on the next submit replaces the kept one.
    await post_form(web_client, edit, _fields(smtp, port="x", password="typed-first-1"))
    assert (await post_form(web_client, edit, _fields(smtp, password=SMTP_PASSWORD))).status_code == 303
    assert await _stored_password(db, secret_box) == SMTP_PASSWORD


async def test_test_connection_uses_the_kept_password(web_client: WebClient, smtp: SmtpServer) -> None:
    await set_up_admin(web_client)
    await post_form(web_client, "/settings/smtp/new", _fields(smtp, port="0"))
    tested = await htmx_post(web_client, "/settings/smtp/test", _fields(smtp, password=""))
    assert "Sign in: passed" in text_of(tested.text)


async def test_a_kept_password_expires(
    web_client: WebClient, db: Database, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await set_up_admin(web_client)
    now = [1_000_000.0]
    monkeypatch.setattr(pending_secret, "clock", lambda: now[0])
    assert (await post_form(web_client, "/settings/smtp/new", _fields(smtp, port="x"))).status_code == 400
    now[0] += pending_secret.KEEP_SECONDS + 1
    late = await post_form(web_client, "/settings/smtp/new", _fields(smtp, password=""))
    assert late.status_code == 400
    assert ASK in text_of(late.text)
    assert KEPT not in late.text
