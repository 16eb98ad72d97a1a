"""The Outbox page: what is waiting, failed or unknown, with status, next try and the server's
last reply, and "Send again" (as a plain form and with htmx)."""

from __future__ import annotations

import re

from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import sending
from service.usecases.users import add_user
from tests.fixtures.webapp import WebClient, csrf_token, log_in
from tests.test_smtp_fakes import RawSmtpServer, scripted_aiosmtpd
from tests.test_web_compose import HTMX, add_account, post_compose, signed_in_user, text_of


async def _retry(client: WebClient, outbox_id: int, htmx: bool = False) -> str:
    response = await client.post(
        f"/outbox/{outbox_id}/retry",
        data={"_csrf_token": await csrf_token(client)},
        headers=HTMX if htmx else None,
    )
    assert response.status_code == 200, response.text
    return response.text


async def test_a_failed_message_is_listed_and_sent_again(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    assert "Nothing is waiting in the Outbox." in (await web_client.get("/outbox")).text
    with scripted_aiosmtpd(data=["554 5.7.1 Spam suspected"]) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test", "subject": "Quarterly"})
        [entry] = await sending.list_outbox(db=db, user_id=user_id)

        outbox = await web_client.get("/outbox")
        page = text_of(outbox)
        assert "Quarterly" in page
        assert "From ada@home.test to bob@example.test" in page
        assert "Failed" in page
        assert "554 5.7.1 Spam suspected" in page
        assert '<span class="count" aria-label="1 waiting">1</span>' in outbox.text
        assert re.search(rf'action="/outbox/{entry.id}/retry".*?>Send again</button>', outbox.text, re.DOTALL)

        again = await _retry(web_client, entry.id)
        assert len(server.handler.received) == 1

    assert "Message sent." in again
    assert "Nothing is waiting in the Outbox." in again
    assert await sending.list_outbox(db=db, user_id=user_id) == []


async def test_queued_shows_the_next_try_and_unknown_warns_before_sending_again(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(data=["451 4.7.1 Greylisted"]) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test", "subject": "Later"})
    with RawSmtpServer(drop_after_data=True) as raw:
        lost = await add_account(db, secret_box, user_id, raw.host, raw.port, "ada@work.test", "Ada Work")
        await post_compose(web_client, {"send_from": str(lost), "to": "carol@example.test", "subject": "Lost"})

    queued, unknown = sorted(await sending.list_outbox(db=db, user_id=user_id), key=lambda e: e.subject)
    assert (queued.subject, unknown.subject) == ("Later", "Lost")
    assert queued.next_attempt_at is not None
    outbox = await web_client.get("/outbox")
    page = text_of(outbox)
    assert f"Queued {queued.next_attempt_at:%Y-%m-%d %H:%M} UTC" in page
    assert "451 4.7.1 Greylisted" in page
    assert "Delivery unknown" in page
    assert "It may have arrived already: sending again could deliver it twice." in page
    assert re.search(rf'action="/outbox/{queued.id}/retry".*?>Send now</button>', outbox.text, re.DOTALL)


async def test_send_again_with_htmx_answers_with_the_outbox_fragment(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(data=["550 5.1.0 Sender rejected", "550 5.1.0 Sender rejected"]) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test"})
        [entry] = await sending.list_outbox(db=db, user_id=user_id)
        fragment = await _retry(web_client, entry.id, htmx=True)

    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section class="card outbox" id="outbox"')
    assert "Message not sent. 127.0.0.1 refused the message (550 5.1.0 Sender rejected)." in " ".join(fragment.split())


async def test_nobody_can_send_again_someone_elses_message(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    owner = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(data=["550 5.7.1 No"]) as server:
        account = await add_account(db, secret_box, owner, server.host, server.port, "ada@home.test", "Ada")
        await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test", "subject": "Mine"})
    [entry] = await sending.list_outbox(db=db, user_id=owner)
    await add_user(db=db, email="mallory@example.test", password="long enough password")
    web_client.cookies.clear()
    await log_in(web_client, email="mallory@example.test", password="long enough password")

    assert "Mine" not in (await web_client.get("/outbox")).text
    response = await web_client.post(f"/outbox/{entry.id}/retry", data={"_csrf_token": await csrf_token(web_client)})
    assert response.status_code == 404
    assert "This message is not in the outbox." in response.text
