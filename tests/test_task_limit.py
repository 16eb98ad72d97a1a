"""The administrator's limits on retrieval tasks and SMTP accounts, as a user meets them: "New
Retrieval Task" and "New SMTP Account" say so when opened (not after the whole form is filled in),
counting true when the limit was lowered below what the user has. And while the domain's retrieval
switch is off, no task row promises a next run.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Protocol, RetrievalMethod
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks, smtp_accounts
from service.usecases.users import find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, post_form, set_up_admin
from tests.settings_web import text_of

NEW_TASK = "/settings/retrieval/new"
NEW_ACCOUNT = "/settings/smtp/new"


async def _admin_with_tasks(client: WebClient, db: Database, secret_box: SecretBox, count: int) -> int:
    await set_up_admin(client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    for n in range(count):
        new = retrieval_tasks.NewTask(
            protocol=Protocol.IMAP,
            host="imap.example.test",
            username=f"user{n}@example.test",
            password="secret",
            method=RetrievalMethod.AUTOMATIC,
        )
        await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user.id, new=new)
    return user.id


async def _set_domain(db: Database, **values: object) -> None:
    async with db.write() as session:
        for domain in (await session.exec(select(Domain))).all():
            for name, value in values.items():
                setattr(domain, name, value)
            session.add(domain)


async def test_new_retrieval_task_says_the_limit_when_opened_with_a_true_count(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await _admin_with_tasks(web_client, db, secret_box, 3)

    await _set_domain(db, max_tasks_per_user=4)
    room = await web_client.get(NEW_TASK)
    assert room.status_code == 200
    assert 'id="task-form"' in room.text

    await _set_domain(db, max_tasks_per_user=3)
    full = await web_client.get(NEW_TASK)
    assert full.status_code == 200
    assert 'id="task-form"' not in full.text
    assert "You have 3 retrieval tasks, the most your administrator allows: delete one to add another." in (
        text_of(full.text)
    )
    assert 'href="/settings/connectivity#retrieval-card-title"' in full.text

    await _set_domain(db, max_tasks_per_user=2)  # lowered below what the user has
    over = await web_client.get(NEW_TASK)
    sentence = "You have 3 retrieval tasks and your administrator allows 2: delete 2 to add another."
    assert sentence in text_of(over.text)
    assert "the 2 retrieval tasks allowed" not in over.text

    saved = await post_form(
        web_client,
        NEW_TASK,
        {"protocol": "imap", "host": "imap.example.test", "security": "ssl", "port": "993", "username": "u",
         "password": "p", "timeout_seconds": "10", "method": "manual", "folder_transfer": "subfolders"},
    )  # fmt: skip
    assert saved.status_code == 400
    assert sentence in text_of(saved.text)


async def test_no_retrieval_tasks_allowed_says_so() -> None:
    assert retrieval_tasks.limit_message(0, 0) == "Your administrator does not allow retrieval tasks for your account."
    assert retrieval_tasks.limit_message(1, 1) == (
        "You have 1 retrieval task, the most your administrator allows: delete one to add another."
    )


async def test_new_smtp_account_says_the_limit_when_opened(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await _admin_with_tasks(web_client, db, secret_box, 0)
    for n in range(2):
        account = SmtpAccountInput(
            email_address=f"me{n}@example.test", host="smtp.example.test", username="me", auth_required=True
        )
        await smtp_accounts.add_smtp_account(
            db=db, secret_box=secret_box, user_id=user_id, account=account, password="secret"
        )

    await _set_domain(db, max_smtp_accounts_per_user=3)
    room = await web_client.get(NEW_ACCOUNT)
    assert room.status_code == 200
    assert "limit-reached" not in room.text

    await _set_domain(db, max_smtp_accounts_per_user=1)
    full = await web_client.get(NEW_ACCOUNT)
    assert full.status_code == 200
    assert "limit-reached" in full.text
    assert "You can have at most 1 SMTP account, and you have 2: delete 2 to add another." in text_of(full.text)
    assert 'href="/settings/connectivity#smtp-card-title"' in full.text


async def test_task_rows_promise_no_next_run_while_retrieval_is_turned_off(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await _admin_with_tasks(web_client, db, secret_box, 1)
    async with db.write() as session:
        task = (await session.exec(select(RetrievalTask))).one()
        task.next_run_at = utcnow() + timedelta(seconds=20)
        session.add(task)

    on = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Next run in less than a minute" in on

    await _set_domain(db, retrieval_enabled=False)
    off = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Next run Retrieval is turned off by your administrator" in off
    assert "in less than a minute" not in off
