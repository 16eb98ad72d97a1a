"""Header injection through every face that writes a header (issue 14), judged on the bytes the
aiosmtpd server received: no injected header line in any part, no extra recipient.

Received values (reply subject, the sender's display name, forwarded file names,
/compose?to= links, a stored account name) are cleaned and the message goes out;
typed values (form and JSON API) are refused with one sentence, nothing sent.
"""

from __future__ import annotations

import base64
import html
import re
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import quote

import pytest

from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import SmtpAccount
from service.usecases import sending
from tests.fixtures.smtp import ReceivedMessage, StartSmtpServer
from tests.fixtures.webapp import WebClient, post_form
from tests.test_api import api, ok
from tests.test_replies import deliver
from tests.test_web_compose import add_account, parsed, post_compose, signed_in_user, text_of

ONCE = "=?utf-8?q?Quarterly=0D=0AX-Injected:_yes=0D=0ABcc:_attacker@evil.test?="
# encoded twice: the stored message decodes to ONCE, which the email package would decode again
TWICE = "=?utf-8?q?" + ONCE.replace("=", "=3D").replace("?", "=3F").replace("_", "=5F") + "?="
CLEANED = "Quarterly X-Injected: yes Bcc: attacker@evil.test"
REFUSED_SUBJECT = "The subject cannot contain line breaks or other control characters."


