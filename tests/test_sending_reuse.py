"""Connection reuse: an outbox round sends every queued message for one server over one
session (RFC 5321 3.3), and never reuses a session the server has closed."""

from __future__ import annotations

from service.config import Settings
from service.domain.compose import Draft
from service.domain.outbox import OutboxStatus
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import sending
from tests.fixtures.smtp import StartSmtpServer
from tests.test_smtp_fakes import make_account, make_user, scripted_aiosmtpd


async def queue(db: Database, secret_box: SecretBox, settings: Settings, user_id: int, account_id: int, n: int) -> None:
    for number in range(n):
        result = await sending.send_message(
            db=db,
            secret_box=secret_box,
            settings=settings,
            user_id=user_id,
            from_account_id=account_id,
            draft=Draft(to=(f"bob{number}@example.test",), subject=f"Hello {number}", text="Hi"),
            send_now=False,
        )
        assert result.status is OutboxStatus.QUEUED


async def test_an_outbox_round_sends_every_queued_message_over_one_connection(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", users={"alice": "pw-alice"})
    user_id = await make_user(db)
    account_id = await make_account(
        db, secret_box, user_id, server.host, server.port, password="pw-alice", auth_required=True, username="alice"
    )
    await queue(db, secret_box, settings, user_id, account_id, 5)
    assert server.received == []
    before = server.connections_accepted  # aiosmtpd's own readiness probe counts too

    results = await sending.process_due_outbox(db=db, secret_box=secret_box, settings=settings)

    assert [r.status for r in results] == [OutboxStatus.SENT] * 5
    assert [m.rcpt_tos for m in server.received] == [[f"bob{n}@example.test"] for n in range(5)]
    assert {m.auth_user for m in server.received} == {"alice"}
    assert server.connections_accepted - before == 1
    await server.wait_connections_closed()
    assert server.open_connections == 0  # QUIT at the end of the round


async def test_after_a_failure_the_next_message_gets_a_fresh_session(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    with scripted_aiosmtpd(data=["451 4.3.0 Try again later"]) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        await queue(db, secret_box, settings, user_id, account_id, 3)

        results = await sending.process_due_outbox(db=db, secret_box=secret_box, settings=settings)

    assert [r.status for r in results] == [OutboxStatus.QUEUED, OutboxStatus.SENT, OutboxStatus.SENT]
    assert [rcpts for rcpts, _ in server.handler.received] == [["bob1@example.test"], ["bob2@example.test"]]
    first, second, third = server.handler.peers
    assert first != second == third  # the session that failed was closed, the new one reused
