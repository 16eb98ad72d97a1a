"""Cancelling a message in the Outbox: a queued or waiting message goes back to Drafts; one that a
delivery attempt holds cannot be cancelled; raced against the outbox round (aiosmtpd), a message is
either sent once or in Drafts, never both, never lost. The page's "Cancel" and POST /api/v1/outbox/{id}/cancel."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from service.config import Settings
from service.domain.compose import Draft
from service.domain.outbox import OutboxStatus, SendResult
from service.domain.values import Security, SpecialUse
from service.errors import Conflict, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import OutboxEntry
from service.usecases import sending
from service.usecases.sending.cancel import BEING_SENT
from tests.fixtures.smtp import SmtpServer, StartSmtpServer
from tests.fixtures.webapp import WebClient, csrf_token
from tests.test_api import api, ok
from tests.test_drafts import drafts_of
from tests.test_sending_outbox import NOW, folder_raws
from tests.test_smtp_fakes import make_account, make_user, scripted_aiosmtpd
from tests.test_web_compose import HTMX, add_account, post_compose, signed_in_user, text_of


async def _plain_sender(
    db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> tuple[SmtpServer, int, int]:
    """A plain aiosmtpd server, and a user with an account sending through it: (server, user id, account id)."""
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await make_user(db)
    account_id = await make_account(
        db, secret_box, user_id, server.host, server.port, security=Security.NONE, signature_text="Alice"
    )
    return server, user_id, account_id


def _round(db: Database, secret_box: SecretBox, settings: Settings) -> asyncio.Task[list[SendResult]]:
    """An outbox round, started beside the test."""
    return asyncio.create_task(sending.process_due_outbox(db=db, secret_box=secret_box, settings=settings, now=NOW))


async def _two_in_outbox(
    web_client: WebClient, db: Database, secret_box: SecretBox, data: list[str], subjects: tuple[str, str]
) -> tuple[int, list[Any]]:
    """A signed-in user who composed two messages that the server answered at DATA with `data`:
    (user id, their outbox entries by subject, last first)."""
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd(data=data) as server:
        account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
        for subject in subjects:
            await post_compose(web_client, {"send_from": str(account), "to": "bob@example.test", "subject": subject})
    return user_id, sorted(await sending.list_outbox(db=db, user_id=user_id), key=lambda e: e.subject, reverse=True)


async def _mark_sending(db: Database, outbox_id: int) -> None:
    """As if a delivery attempt held the message right now."""
    async with db.write() as session:
        await session.exec(
            update(OutboxEntry).where(col(OutboxEntry.id) == outbox_id).values(status=OutboxStatus.SENDING)
        )


async def _send(
    db: Database, secret_box: SecretBox, settings: Settings, user_id: int, account_id: int, draft: Draft, **options: Any
) -> SendResult:
    return await sending.send_message(
        db=db,
        secret_box=secret_box,
        settings=settings,
        user_id=user_id,
        from_account_id=account_id,
        draft=draft,
        now=NOW,
        **options,
    )


async def _queue(
    db: Database, secret_box: SecretBox, settings: Settings, user_id: int, account_id: int, subject: str
) -> int:
    draft = Draft(to=("bob@example.test",), subject=subject, text=f"About {subject}")
    result = await _send(db, secret_box, settings, user_id, account_id, draft, send_now=False)
    assert result.status is OutboxStatus.QUEUED
    return result.outbox_id


def _gate_data(server: SmtpServer) -> tuple[threading.Event, threading.Event]:
    """Hold the server at DATA: `arrived` is set when a message reaches it, which waits for `release`."""
    arrived, release = threading.Event(), threading.Event()
    handler: Any = server._handler
    accept = handler.handle_DATA

    async def gated(*args: Any) -> str:
        arrived.set()
        await asyncio.to_thread(release.wait, 30)
        return str(await accept(*args))

    handler.handle_DATA = gated  # aiosmtpd looks the hook up on each new connection
    return arrived, release


async def test_a_queued_message_goes_back_to_drafts_and_is_never_sent(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server, user_id, account_id = await _plain_sender(db, secret_box, smtp_server)
    outbox_id = await _queue(db, secret_box, settings, user_id, account_id, "Second thoughts")

    cancelled = await sending.cancel_outbox_message(db=db, user_id=user_id, outbox_id=outbox_id)
    assert cancelled.detail == "The message was cancelled and is back in Drafts."
    [draft] = await drafts_of(db, user_id)
    assert (draft.id, draft.subject, draft.draft) == (cancelled.draft_message_id, "Second thoughts", True)
    assert await sending.list_outbox(db=db, user_id=user_id, include_sent=True) == []
    assert await folder_raws(db, user_id, SpecialUse.OUTBOX) == []

    assert await sending.process_due_outbox(db=db, secret_box=secret_box, settings=settings, now=NOW) == []
    assert server.received == []
    # Reopened for editing, its signature is not doubled when it is sent again.
    opened = await sending.open_draft(db=db, user_id=user_id, message_id=draft.id or 0)
    assert opened.text.strip() == "About Second thoughts"
    with pytest.raises(NotFound):
        await sending.cancel_outbox_message(db=db, user_id=user_id, outbox_id=outbox_id)


async def test_a_message_being_sent_cannot_be_cancelled(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server, user_id, account_id = await _plain_sender(db, secret_box, smtp_server)
    outbox_id = await _queue(db, secret_box, settings, user_id, account_id, "In flight")
    arrived, release = _gate_data(server)

    round_ = _round(db, secret_box, settings)
    try:
        assert await asyncio.to_thread(arrived.wait, 30), "the message never reached the server"
        with pytest.raises(Conflict) as refused:
            await sending.cancel_outbox_message(db=db, user_id=user_id, outbox_id=outbox_id)
        assert refused.value.message == "It is being sent right now; it can no longer be cancelled."
    finally:
        release.set()
    [result] = await round_
    assert result.status is OutboxStatus.SENT
    assert len(server.received) == 1
    assert await drafts_of(db, user_id) == []
    assert len(await folder_raws(db, user_id, SpecialUse.SENT)) == 1


async def test_cancel_raced_against_the_outbox_round_sends_once_or_keeps_a_draft(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server, user_id, account_id = await _plain_sender(db, secret_box, smtp_server)
    subjects = [f"Race {n:02}" for n in range(12)]
    ids = [await _queue(db, secret_box, settings, user_id, account_id, s) for s in subjects]

    async def cancel(outbox_id: int) -> str:
        try:
            await sending.cancel_outbox_message(db=db, user_id=user_id, outbox_id=outbox_id)
        except Conflict as exc:
            return exc.message
        return "cancelled"

    # The round goes oldest first; the cancels come from the newest: they meet somewhere in between.
    round_ = _round(db, secret_box, settings)
    answers = await asyncio.gather(*(cancel(i) for i in reversed(ids)))
    results = await round_
    cancelled = {i for i, answer in zip(reversed(ids), answers, strict=True) if answer == "cancelled"}

    received = [re.search(rb"Subject: (Race \d+)", data) for data in (m.data for m in server.received)]
    sent_subjects = sorted(match.group(1).decode() for match in received if match)
    draft_subjects = sorted(d.subject for d in await drafts_of(db, user_id))
    assert len(sent_subjects) == len(set(sent_subjects)), "a message was sent twice"
    assert not set(sent_subjects) & set(draft_subjects), "a message was sent and is in Drafts"
    assert sorted(sent_subjects + draft_subjects) == subjects, "a message was lost"
    assert len(draft_subjects) == len(cancelled)
    assert {r.outbox_id for r in results} == set(ids) - cancelled
    assert all(answer in ("cancelled", BEING_SENT) or "no longer waiting" in answer for answer in answers)
    assert await sending.list_outbox(db=db, user_id=user_id) == []


async def test_a_message_already_delivered_to_some_says_so_when_cancelled(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    user_id = await make_user(db)
    with scripted_aiosmtpd(rcpt={"carol@example.test": ["451 4.2.1 Try later"]}) as server:
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        draft = Draft(to=("bob@example.test", "carol@example.test"), subject="Half")
        result = await _send(db, secret_box, settings, user_id, account_id, draft)
    assert result.status is OutboxStatus.QUEUED
    cancelled = await sending.cancel_outbox_message(db=db, user_id=user_id, outbox_id=result.outbox_id)
    assert cancelled.already_accepted == ("bob@example.test",)
    assert "already been delivered to bob@example.test" in cancelled.detail


async def test_the_outbox_page_cancels_a_waiting_message(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id, (waiting, failed) = await _two_in_outbox(
        web_client, db, secret_box, ["451 4.7.1 Greylisted", "550 5.7.1 No"], ("Waiting", "Refused")
    )
    assert (waiting.status, failed.status) == (OutboxStatus.QUEUED, OutboxStatus.FAILED)
    outbox = (await web_client.get("/outbox")).text
    assert re.search(rf'action="/outbox/{waiting.id}/cancel".*?>Cancel</button>', outbox, re.DOTALL)
    assert f"/outbox/{failed.id}/cancel" not in outbox

    answer = await web_client.post(
        f"/outbox/{waiting.id}/cancel", data={"_csrf_token": await csrf_token(web_client)}, headers=HTMX
    )
    assert answer.status_code == 200
    assert "<html" not in answer.text
    assert "The message was cancelled and is back in Drafts." in text_of(answer)
    assert f"/outbox/{waiting.id}/cancel" not in answer.text
    [draft] = await drafts_of(db, user_id)
    assert draft.subject == "Waiting"

    # Being sent: refused in the user's words.
    await _mark_sending(db, failed.id)
    refused = await web_client.post(f"/outbox/{failed.id}/cancel", data={"_csrf_token": await csrf_token(web_client)})
    assert refused.status_code == 409
    assert "It is being sent right now; it can no longer be cancelled." in text_of(refused)


async def test_the_api_cancels_and_answers_409_while_sending(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id, (two, one) = await _two_in_outbox(
        web_client, db, secret_box, ["451 4.7.1 Greylisted", "451 4.7.1 Greylisted"], ("One", "Two")
    )

    body = ok(await api(web_client, "POST", f"/outbox/{one.id}/cancel"))
    [draft] = await drafts_of(db, user_id)
    assert body == {
        "outbox_id": one.id,
        "draft_message_id": draft.id,
        "already_accepted": [],
        "detail": "The message was cancelled and is back in Drafts.",
    }
    gone = await api(web_client, "POST", f"/outbox/{one.id}/cancel")
    assert gone.status_code == 404
    assert gone.json() == {"error": "This message is not in the outbox."}
    assert (await api(web_client, "POST", f"/outbox/{two.id}/cancel", csrf=False)).status_code == 403

    await _mark_sending(db, two.id)
    busy = await api(web_client, "POST", f"/outbox/{two.id}/cancel")
    assert busy.status_code == 409
    assert busy.json() == {"error": "It is being sent right now; it can no longer be cancelled."}