def _original(subject: str, *, sender: str = "Bob <bob@example.test>", filename: str | None = None) -> bytes:
    head = f"From: {sender}\r\nTo: Ada <ada@home.test>\r\nSubject: {subject}\r\nMessage-ID: <q4@example.test>\r\n"
    if filename is None:
        return (head + "\r\nSee the figures.\r\n").encode()
    return (
        head + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the figures.\r\n"
        f'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    ).encode()


def _field(page: str, name: str) -> str:
    match = re.search(rf'<input id="compose-{name}" name="{name}" type="text" value="([^"]*)"', page)
    assert match is not None, name
    return html.unescape(match.group(1))


def assert_not_injected(received: ReceivedMessage, recipients: list[str]) -> None:
    """Exactly the expected envelope, and no part of the message with a header the sender did not set."""
    assert sorted(received.rcpt_tos) == sorted(recipients)
    assert b"\r\nX-Injected:" not in received.data
    assert b"\r\nBcc:" not in received.data
    message = message_from_bytes(received.data, policy=policy.compat32)
    for part in message.walk():
        assert not {"x-injected", "bcc"} & {name.lower() for name in part}, part.keys()
    assert not message.defects


@pytest.mark.parametrize("subject", [ONCE, TWICE])
async def test_reply_to_a_subject_that_decodes_to_line_breaks_sends_one_subject_line(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer, subject: str
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    message_id = await deliver(db, user_id, _original(subject, sender=f"{TWICE} <bob@example.test>"))

    page = await web_client.get(f"/compose?reply={message_id}")
    assert page.status_code == 200
    assert _field(page.text, "subject") == f"Re: {CLEANED}"
    assert _field(page.text, "to") == f'"{CLEANED}" <bob@example.test>'

    fields = {"to": _field(page.text, "to"), "subject": _field(page.text, "subject"), "body": "Thanks."}
    sent = await post_compose(web_client, {"send_from": str(account), "reply_to": str(message_id), **fields})
    assert "Message sent" in text_of(sent), text_of(sent)
    [received] = server.received
    assert_not_injected(received, ["bob@example.test"])
    assert parsed(received.data)["Subject"] == f"Re: {CLEANED}"


async def test_forwarded_attachment_names_that_decode_to_line_breaks_are_cleaned(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    message_id = await deliver(db, user_id, _original("Figures", filename=f"{TWICE}.pdf"))

    page = await web_client.get(f"/compose?forward={message_id}")
    assert f"{CLEANED}.pdf" in text_of(page)
    sent = await post_compose(
        web_client,
        {
            "send_from": str(account),
            "to": "erin@example.test",
            "subject": _field(page.text, "subject"),
            "forward_of": str(message_id),
            "mode": "forward",
            "keep_attachment": ["0"],
        },
    )
    assert "Message sent" in text_of(sent), text_of(sent)
    [received] = server.received
    assert_not_injected(received, ["erin@example.test"])
    [attachment] = parsed(received.data).iter_attachments()
    assert attachment.get_filename() == f"{CLEANED}.pdf"
    assert attachment.get_payload(decode=True) == b"%PDF-1.4\n"


@pytest.mark.parametrize("name", [ONCE, TWICE, f'"{ONCE}"'])
async def test_a_compose_link_with_an_encoded_display_name_fills_in_one_clean_address(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer, name: str
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")

    page = await web_client.get(f"/compose?to={quote(f'{name} <bob@example.test>')}")
    assert page.status_code == 200
    to = _field(page.text, "to")
    assert not re.search(r"[\r\n]|=\?", to)

    sent = await post_compose(web_client, {"send_from": str(account), "to": to, "subject": "Hello"})
    assert "Message sent" in text_of(sent), text_of(sent)
    [received] = server.received
    assert_not_injected(received, ["bob@example.test"])


async def test_a_stored_account_name_that_decodes_to_line_breaks_is_sent_on_one_line(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    """Saved before this check existed (or written to the database by hand)."""
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    async with db.write() as session:
        row = await session.get(SmtpAccount, account)
        assert row is not None
        row.display_name = TWICE
        session.add(row)

    sent = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test", "subject": "Hi"})
    assert "Message sent" in text_of(sent), text_of(sent)
    [received] = server.received
    assert_not_injected(received, ["bob@example.test"])
    assert parsed(received.data)["From"] == f'"{CLEANED}" <ada@home.test>'


async def test_an_account_name_that_decodes_to_line_breaks_is_refused_by_the_form_and_the_api(
    web_client: WebClient, db: Database, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    await signed_in_user(web_client, db)
    sentence = "The display name cannot contain line breaks or other control characters."
    fields = {
        "display_name": ONCE,
        "email_address": "ada@home.test",
        "host": server.host,
        "security": "none",
        "port": str(server.port),
        "timeout_seconds": "10",
        "is_active": "on",
    }
    form = await post_form(web_client, "/settings/smtp/new", fields)
    assert form.status_code == 400
    assert sentence in text_of(form)
    body: dict[str, Any] = {
        "email_address": "ada@home.test",
        "display_name": TWICE,
        "host": server.host,
        "port": server.port,
        "security": "none",
        "auth_required": False,
        "timeout_seconds": 10,
    }
    refused = await api(web_client, "POST", "/smtp-accounts", body)
    assert refused.status_code == 400
    assert sentence in refused.text
    assert ok(await api(web_client, "GET", "/smtp-accounts")) == []


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        ("subject", ONCE, REFUSED_SUBJECT),
        ("subject", TWICE, REFUSED_SUBJECT),
        ("subject", "Quarterly\x85Bcc: attacker@evil.test", REFUSED_SUBJECT),
        ("subject", "Quarterly\u2028Bcc: attacker@evil.test", REFUSED_SUBJECT),
        ("to", f"{ONCE} <bob@example.test>", "The To address cannot contain line breaks or other control characters."),
        ("cc", f'"{TWICE}" <c@example.test>', "The Cc address cannot contain line breaks or other control characters."),
    ],
)
async def test_typed_values_that_decode_to_line_breaks_are_refused_by_the_form(
    web_client: WebClient,
    db: Database,
    secret_box: SecretBox,
    smtp_server: StartSmtpServer,
    field: str,
    value: str,
    sentence: str,
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")

    fields: dict[str, str | list[str]] = {"send_from": str(account), "to": "bob@example.test", "subject": "Hello"}
    fields[field] = value
    response = await post_compose(web_client, fields)
    assert response.status_code == 400
    assert f'aria-describedby="compose-{field}-error"' in response.text
    assert sentence in text_of(response)
    assert server.received == []
    assert await sending.list_outbox(db=db, user_id=user_id, include_sent=True) == []


async def test_an_uploaded_file_name_that_decodes_to_line_breaks_is_cleaned(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    upload = [("attachments", (f"{ONCE}.txt", b"notes", "text/plain"))]
    sent = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"}, upload)
    assert "Message sent" in text_of(sent), text_of(sent)
    [received] = server.received
    assert_not_injected(received, ["bob@example.test"])
    assert [a.get_filename() for a in parsed(received.data).iter_attachments()] == [f"{CLEANED}.txt"]


def _attachment(filename: str = "notes.txt", content_type: str = "text/plain") -> dict[str, str]:
    return {"filename": filename, "content_base64": base64.b64encode(b"notes").decode(), "content_type": content_type}


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"subject": ONCE}, REFUSED_SUBJECT),
        ({"subject": TWICE}, REFUSED_SUBJECT),
        ({"subject": "Quarterly\x85report"}, REFUSED_SUBJECT),
        ({"to": [f"{ONCE} <bob@example.test>"]}, "The To address cannot contain line breaks"),
        ({"cc": [f"{TWICE} <c@example.test>"]}, "The Cc address cannot contain line breaks"),
        ({"attachments": [_attachment(f"{ONCE}.txt")]}, "The attachment name cannot contain line breaks"),
        ({"attachments": [_attachment(content_type="text/plain\r\nBcc: x@evil.test")]}, "is not a content type"),
        ({"attachments": [_attachment(content_type="text/pl\x85ain")]}, "is not a content type"),
    ],
)
async def test_typed_values_that_decode_to_line_breaks_are_refused_by_the_api(
    web_client: WebClient,
    db: Database,
    secret_box: SecretBox,
    smtp_server: StartSmtpServer,
    change: dict[str, Any],
    sentence: str,
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    message = {"to": ["bob@example.test"], "subject": "Hello", "text": "Hi", "from_account_id": account, **change}

    response = await api(web_client, "POST", "/messages/send", message)
    assert response.status_code == 400, response.text
    assert sentence in response.text
    assert server.received == []
    assert await sending.list_outbox(db=db, user_id=user_id, include_sent=True) == []


async def test_reply_to_a_message_with_raw_8bit_controls_in_its_headers(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    """Raw UTF-8 NEL (C2 85) and U+2028 in From and Subject, not encoded: the reply page was a 500."""
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    raw = "From: B\u0085ob <bob@example.test>\r\nSubject: Quarterly\u0085Bcc: x@evil.test\u2028end\r\n\r\nHi\r\n"
    message_id = await deliver(db, user_id, raw.encode())

    page = await web_client.get(f"/compose?reply={message_id}")
    assert page.status_code == 200
    assert _field(page.text, "to") == "B ob <bob@example.test>"
    assert _field(page.text, "subject") == "Re: Quarterly Bcc: x@evil.test end"
    fields = {"to": _field(page.text, "to"), "subject": _field(page.text, "subject")}
    sent = await post_compose(web_client, {"send_from": str(account), "reply_to": str(message_id), **fields})
    assert "Message sent" in text_of(sent), text_of(sent)
    assert_not_injected(server.received[0], ["bob@example.test"])
