"""The compose page as a person uses it, as a plain form and with htmx: the Send From dropdown,
sending through an aiosmtpd server, every kind of result, and mistakes shown inline.

Helpers here (signed-in user with SMTP accounts, posting the form, reading the
dropdown) are shared by the other compose and admin web tests.
"""

from __future__ import annotations

import html
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx

from service.domain.values import Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import sending
from service.usecases.users import find_user
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, csrf_token, set_up_admin
from tests.test_smtp_fakes import RawSmtpServer, make_account, scripted_aiosmtpd

HTMX = {"HX-Request": "true"}
_OPTION = re.compile(r'<option value="([^"]*)"\s*(selected)?\s*>([^<]*)</option>')
_SELECT = re.compile(r'<select id="compose-from".*?</select>', re.DOTALL)

Files = list[tuple[str, tuple[str, bytes, str]]]


async def signed_in_user(client: WebClient, db: Database) -> int:
    """The administrator from first-run setup, signed in; returns their id."""
    await set_up_admin(client)
    return (await find_user(db=db, email=ADMIN_EMAIL)).id


async def add_account(
    db: Database, secret_box: SecretBox, user_id: int, host: str, port: int, email: str, name: str, **more: Any
) -> int:
    """A plain-text, no-AUTH SMTP account (the aiosmtpd fixtures in plain mode)."""
    return await make_account(
        db, secret_box, user_id, host, port, email_address=email, display_name=name, security=Security.NONE, **more
    )


async def post_compose(
    client: WebClient, fields: dict[str, str | list[str]], files: Files | None = None, htmx: bool = False
) -> httpx.Response:
    data = {"_csrf_token": await csrf_token(client), "subject": "", "cc": "", "bcc": "", "body": "", **fields}
    return await client.post("/compose", data=data, files=files or None, headers=HTMX if htmx else None)


def send_from_options(page: str) -> list[tuple[str, str, bool]]:
    """(value, label, selected) of each Send From option."""
    select = _SELECT.search(page)
    assert select is not None, "the page has no Send From dropdown"
    return [(value, html.unescape(label), bool(chosen)) for value, chosen, label in _OPTION.findall(select.group(0))]


def parsed(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)


