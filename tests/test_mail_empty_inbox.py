"""The empty Inbox says where gathered mail goes (issue 17).

With "Add as subfolders" (the default) an IMAP task's mail lands under a folder of
its own, not in the Inbox, so "No messages yet. Add an email retrieval task in
Settings" misleads a user who has tasks. With tasks, the empty Inbox names each
task and the folder its mail arrives in, linked once it exists; the old sentence
is for a user without tasks only.
"""

from __future__ import annotations

import html
import re

from service.domain.values import FolderTransfer, Protocol, RetrievalMethod
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.secrets import SecretBox
from service.usecases import reading, retrieval_tasks
from service.usecases.users import add_user, find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.mail_samples import sample

ASK_FOR_A_TASK = "No messages yet. Add an email retrieval task in Settings"


async def _add_task(db: Database, secret_box: SecretBox, user_id: int, name: str, **changes: object) -> None:
    fields: dict[str, object] = {
        "protocol": Protocol.IMAP,
        "host": "imap.example.test",
        "username": "someone@example.test",
        "password": "remote password",
        "name": name,
        "method": RetrievalMethod.MANUAL,
        **changes,
    }
    new = retrieval_tasks.NewTask(**fields)  # type: ignore[arg-type]
    await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user_id, new=new)


async def _make_folder(db: Database, user_id: int, path: str) -> int:
    async with db.write() as session:
        folder = await folder_by_path(session, user_id, path)
        assert folder.id is not None
        return folder.id


def _empty_text(page: str) -> str:
    """The words of the empty Inbox's part of the page, tags removed."""
    match = re.search(r'<(p|div) class="empty[^"]*">(.*?)</\1>\s*(?:<nav|</section>)', page, re.S)
    assert match is not None, "the Inbox shows no empty-folder text"
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", match.group(2)))).strip()


async def test_without_tasks_the_empty_inbox_asks_for_one(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    page = await web_client.get("/")
    assert page.status_code == 200
    assert ASK_FOR_A_TASK in _empty_text(page.text)
    assert "arrives" not in page.text


async def test_with_tasks_the_empty_inbox_says_where_their_mail_arrives(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    # The default: "Add as subfolders" into a folder named after the task, which has run once.
    await _add_task(db, secret_box, user.id, "Alice (old ISP)")
    gathered = await _make_folder(db, user.id, "Alice (old ISP)")
    gathered_inbox = await _make_folder(db, user.id, "Alice (old ISP)/INBOX")
    # Subfolders into a folder the user named, not created yet (the task has not run).
    await _add_task(db, secret_box, user.id, "Work", destination_folder="Gathered/Work")
    # Root level: the remote INBOX comes to the Inbox itself.
    await _add_task(db, secret_box, user.id, "Family", folder_transfer=FolderTransfer.ROOT)
    # POP3 into a folder of its own.
    await _add_task(db, secret_box, user.id, "Shop", protocol=Protocol.POP3, destination_folder="Shop mail")

    page = await web_client.get("/")
    assert page.status_code == 200
    text = _empty_text(page.text)
    assert ASK_FOR_A_TASK not in text
    assert "Mail from Alice (old ISP) arrives in Alice (old ISP) (its inbox in Alice (old ISP)/INBOX)." in text
    assert f'<a href="/mail/folders/{gathered}">Alice (old ISP)</a>' in page.text
    assert f'<a href="/mail/folders/{gathered_inbox}">Alice (old ISP)/INBOX</a>' in page.text
    assert "Mail from Work arrives in Gathered/Work (its inbox in Gathered/Work/INBOX)." in text
    assert "The folder is created when the task first brings mail." in text
    assert "Mail from Family arrives here, in the Inbox; its other folders appear at the top level" in text
    assert "Mail from Shop arrives in Shop mail." in text
    assert 'href="/settings/connectivity"' in page.text
    # In the order the tasks are listed in Settings.
    assert text.index("Alice") < text.index("Work") < text.index("Family") < text.index("Shop")


async def test_another_users_tasks_are_not_named(web_client: WebClient, db: Database, secret_box: SecretBox) -> None:
    await set_up_admin(web_client)
    other = await _other_user(db)
    await _add_task(db, secret_box, other, "Someone else's mailbox")
    page = await web_client.get("/")
    assert ASK_FOR_A_TASK in _empty_text(page.text)
    assert "Someone else" not in page.text


async def _other_user(db: Database) -> int:
    user = await add_user(db=db, email="other@example.test", password="another long password")
    return user.id


async def test_an_inbox_with_mail_or_another_empty_folder_says_nothing_of_tasks(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    await _add_task(db, secret_box, user.id, "Alice (old ISP)")
    projects = await _make_folder(db, user.id, "Projects")
    empty_folder = await web_client.get(f"/mail/folders/{projects}")
    assert "This folder is empty." in empty_folder.text
    assert "arrives" not in empty_folder.text

    inbox = next(f.id for f in await reading.list_folders(db=db, user_id=user.id) if f.path == "Inbox")
    async with db.write() as session:
        await deliver(session, user_id=user.id, folder_id=inbox, raw=sample("Hello there"))
    page = await web_client.get("/")
    assert "Hello there" in page.text
    assert "arrives" not in page.text
    assert ASK_FOR_A_TASK not in page.text
