"""Settings pages without a remote server: the cards when the domain's administrator turned a
feature off, the port a security mode suggests, signing in first, and Settings, Logs filters."""

from __future__ import annotations

import re

from service.domain.values import LogLevel, LogSource, Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import retrieval_tasks
from service.usecases.domains import set_domain
from service.usecases.logs import record
from service.usecases.users import add_user, find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, post_form, set_up_admin
from tests.settings_web import htmx_post, text_of
from tests.test_smtp_fakes import make_account

RETRIEVAL_OFF = "Your administrator turned off IMAP/POP Retrieval for example.test."
SMTP_OFF = "Your administrator turned off SMTP accounts for example.test."


async def _admin_task(db: Database, secret_box: SecretBox, name: str = "Old mailbox") -> int:
    admin = await find_user(db=db, email=ADMIN_EMAIL)
    new = retrieval_tasks.NewTask(
        protocol=Protocol.IMAP, host="imap.example.test", username="me", password="pw-123456", name=name
    )
    return (await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=admin.id, new=new)).id


async def test_settings_need_a_signed_in_user(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    await post_form(web_client, "/logout", {})
    for path in ["/settings/connectivity", "/settings/retrieval/new", "/settings/smtp/new", "/settings/logs"]:
        response = await web_client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path


async def test_cards_say_when_the_administrator_turned_a_feature_off(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    task_id = await _admin_task(db, secret_box)
    admin = await find_user(db=db, email=ADMIN_EMAIL)
    account_id = await make_account(db, secret_box, admin.id, "smtp.example.test", 587)
    await set_domain(db=db, name="example.test", retrieval_enabled=False, smtp_accounts_enabled=False)

    page = await web_client.get("/settings/connectivity")
    shown = text_of(page.text)
    assert RETRIEVAL_OFF in shown
    assert SMTP_OFF in shown
    assert "New Retrieval Task" not in shown
    assert "New SMTP Account" not in shown
    assert "Old mailbox" in shown  # existing tasks stay listed, and can be deleted
    assert "Turned off by your administrator" in shown
    assert "Retrieve Messages Now" not in shown
    assert f'action="/settings/retrieval/{task_id}/delete"' in page.text
    # SMTP accounts stay listed too, with only Delete, so their stored passwords can be removed.
    assert f'action="/settings/smtp/{account_id}/delete"' in page.text
    assert f'action="/settings/smtp/{account_id}/edit"' not in page.text
    assert f'action="/settings/smtp/{account_id}/test"' not in page.text

    for path, words in [("/settings/retrieval/new", RETRIEVAL_OFF), ("/settings/smtp/new", SMTP_OFF)]:
        refused = await web_client.get(path)
        assert refused.status_code == 403
        assert words in refused.text
    ran = await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    assert RETRIEVAL_OFF in text_of(ran.text)
    assert (await post_form(web_client, f"/settings/retrieval/{task_id}/delete", {})).status_code == 303
    assert (await post_form(web_client, f"/settings/smtp/{account_id}/delete", {})).status_code == 303
    assert f"/settings/smtp/{account_id}/" not in (await web_client.get("/settings/connectivity")).text

    await set_domain(db=db, name="example.test", retrieval_enabled=True, smtp_accounts_enabled=True)
    shown = text_of((await web_client.get("/settings/connectivity")).text)
    assert "New Retrieval Task" in shown
    assert "New SMTP Account" in shown
    assert "turned off" not in shown


async def test_choosing_a_security_mode_suggests_its_port(web_client: WebClient) -> None:
    await set_up_admin(web_client)

    async def suggested(protocol: str, security: Security, port: str) -> str:
        response = await web_client.get(
            "/settings/port", params={"protocol": protocol, "security": security.value, "port": port}
        )
        match = re.search(r'value="([^"]*)"', response.text)
        assert match is not None
        return match.group(1)

    assert await suggested("imap", Security.STARTTLS, "993") == "143"
    assert await suggested("imap", Security.SSL, "143") == "993"
    assert await suggested("pop3", Security.SSL, "993") == "995"  # switching type moves the port too
    assert await suggested("pop3", Security.NONE, "") == "110"
    assert await suggested("smtp", Security.NONE, "587") == "25"
    assert await suggested("smtp", Security.STARTTLS, "465") == "587"
    assert await suggested("smtp", Security.SSL, "25") == "465"
    assert await suggested("imap", Security.SSL, "10993") == "10993"  # a port the user typed stays
    assert 'id="smtp-port"' in (await web_client.get("/settings/port?protocol=smtp&security=ssl")).text


async def test_logs_are_filtered_by_source_level_and_account(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    admin = await find_user(db=db, email=ADMIN_EMAIL)
    other = await add_user(db=db, email="bob@example.test", password="long enough")
    first = await _admin_task(db, secret_box, "First mailbox")
    second = await _admin_task(db, secret_box, "Second mailbox")
    async with db.write() as session:
        for source, level, text, task_id, user_id in [
            (LogSource.INCOMING, LogLevel.INFO, "first imported 3", first, admin.id),
            (LogSource.IMAP_AUTH, LogLevel.ERROR, "first rejected the password", first, admin.id),
            (LogSource.INCOMING, LogLevel.INFO, "second imported 1", second, admin.id),
            (LogSource.SCHEDULER, LogLevel.WARNING, "second paused", second, admin.id),
            (LogSource.INCOMING, LogLevel.INFO, "bob's private entry", None, other.id),
        ]:
            record(session, source=source, level=level, text=text, user_id=user_id, retrieval_task_id=task_id)

    everything = await web_client.get("/settings/logs")
    assert everything.status_code == 200
    shown = text_of(everything.text)
    assert shown.index("second paused") < shown.index("first imported 3")  # newest first
    assert "bob's private entry" not in shown
    for label in ["Source", "Level", "Account"]:
        assert re.search(rf'<label for="log-{label.lower()}">{label}</label>', everything.text)
    assert f'<option value="task:{first}">Retrieval: First mailbox</option>' in everything.text

    async def entries(**params: str) -> list[str]:
        page = await web_client.get("/settings/logs", params=params)
        return re.findall(r'<td class="log-text">([^<]*)</td>', page.text)

    assert await entries(source="Incoming mail") == ["second imported 1", "first imported 3"]
    assert await entries(level="Error") == ["first rejected the password"]
    assert await entries(account=f"task:{second}") == ["second paused", "second imported 1"]
    assert await entries(source="Incoming mail", account=f"task:{first}") == ["first imported 3"]
    assert await entries(level="Debug") == []
    filtered = await web_client.get("/settings/logs", params={"level": "Debug"})
    assert "No log entries match these filters." in filtered.text
    assert '<option value="Debug" selected>' in filtered.text
    assert await entries(source="made up") == await entries()  # unknown values filter nothing


async def test_logs_page_through_older_entries(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    admin = await find_user(db=db, email=ADMIN_EMAIL)
    async with db.write() as session:
        for n in range(60):
            record(session, source=LogSource.SCHEDULER, level=LogLevel.INFO, text=f"entry {n:02d}", user_id=admin.id)
    first = await web_client.get("/settings/logs", params={"source": "Scheduler"})
    texts = re.findall(r'<td class="log-text">entry (\d+)</td>', first.text)
    assert texts == [f"{n:02d}" for n in range(59, 9, -1)]
    older = re.search(r'<a href="([^"]+)">Older entries</a>', first.text)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "source=Scheduler" in link
    second = await web_client.get(link)
    assert re.findall(r'<td class="log-text">entry (\d+)</td>', second.text) == [f"{n:02d}" for n in range(9, -1, -1)]
    assert "Older entries" not in second.text
    assert "Newest entries" in second.text