def text_of(response: httpx.Response) -> str:
    """The page's text with tags removed and entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def test_send_from_lists_the_accounts_and_preselects_the_default(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    work = await add_account(db, secret_box, user_id, "smtp.work.test", 25, "ada@work.test", "Ada at Work")
    home = await add_account(
        db, secret_box, user_id, "smtp.home.test", 25, "ada@home.test", "Ada Lovelace", is_default=True
    )

    page = await web_client.get("/compose")
    assert page.status_code == 200
    assert '<label for="compose-from">Send From</label>' in page.text
    assert send_from_options(page.text) == [
        (str(work), "Ada at Work <ada@work.test>", False),
        (str(home), "Ada Lovelace <ada@home.test>", True),
    ]
    for label, field_id in [
        ("To", "compose-to"),
        ("Cc", "compose-cc"),
        ("Bcc", "compose-bcc"),
        ("Subject", "compose-subject"),
    ]:
        assert f'<label for="{field_id}">{label}</label>' in page.text
    assert 'name="attachments" type="file" multiple' in page.text
    assert 'enctype="multipart/form-data"' in page.text


async def test_a_message_sent_as_a_plain_form_arrives_without_its_bcc(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada Lovelace")
    work = await add_account(db, secret_box, user_id, server.host, server.port, "ada@work.test", "Ada at Work")

    response = await post_compose(
        web_client,
        {
            "send_from": str(work),
            "to": "Bob <bob@example.test>",
            "cc": "carol@example.test",
            "bcc": "Secret Sam <sam@example.test>",
            "subject": "Grüße from the web",
            "body": "Hello Bob,\r\nsee you soon.\r\n",
        },
    )

    assert response.status_code == 200, text_of(response)
    assert '<h1 id="result-title" tabindex="-1" autofocus>Message sent</h1>' in response.text
    assert "Sent to bob@example.test, carol@example.test, sam@example.test." in text_of(response)
    (received,) = server.received
    assert received.rcpt_tos == ["bob@example.test", "carol@example.test", "sam@example.test"]
    assert b"sam@example.test" not in received.data
    message = parsed(received.data)
    assert message["From"] == "Ada at Work <ada@work.test>"
    assert message["Subject"] == "Grüße from the web"
    assert message.get_content().replace("\r\n", "\n") == "Hello Bob,\nsee you soon.\n"
    assert await sending.list_outbox(db=db, user_id=user_id) == []


async def test_a_5xx_shows_the_servers_reason(web_client: WebClient, db: Database, secret_box: SecretBox) -> None:
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(data=["550 5.7.1 Message refused by policy"]) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        response = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"})

    assert response.status_code == 200
    page = text_of(response)
    assert "Message not sent" in page
    assert "550 5.7.1 Message refused by policy" in page
    assert "where you can send it again" in page


async def test_refused_recipients_are_listed_with_their_reasons(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(rcpt={"nobody@example.test": ["550 5.1.1 No such user here"]}) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        response = await post_compose(
            web_client, {"send_from": str(account), "to": "bob@example.test, nobody@example.test"}
        )
        assert [rcpts for rcpts, _ in server.handler.received] == [["bob@example.test"]]

    page = text_of(response)
    assert "Message sent" in page
    assert "Refused recipients" in page
    assert "nobody@example.test : 550 5.1.1 No such user here" in page


async def test_a_4xx_is_queued_with_the_next_try(web_client: WebClient, db: Database, secret_box: SecretBox) -> None:
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(data=["451 4.3.0 Greylisted, try later"]) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        response = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"})

    page = text_of(response)
    assert "Message queued" in page
    assert "451 4.3.0 Greylisted, try later" in page
    [entry] = await sending.list_outbox(db=db, user_id=user_id)
    assert entry.next_attempt_at is not None
    assert f"Next try: {entry.next_attempt_at:%Y-%m-%d %H:%M} UTC" in page


async def test_a_connection_lost_after_the_data_is_delivery_unknown(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    with RawSmtpServer(drop_after_data=True) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        response = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"})

    page = text_of(response)
    assert "Delivery unknown" in page
    assert "will not send it again unless you ask" in page


async def test_attachments_with_non_ascii_names_arrive(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    files: Files = [
        ("attachments", ("Grüße €uro.txt", "Grüße\n".encode(), "text/plain")),
        ("attachments", ("日本語 報告.pdf", b"%PDF-1.4 binary \x00\xff", "application/pdf")),
        ("attachments", ("", b"", "application/octet-stream")),  # what a browser sends with no file chosen
    ]

    response = await post_compose(
        web_client, {"send_from": str(account), "to": "bob@example.test", "subject": "Files"}, files
    )

    assert "Message sent" in text_of(response)
    (received,) = server.received
    attachments = [
        (a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
        for a in parsed(received.data).iter_attachments()
    ]
    assert attachments == [
        ("Grüße €uro.txt", "text/plain", "Grüße\n".encode()),
        ("日本語 報告.pdf", "application/pdf", b"%PDF-1.4 binary \x00\xff"),
    ]


async def test_header_injection_is_refused_inline_keeping_what_was_typed(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")

    response = await post_compose(
        web_client,
        {
            "send_from": str(account),
            "to": "bob@example.test",
            "subject": "Hello\r\nBcc: victim@example.test",
            "body": "Keep this text",
        },
        [("attachments", ("notes.txt", b"notes", "text/plain"))],
    )

    assert response.status_code == 400
    assert 'role="alert"' in response.text
    assert 'aria-invalid="true" aria-describedby="compose-subject-error"' in response.text
    assert "The subject cannot contain line breaks or other control characters." in response.text
    assert 'value="bob@example.test"' in response.text
    assert "Keep this text" in response.text
    assert "Choose your 1 file again" in response.text
    assert send_from_options(response.text) == [(str(account), "Ada <ada@home.test>", True)]

    injected_to = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test\nBcc: x@y.test"})
    assert injected_to.status_code == 400
    assert "The To address cannot contain line breaks or other control characters." in injected_to.text
    bad = await post_compose(web_client, {"send_from": str(account), "to": "not an address", "cc": "a@b@c"})
    assert bad.status_code == 400
    assert 'aria-describedby="compose-to-error"' in bad.text
    assert 'aria-describedby="compose-cc-error"' in bad.text
    assert "is not a valid email address" in bad.text
    nobody = await post_compose(web_client, {"send_from": str(account), "to": ""})
    assert "Add at least one recipient." in nobody.text
    assert server.received == []
    assert await sending.list_outbox(db=db, user_id=user_id, include_sent=True) == []


async def test_a_message_too_large_for_the_domain_is_refused_inline(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    from service.usecases.domains import set_domain

    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, "127.0.0.1", 9, "ada@home.test", "Ada")
    await set_domain(db=db, name="example.test", max_message_bytes=2048)
    response = await post_compose(
        web_client,
        {"send_from": str(account), "to": "bob@example.test", "body": "Big"},
        [("attachments", ("big.bin", b"x" * 4096, "application/octet-stream"))],
    )
    assert response.status_code == 400
    assert "more than the 2.0 KB your administrator allows" in text_of(response)
    assert "Choose your 1 file again" in response.text


async def test_with_htmx_the_answer_is_a_fragment(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")

    mistake = await post_compose(web_client, {"send_from": str(account), "to": "nope"}, htmx=True)
    assert mistake.status_code == 200  # htmx swaps only 2xx answers in
    assert "<html" not in mistake.text
    assert 'id="compose-form"' in mistake.text

    sent = await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"}, htmx=True)
    assert sent.status_code == 200
    assert "<html" not in sent.text
    assert "Message sent" in sent.text
    assert len(server.received) == 1


async def test_without_any_sender_the_page_says_how_to_add_an_smtp_account(web_client: WebClient, db: Database) -> None:
    await signed_in_user(web_client, db)
    page = await web_client.get("/compose")
    assert page.status_code == 200
    assert "You have no address to send from yet." in text_of(page)
    assert '<a href="/settings/connectivity">Settings, Connectivity</a>' in page.text
    assert re.search(r'<button type="submit" class="button button-primary"\s+disabled>Send</button>', page.text)


async def test_compose_needs_a_signed_in_user(web_client: WebClient) -> None:
    response = await web_client.get("/compose")
    assert response.status_code == 303
    assert response.headers["location"] in ("/login", "/setup")
