"""A form error keeps the typed password for the next submit, on the New/Edit Retrieval Task form
(issue 17, "rough edges"): after a typo in the port, the form comes back with an empty password
input marked "(kept from your last try)"; submitted empty, the kept password is saved (and used by
Test Connection). The password never appears in a page, and the session file holds it only
encrypted. Against the Dovecot fixture, so the saved password is shown to sign in."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from sqlmodel import select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.settings_web import htmx_post, input_value, task_fields, text_of
from web.app import create_app

KEPT = "(kept from your last try)"
ASK = "Enter the password for the remote mailbox."
PORT_ERROR = "The port must be a number from 1 to 65535."


@pytest.fixture
def web_app(settings: Settings, dovecot: DovecotServer) -> Litestar:
    """The app, trusting the Dovecot fixture's self-signed certificate."""
    return create_app(settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path}))


class Pages:
    """Every answer the test got, so it can say none of them shows a password."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.seen: list[httpx.Response] = []

    async def post(self, path: str, fields: dict[str, str]) -> httpx.Response:
        response = await post_form(self.client, path, fields)
        self.seen.append(response)
        return response

    async def htmx(self, path: str, fields: dict[str, str] | None = None) -> httpx.Response:
        response = await htmx_post(self.client, path, fields)
        self.seen.append(response)
        return response

    async def get(self, path: str) -> httpx.Response:
        response = await self.client.get(path)
        self.seen.append(response)
        return response

    def assert_never_shown(self, *passwords: str) -> None:
        assert self.seen
        for response in self.seen:
            for password in passwords:
                assert password not in response.text, f"{response.request.url} shows the password"


async def _stored_password(db: Database, secret_box: SecretBox, task_id: int) -> str:
    async with db.read() as session:
        task = (await session.exec(select(RetrievalTask).where(RetrievalTask.id == task_id))).one()
    assert task.password_encrypted is not None
    return secret_box.decrypt(task.password_encrypted)


def _task_id(saved: httpx.Response) -> int:
    assert saved.status_code == 303, text_of(saved.text)
    return int(saved.headers["location"].rsplit("-", 1)[1])


def _session_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in Path(settings.data_dir, "sessions").iterdir() if p.is_file())


async def _signs_in(pages: Pages, task_id: int) -> bool:
    """Test Connection of the saved task (it decrypts the stored password and signs in with it)."""
    return "Sign in: passed" in text_of((await pages.htmx(f"/settings/retrieval/{task_id}/test")).text)


async def test_a_typo_in_the_port_does_not_cost_the_password(
    web_client: WebClient,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    dovecot: DovecotServer,
    mail_user: MailUser,
) -> None:
    await set_up_admin(web_client)
    pages = Pages(web_client)
    typo = await pages.post("/settings/retrieval/new", task_fields(dovecot, mail_user, port="99500"))
    assert typo.status_code == 400
    assert PORT_ERROR in text_of(typo.text)
    assert f'placeholder="{KEPT}"' in typo.text
    assert input_value(typo.text, "task-password") == ""
    assert mail_user.password.encode() not in _session_bytes(settings)  # kept, but encrypted

    saved = await pages.post("/settings/retrieval/new", task_fields(dovecot, mail_user, password=""))
    task_id = _task_id(saved)
    assert await _stored_password(db, secret_box, task_id) == mail_user.password
    assert await _signs_in(pages, task_id)

    # Saved: the kept password is forgotten, so the next New form asks for one again.
    again = await pages.post("/settings/retrieval/new", task_fields(dovecot, mail_user, name="Again", password=""))
    assert again.status_code == 400
    assert ASK in text_of(again.text)
    assert KEPT not in again.text
    pages.assert_never_shown(mail_user.password)


async def test_the_edit_form_keeps_its_own_password(
    web_client: WebClient, db: Database, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    pages = Pages(web_client)
    other = dovecot.add_user(f"moved-{mail_user.email}", "moved-Mailbox-Secret-7")
    task_id = _task_id(await pages.post("/settings/retrieval/new", task_fields(dovecot, mail_user)))
    edit = f"/settings/retrieval/{task_id}/edit"
    moved = {"username": other.email, "password": other.password}

    typo = await pages.post(edit, task_fields(dovecot, mail_user, **moved, port="x"))
    assert typo.status_code == 400
    assert f'placeholder="{KEPT}"' in typo.text
    assert await _stored_password(db, secret_box, task_id) == mail_user.password  # nothing saved yet
    # The edit form's kept password is not the New form's.
    new = await pages.post("/settings/retrieval/new", task_fields(dovecot, other, name="Other", password=""))
    assert ASK in text_of(new.text)

    fixed = await pages.post(edit, task_fields(dovecot, mail_user, **{**moved, "password": ""}))
    assert _task_id(fixed) == task_id
    assert await _stored_password(db, secret_box, task_id) == other.password
    assert await _signs_in(pages, task_id)

    # Nothing kept any more: an empty password keeps the stored one, as before.
    assert _task_id(await pages.post(edit, task_fields(dovecot, other, password=""))) == task_id
    assert await _stored_password(db, secret_box, task_id) == other.password
    # A password typed on the next submit replaces a kept one.
    await pages.post(edit, task_fields(dovecot, mail_user, port="x", password="typed-first-1"))
    assert _task_id(await pages.post(edit, task_fields(dovecot, mail_user))) == task_id
    assert await _stored_password(db, secret_box, task_id) == mail_user.password
    pages.assert_never_shown(mail_user.password, other.password, "typed-first-1")


async def test_test_connection_uses_the_kept_password(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    pages = Pages(web_client)
    await pages.post("/settings/retrieval/new", task_fields(dovecot, mail_user, port="0"))
    tested = await pages.htmx("/settings/retrieval/test", task_fields(dovecot, mail_user, password=""))
    assert "Sign in: passed" in text_of(tested.text)

    # Without htmx the form comes back with the steps, the password still kept (not echoed).
    plain = await pages.post("/settings/retrieval/test", task_fields(dovecot, mail_user, password=""))
    assert "Sign in: passed" in text_of(plain.text)
    assert f'placeholder="{KEPT}"' in plain.text
    pages.assert_never_shown(mail_user.password)
