"""Reply, reply all and forward from the compose page: Send From defaults to the address the
original was delivered to, the reply is threaded, forwarded attachments go out with the message."""

from __future__ import annotations

import re

from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.users import add_user
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import WebClient, log_in
from tests.test_replies import ORIGINAL, deliver
from tests.test_web_compose import add_account, parsed, post_compose, send_from_options, signed_in_user, text_of

TO_WORK = (
    b"From: Bob Builder <bob@example.test>\r\n"
    b"To: Ada <ada@work.test>\r\n"
    b"Subject: Invoice\r\n"
    b"Message-ID: <invoice-7@example.test>\r\n"
    b"Date: Tue, 05 Mar 2024 08:00:00 +0000\r\n"
    b"\r\n"
    b"Please pay.\r\n"
)


def _field(page: str, name: str) -> str:
    match = re.search(rf'<input id="compose-{name}" name="{name}" type="text" value="([^"]*)"', page)
    assert match is not None, name
    return match.group(1)


async def test_reply_defaults_send_from_to_the_account_the_original_was_sent_to(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    home = await add_account(
        db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada Home", is_default=True
    )
    work = await add_account(db, secret_box, user_id, server.host, server.port, "ada@work.test", "Ada Work")
    message_id = await deliver(db, user_id, TO_WORK)

    fresh = await web_client.get("/compose")
    assert [value for value, _, chosen in send_from_options(fresh.text) if chosen] == [str(home)]
    page = await web_client.get(f"/compose?reply={message_id}")

    assert page.status_code == 200
    assert '<h1 id="compose-title">Reply</h1>' in page.text
    assert [value for value, _, chosen in send_from_options(page.text) if chosen] == [str(work)]
    assert _field(page.text, "to") == "Bob Builder &lt;bob@example.test&gt;"
    assert _field(page.text, "subject") == "Re: Invoice"
    assert "Bob Builder &lt;bob@example.test&gt; wrote:\n&gt; Please pay." in page.text
    assert f'<input type="hidden" name="reply_to" value="{message_id}">' in page.text

    sent = await post_compose(
        web_client,
        {
            "send_from": str(work),
            "to": "Bob Builder <bob@example.test>",
            "subject": "Re: Invoice",
            "body": "Paid.\n\n> Please pay.",
            "reply_to": str(message_id),
        },
    )
    assert "Message sent" in text_of(sent)
    reply = parsed(server.received[0].data)
    assert reply["From"] == "Ada Work <ada@work.test>"
    assert reply["In-Reply-To"] == "<invoice-7@example.test>"
    assert reply["References"] == "<invoice-7@example.test>"


async def test_reply_all_fills_to_and_cc_without_the_users_addresses(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    await add_account(db, secret_box, user_id, "smtp.example.test", 25, "alice@example.test", "Alice")
    message_id = await deliver(db, user_id, ORIGINAL)

    page = await web_client.get(f"/compose?reply_all={message_id}")

    assert '<h1 id="compose-title">Reply all</h1>' in page.text
    assert (
        _field(page.text, "to")
        == "Björn Berg &lt;bjorn@example.test&gt;, &#34;Doe, Carol&#34; &lt;carol@example.test&gt;"
    )
    assert _field(page.text, "cc") == "dave@example.test, ALICE@work.test"


async def test_forward_sends_the_kept_attachments_of_the_original(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    message_id = await deliver(db, user_id, ORIGINAL)

    page = await web_client.get(f"/compose?forward={message_id}")
    assert '<h1 id="compose-title">Forward</h1>' in page.text
    assert _field(page.text, "to") == ""
    assert _field(page.text, "subject") == "Fwd: Plans for März"
    assert 'name="keep_attachment" value="0" checked' in page.text
    assert "Agenda März.pdf" in page.text
    assert f'<input type="hidden" name="forward_of" value="{message_id}">' in page.text

    fields: dict[str, str | list[str]] = {
        "send_from": str(account),
        "to": "erin@example.test",
        "subject": "Fwd: Plans for März",
        "body": "FYI",
        "forward_of": str(message_id),
        "mode": "forward",
        "keep_attachment": ["0"],
    }
    mistake = await post_compose(web_client, {**fields, "to": "erin@"})
    assert mistake.status_code == 400
    assert 'name="keep_attachment" value="0" checked' in mistake.text  # the choice survives a mistake
    assert '<h1 id="compose-title">Forward</h1>' in mistake.text
    sent = await post_compose(web_client, fields, [("attachments", ("notes.txt", b"my notes", "text/plain"))])

    assert "Message sent" in text_of(sent)
    message = parsed(server.received[0].data)
    assert "In-Reply-To" not in message
    assert [(a.get_filename(), a.get_payload(decode=True)) for a in message.iter_attachments()] == [
        ("Agenda März.pdf", b"%PDF-1.4\n"),
        ("notes.txt", b"my notes"),
    ]


async def test_forward_without_the_attachments_when_unticked(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    message_id = await deliver(db, user_id, ORIGINAL)
    sent = await post_compose(
        web_client, {"send_from": str(account), "to": "erin@example.test", "forward_of": str(message_id)}
    )
    assert "Message sent" in text_of(sent)
    assert list(parsed(server.received[0].data).iter_attachments()) == []


async def test_answering_someone_elses_message_is_not_found(web_client: WebClient, db: Database) -> None:
    owner = await signed_in_user(web_client, db)
    message_id = await deliver(db, owner, TO_WORK)
    await add_user(db=db, email="mallory@example.test", password="long enough password")
    web_client.cookies.clear()
    assert (await log_in(web_client, email="mallory@example.test", password="long enough password")).status_code == 303

    for mode in ("reply", "reply_all", "forward"):
        response = await web_client.get(f"/compose?{mode}={message_id}")
        assert response.status_code == 404
        assert "Invoice" not in response.text
