"""Helpers for the Settings page tests: posting like htmx does, the retrieval task form's fields
for a Dovecot mailbox, signing in as a second user, and reading pages."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import httpx

from service.persistence.database import Database
from service.usecases.users import add_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient, csrf_token, log_in, post_form

OTHER_EMAIL = "bob@example.test"
OTHER_PASSWORD = "another long password"


async def htmx_post(client: WebClient, path: str, fields: Mapping[str, str] | None = None) -> httpx.Response:
    """A POST the way htmx sends it: the HX-Request header and the CSRF token in X-CSRFToken."""
    token = await csrf_token(client)
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    return await client.post(path, data=dict(fields or {}), headers=headers)


def task_fields(dovecot: DovecotServer, mailbox: MailUser, **overrides: str) -> dict[str, str]:
    """The New Retrieval Task form filled in for a POP3 mailbox over SSL/TLS, run manually."""
    fields = {
        "name": "Remote",
        "protocol": "pop3",
        "host": "127.0.0.1",
        "security": "ssl",
        "port": str(dovecot.pop3s_port),
        "username": mailbox.email,
        "password": mailbox.password,
        "verify_certificate": "on",
        "timeout_seconds": "10",
        "method": "manual",
        "folder_transfer": "subfolders",
        "destination_folder": "",
        "leave_on_server": "on",
        "apply_filters": "on",
    }
    fields.update(overrides)
    return fields


async def sign_in_as_other_user(client: WebClient, db: Database) -> int:
    """Sign out and sign in as a second user of the same domain; returns their id."""
    user = await add_user(db=db, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    await post_form(client, "/logout", {})
    response = await log_in(client, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    assert response.status_code == 303, response.text
    return user.id


def text_of(page: str) -> str:
    """The page's text: tags dropped, entities decoded, whitespace collapsed (what a reader sees)."""
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(without_tags).split())


def input_value(page: str, element_id: str) -> str | None:
    """The value attribute of the input with this id (None when it has none)."""
    match = re.search(rf'<input id="{re.escape(element_id)}"[^>]*>', page)
    assert match is not None, f"no input #{element_id}"
    value = re.search(r'\svalue="([^"]*)"', match.group(0))
    return html.unescape(value.group(1)) if value else None
