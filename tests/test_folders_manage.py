"""Managing local folders (issue 17, "Mail and folders"): create, rename, move, delete, Empty Trash
and Empty Junk, on both databases; the names people actually type (and worse); special folders
left alone; what names a folder (subfolders, retrieval tasks, filters, search) following a rename;
and the delete rule (to Trash; in the Trash, for good) over HTTP."""

from __future__ import annotations

from html import unescape

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import col, select

from service.config import Settings
from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule
from service.domain.folder_names import FolderNameInvalid
from service.domain.values import Protocol, SpecialUse
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage, deliver_many, folder_by_path
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, Message, RetrievalTask
from service.usecases import filters, folders, search
from service.usecases.reading.folders import list_folders
from service.usecases.users import add_user, find_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, csrf_token, post_form, set_up_admin
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import body_count
from tests.test_api import api
from tests.test_folder_counts import assert_counts_exact


async def _user(db: Database, email: str = "folders@example.test") -> int:
    return (await add_user(db=db, email=email, password="long enough")).id


async def _fill(db: Database, user_id: int, path: str, *subjects: str) -> list[int]:
    async with db.write() as session:
        folder = await folder_by_path(session, user_id, path)
        assert folder.id is not None
        return await deliver_many(
            session,
            user_id=user_id,
            folder_id=folder.id,
            messages=[IncomingMessage(raw=sample(s)) for s in subjects],
            full_index=True,
        )


async def _paths(db: Database, user_id: int) -> dict[str, int]:
    return {f.path: f.id for f in await list_folders(db=db, user_id=user_id)}


async def _special(db: Database, user_id: int, use: SpecialUse) -> int:
    return (await folders.special_folder(db=db, user_id=user_id, use=use)).id


async def _found(db: Database, user_id: int, query: str) -> list[str]:
    results = await search.search(db=db, user_id=user_id, query=query)
    return [hit.message.subject for hit in results.hits]


async def test_create_rename_move_and_delete_a_tree_keep_counts_exact(db: Database) -> None:
    user_id = await _user(db)
    projects = await folders.create_folder(db=db, user_id=user_id, name="  Projects ")
    assert (projects.name, projects.path, projects.parent_id) == ("Projects", "Projects", None)
    alpha = await folders.create_folder(db=db, user_id=user_id, name="Alpha", parent_id=projects.id)
    deep = await folders.create_folder(db=db, user_id=user_id, name="Notes", parent_id=alpha.id)
    assert deep.path == "Projects/Alpha/Notes"
    inbox_child = await folders.create_folder(
        db=db, user_id=user_id, name="Receipts", parent_id=await _special(db, user_id, SpecialUse.INBOX)
    )
    assert inbox_child.path == "Inbox/Receipts"
    await _fill(db, user_id, "Projects/Alpha", "alpha one", "alpha two")
    await _fill(db, user_id, "Projects/Alpha/Notes", "a note")
    await _fill(db, user_id, "Inbox", "stays in the inbox")

    renamed = await folders.rename_folder(db=db, user_id=user_id, folder_id=alpha.id, name="Beta")
    assert renamed.path == "Projects/Beta"
    paths = await _paths(db, user_id)
    assert {"Projects/Beta", "Projects/Beta/Notes"} <= set(paths)
    assert not any(p.startswith("Projects/Alpha") for p in paths)
    assert paths["Projects/Beta/Notes"] == deep.id  # the same folder, its messages with it
    shown = await assert_counts_exact(db, user_id)
    assert (shown["Projects/Beta"], shown["Projects/Beta/Notes"]) == ((2, 2), (1, 1))

    moved = await folders.move_folder(db=db, user_id=user_id, folder_id=alpha.id, parent_id=None)
    assert (moved.path, moved.parent_id) == ("Beta", None)
    assert {"Beta", "Beta/Notes", "Projects"} <= set(await _paths(db, user_id))
    await folders.move_folder(db=db, user_id=user_id, folder_id=alpha.id, parent_id=inbox_child.id)
    assert (await assert_counts_exact(db, user_id))["Inbox/Receipts/Beta/Notes"] == (1, 1)

    outcome = await folders.delete_folder(db=db, user_id=user_id, folder_id=inbox_child.id)
    assert (outcome.folders, outcome.trashed) == (3, 3)
    shown = await assert_counts_exact(db, user_id)
    assert not any(p.startswith("Inbox/Receipts") for p in shown)
    assert (shown["Trash"], shown["Inbox"]) == ((3, 3), (1, 1))


async def test_special_folders_cannot_be_renamed_moved_or_deleted(db: Database) -> None:
    user_id = await _user(db)
    other = await folders.create_folder(db=db, user_id=user_id, name="Other")
    for use in SpecialUse:
        folder_id = await _special(db, user_id, use)
        with pytest.raises(folders.SpecialFolderLocked, match="special folder"):
            await folders.rename_folder(db=db, user_id=user_id, folder_id=folder_id, name="Mine now")
        with pytest.raises(folders.SpecialFolderLocked):
            await folders.move_folder(db=db, user_id=user_id, folder_id=folder_id, parent_id=other.id)
        with pytest.raises(folders.SpecialFolderLocked):
            await folders.delete_folder(db=db, user_id=user_id, folder_id=folder_id)
    outbox = await _special(db, user_id, SpecialUse.OUTBOX)
    with pytest.raises(folders.FolderMoveInvalid, match="Outbox"):
        await folders.create_folder(db=db, user_id=user_id, name="Queued", parent_id=outbox)
    with pytest.raises(folders.FolderMoveInvalid, match="Outbox"):
        await folders.move_folder(db=db, user_id=user_id, folder_id=other.id, parent_id=outbox)
    with pytest.raises(folders.FolderNameTaken):  # the special folders' names are taken at the top
        await folders.create_folder(db=db, user_id=user_id, name="inbox")
    with pytest.raises(folders.FolderNameTaken):
        await folders.rename_folder(db=db, user_id=user_id, folder_id=other.id, name="TRASH")
    with pytest.raises(InvalidInput, match="Only the Trash and Junk"):
        await folders.empty_folder(db=db, user_id=user_id, folder_id=await _special(db, user_id, SpecialUse.INBOX))
    # The top-level Archive (made by the Archive button) counts as special once it exists.
    archive = await folders.create_folder(db=db, user_id=user_id, name="Archive")
    year = await folders.create_folder(db=db, user_id=user_id, name="2024", parent_id=archive.id)
    with pytest.raises(folders.SpecialFolderLocked, match="Archive is a special folder"):
        await folders.rename_folder(db=db, user_id=user_id, folder_id=archive.id, name="Old")
    with pytest.raises(folders.SpecialFolderLocked):
        await folders.delete_folder(db=db, user_id=user_id, folder_id=archive.id)
    await folders.rename_folder(db=db, user_id=user_id, folder_id=year.id, name="Archive")  # not at the top
    await folders.move_folder(db=db, user_id=user_id, folder_id=other.id, parent_id=archive.id)
    names = {f.path: f.special_use for f in await list_folders(db=db, user_id=user_id)}
    assert {"Inbox", "Sent", "Drafts", "Trash", "Junk", "Outbox", "Archive", "Archive/Archive", "Archive/Other"} == set(
        names
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "/",
        "a/b",
        "/leading",
        "trailing/",
        ".",
        "..",
        "x" * 2000,
        "x" * 256,
        "line\r\nbreak",
        "line\nfeed",
        "tab\tinside",
        "nul\x00byte",
        "del\x7f",
        "c1\x85",
        "line\u2028separator",
        "para\u2029separator",
        "\u202eevil\u202c",
        "lone \ud800 surrogate",
    ],
)
async def test_bad_names_are_refused_with_one_sentence_and_change_nothing(db: Database, name: str) -> None:
    user_id = await _user(db)
    existing = await folders.create_folder(db=db, user_id=user_id, name="Existing")
    before = await _paths(db, user_id)
    with pytest.raises(FolderNameInvalid) as created:
        await folders.create_folder(db=db, user_id=user_id, name=name)
    with pytest.raises(FolderNameInvalid) as renamed:
        await folders.rename_folder(db=db, user_id=user_id, folder_id=existing.id, name=name)
    for error in (created.value, renamed.value):
        assert error.message.endswith(".")
        assert error.message.count(". ") == 0
    assert await _paths(db, user_id) == before


async def test_unicode_names_are_kept_and_compared_as_people_read_them(db: Database) -> None:
    user_id = await _user(db)
    munich = await folders.create_folder(db=db, user_id=user_id, name="Mu\u0308nchen")  # decomposed ü
    assert munich.name == "München"  # stored as NFC
    for clash in ("MÜNCHEN", "münchen", "\uff2dünchen"):  # case and full-width forms are the same name
        with pytest.raises(folders.FolderNameTaken, match="München"):
            await folders.create_folder(db=db, user_id=user_id, name=clash)
    punycode = await folders.create_folder(db=db, user_id=user_id, name="xn--mnchen-3ya")  # a different name
    cyrillic = await folders.create_folder(
        db=db, user_id=user_id, name="\u0440\u0430\u0443\u0440\u0430l"
    )  # looks Latin, is not
    emoji = await folders.create_folder(
        db=db, user_id=user_id, name="Family \U0001f468\u200d\U0001f469\u200d\U0001f467"
    )
    assert {punycode.path, cyrillic.path, emoji.path} <= set(await _paths(db, user_id))
    # A case-only rename of the folder itself is allowed.
    assert (await folders.rename_folder(db=db, user_id=user_id, folder_id=munich.id, name="MÜNCHEN")).path == "MÜNCHEN"
    # The same name under another parent is fine.
    child = await folders.create_folder(db=db, user_id=user_id, name="münchen", parent_id=punycode.id)
    assert child.path == "xn--mnchen-3ya/münchen"
    with pytest.raises(folders.FolderNameTaken):  # moving next to a same-named folder is refused
        await folders.move_folder(db=db, user_id=user_id, folder_id=child.id, parent_id=None)


async def test_paths_stay_within_the_column(db: Database) -> None:
    user_id = await _user(db)
    parent_id: int | None = None
    for n in range(3):  # 3 x 255 characters and two slashes: 767
        parent_id = (await folders.create_folder(db=db, user_id=user_id, name=str(n) * 255, parent_id=parent_id)).id
    with pytest.raises(FolderNameInvalid, match="1000"):
        await folders.create_folder(db=db, user_id=user_id, name="y" * 255, parent_id=parent_id)
    top = await folders.create_folder(db=db, user_id=user_id, name="z" * 240)
    chain_top = next(f for f in await list_folders(db=db, user_id=user_id) if f.path == "0" * 255)
    with pytest.raises(FolderNameInvalid, match="1000"):  # its deepest child would pass 1,000
        await folders.move_folder(db=db, user_id=user_id, folder_id=chain_top.id, parent_id=top.id)
    assert "0" * 255 in await _paths(db, user_id)


async def test_a_folder_cannot_move_into_itself_or_below_itself(db: Database) -> None:
    user_id = await _user(db)
    a = await folders.create_folder(db=db, user_id=user_id, name="A")
    b = await folders.create_folder(db=db, user_id=user_id, name="B", parent_id=a.id)
    c = await folders.create_folder(db=db, user_id=user_id, name="C", parent_id=b.id)
    for target in (a.id, b.id, c.id):
        with pytest.raises(folders.FolderMoveInvalid, match="inside itself"):
            await folders.move_folder(db=db, user_id=user_id, folder_id=a.id, parent_id=target)
    assert await folders.move_folder(db=db, user_id=user_id, folder_id=c.id, parent_id=None)
    assert {"A", "A/B", "C"} <= set(await _paths(db, user_id))


async def test_another_users_folder_is_not_found(db: Database) -> None:
    owner = await _user(db, "owner@example.test")
    mallory = await _user(db, "mallory@example.test")
    mine = await folders.create_folder(db=db, user_id=owner, name="Private")
    trash = await _special(db, owner, SpecialUse.TRASH)
    with pytest.raises(folders.FolderMissing):
        await folders.rename_folder(db=db, user_id=mallory, folder_id=mine.id, name="Taken")
    with pytest.raises(folders.FolderMissing):
        await folders.delete_folder(db=db, user_id=mallory, folder_id=mine.id)
    with pytest.raises(folders.FolderMissing):
        await folders.create_folder(db=db, user_id=mallory, name="Inside", parent_id=mine.id)
    with pytest.raises(folders.FolderMissing):
        await folders.empty_folder(db=db, user_id=mallory, folder_id=trash)
    own = await folders.create_folder(db=db, user_id=mallory, name="Mine")
    with pytest.raises(folders.FolderMissing):
        await folders.move_folder(db=db, user_id=mallory, folder_id=own.id, parent_id=mine.id)
    assert "Private" in await _paths(db, owner)


async def test_search_finds_mail_under_the_new_name_and_forgets_emptied_trash(db: Database) -> None:
    user_id = await _user(db)
    old = await folders.create_folder(db=db, user_id=user_id, name="Receipts")
    await _fill(db, user_id, "Receipts", "invoice zeppelin", "invoice walrus")
    assert sorted(await _found(db, user_id, "in:Receipts invoice")) == ["invoice walrus", "invoice zeppelin"]

    await folders.rename_folder(db=db, user_id=user_id, folder_id=old.id, name="Paid bills")
    assert sorted(await _found(db, user_id, 'in:"Paid bills" invoice')) == ["invoice walrus", "invoice zeppelin"]
    assert await _found(db, user_id, "in:Receipts invoice") == []
    assert sorted(await _found(db, user_id, "zeppelin")) == ["invoice zeppelin"]

    await folders.delete_folder(db=db, user_id=user_id, folder_id=old.id)
    assert sorted(await _found(db, user_id, "in:Trash invoice")) == ["invoice walrus", "invoice zeppelin"]

    junk = await _special(db, user_id, SpecialUse.JUNK)
    await _fill(db, user_id, "Junk", "cheap zeppelin tickets")
    trash = await _special(db, user_id, SpecialUse.TRASH)
    assert await folders.empty_folder(db=db, user_id=user_id, folder_id=trash) == 2
    assert await _found(db, user_id, "zeppelin") == ["cheap zeppelin tickets"]
    assert await folders.empty_folder(db=db, user_id=user_id, folder_id=junk) == 1
    assert await _found(db, user_id, "zeppelin") == []
    assert await folders.empty_folder(db=db, user_id=user_id, folder_id=junk) == 0
    async with db.read() as session:  # the bodies went with the index rows
        assert await body_count(session) == 0
        assert (await session.exec(select(func.count()).select_from(Message))).one() == 0
    shown = await assert_counts_exact(db, user_id)
    assert (shown["Trash"], shown["Junk"]) == ((0, 0), (0, 0))


async def test_filter_rules_follow_a_renamed_folder(db: Database) -> None:
    user_id = await _user(db)
    parent = await folders.create_folder(db=db, user_id=user_id, name="Lists")
    await folders.create_folder(db=db, user_id=user_id, name="Python", parent_id=parent.id)
    rule = FilterRule(
        name="python-dev",
        conditions=(Condition(FilterField.SUBJECT, FilterOp.CONTAINS, "[python-dev]"),),
        actions=(Action(ActionKind.MOVE, "Lists/Python"), Action(ActionKind.MARK_READ)),
    )
    await filters.create_rule(db=db, user_id=user_id, rule=rule)
    await folders.rename_folder(db=db, user_id=user_id, folder_id=parent.id, name="Mailing lists")
    [stored] = await filters.list_rules(db=db, user_id=user_id)
    assert stored.actions[0] == Action(ActionKind.MOVE, "Mailing lists/Python")
    assert stored.actions[1].kind is ActionKind.MARK_READ


async def test_a_folder_a_filter_rule_moves_mail_into_cannot_be_deleted(db: Database) -> None:
    """The rule's next match would create the folder again; the refusal names the rule."""
    user_id = await _user(db)
    parent = await folders.create_folder(db=db, user_id=user_id, name="Lists")
    await folders.create_folder(db=db, user_id=user_id, name="Python", parent_id=parent.id)
    other = await folders.create_folder(db=db, user_id=user_id, name="Listserv")
    rule = FilterRule(
        name="python-dev",
        conditions=(Condition(FilterField.SUBJECT, FilterOp.CONTAINS, "[python-dev]"),),
        actions=(Action(ActionKind.MARK_READ), Action(ActionKind.MOVE, "Lists/Python")),
    )
    await filters.create_rule(db=db, user_id=user_id, rule=rule)
    with pytest.raises(folders.FolderInUse, match='filter rule "python-dev"'):
        await folders.delete_folder(db=db, user_id=user_id, folder_id=parent.id)
    assert {"Lists", "Lists/Python"} <= set(await _paths(db, user_id))
    assert (await folders.delete_folder(db=db, user_id=user_id, folder_id=other.id)).folders == 1


async def _task(
    db: Database, user_id: int, name: str, protocol: Protocol, destination_folder: str | None = None
) -> int:
    async with db.write() as session:
        task = RetrievalTask(
            user_id=user_id,
            name=name,
            protocol=protocol,
            host="mail.example.test",
            port=993,
            username="a@example.test",
            destination_folder=destination_folder,
        )
        session.add(task)
        await session.flush()
        assert task.id is not None
        return task.id


async def _destination(db: Database, task_id: int) -> str | None:
    async with db.read() as session:
        task = await session.get(RetrievalTask, task_id)
        assert task is not None
        return task.destination_folder


async def test_task_destinations_follow_renames_and_moves_and_block_deletion(db: Database) -> None:
    user_id = await _user(db)
    isp = await folders.create_folder(db=db, user_id=user_id, name="Old ISP")
    pop = await _task(db, user_id, name="pop", protocol=Protocol.POP3, destination_folder="Old ISP")
    nested = await _task(db, user_id, name="nested", protocol=Protocol.IMAP, destination_folder="Old ISP/Work")
    default = await _task(db, user_id, name="Old ISP", protocol=Protocol.IMAP)  # fills "Old ISP" by its name
    elsewhere = await _task(db, user_id, name="x", protocol=Protocol.POP3, destination_folder="Old ISPs")
    inbox_pop = await _task(db, user_id, name="y", protocol=Protocol.POP3)

    await folders.rename_folder(db=db, user_id=user_id, folder_id=isp.id, name="Former provider")
    assert [await _destination(db, t) for t in (pop, nested, default, elsewhere, inbox_pop)] == [
        "Former provider",
        "Former provider/Work",
        "Former provider",
        "Old ISPs",
        None,
    ]
    old = await folders.create_folder(db=db, user_id=user_id, name="Old stuff")
    await folders.move_folder(db=db, user_id=user_id, folder_id=isp.id, parent_id=old.id)
    assert await _destination(db, nested) == "Old stuff/Former provider/Work"

    with pytest.raises(folders.FolderInUse, match='"pop"'):
        await folders.delete_folder(db=db, user_id=user_id, folder_id=old.id)
    assert "Old stuff/Former provider" in await _paths(db, user_id)


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def test_retrieval_delivers_into_the_renamed_destination_not_a_new_old_one(env: Env) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("before the rename"))
    task_id = await env.add_task(name="Remote")  # "Add as subfolders" into "Remote"
    assert (await env.run(task_id)).imported == 1
    remote = (await _paths(env.db, env.user_id))["Remote"]

    await folders.rename_folder(db=env.db, user_id=env.user_id, folder_id=remote, name="Old provider")
    env.dovecot.deliver(env.mailbox.email, sample("after the rename"))
    assert (await env.run(task_id)).imported == 1

    paths = await _paths(env.db, env.user_id)
    assert not any(p == "Remote" or p.startswith("Remote/") for p in paths)
    assert (await env.local_counts())["Old provider/INBOX"] == 2
    assert await _destination(env.db, task_id) == "Old provider"
    async with env.db.read() as session:
        folder_ids = set((await session.exec(select(col(Message.folder_id)))).all())
        names = (await session.exec(select(Folder.path).where(col(Folder.id).in_(folder_ids)))).all()
    assert names == ["Old provider/INBOX"]


# Over HTTP: the delete rule, Empty Trash, the Folders settings page and the API


async def _web_user(client: WebClient, db: Database) -> int:
    await set_up_admin(client)
    return (await find_user(db=db, email=ADMIN_EMAIL)).id


async def _act(client: WebClient, action: str, ids: list[int], folder: int) -> httpx.Response:
    data = {
        "_csrf_token": await csrf_token(client),
        "action": action,
        "folder": str(folder),
        "ids": [str(i) for i in ids],
    }
    return await client.post("/mail/messages/action", data=data)


async def test_delete_moves_to_trash_and_in_the_trash_deletes_for_good(web_client: WebClient, db: Database) -> None:
    user_id = await _web_user(web_client, db)
    first, second, third = await _fill(db, user_id, "Inbox", "first", "second", "third")
    inbox, trash = await _special(db, user_id, SpecialUse.INBOX), await _special(db, user_id, SpecialUse.TRASH)

    trashed = await _act(web_client, "delete", [first, second], inbox)
    assert trashed.headers["location"] == f"/mail/folders/{inbox}?notice=trashed&n=2"
    assert sorted(await _found(db, user_id, "in:Trash")) == ["first", "second"]
    gone = await _act(web_client, "delete", [first], trash)
    assert gone.headers["location"] == f"/mail/folders/{trash}?notice=deleted&n=1"
    assert await _found(db, user_id, "in:Trash") == ["second"]
    answer = await api(web_client, "DELETE", f"/messages/{third}")
    assert answer.json() == {"trashed": 1, "deleted": 0}
    assert (await api(web_client, "DELETE", f"/messages/{third}")).json() == {"trashed": 0, "deleted": 1}
    async with db.read() as session:
        assert await body_count(session) == 1
    assert (await assert_counts_exact(db, user_id))["Trash"] == (1, 1)


async def test_empty_trash_and_junk_ask_first_then_delete_everything_for_good(
    web_client: WebClient, db: Database
) -> None:
    user_id = await _web_user(web_client, db)
    await _fill(db, user_id, "Trash", "old one", "old two")
    await _fill(db, user_id, "Junk", "spam")
    keep = await _fill(db, user_id, "Inbox", "keep me")
    trash, junk = await _special(db, user_id, SpecialUse.TRASH), await _special(db, user_id, SpecialUse.JUNK)
    inbox = await _special(db, user_id, SpecialUse.INBOX)

    listing = (await web_client.get(f"/mail/folders/{trash}")).text
    assert 'form="empty-folder"' in listing
    assert ">Empty Trash</button>" in listing
    assert f'action="/mail/folders/{trash}/empty"' in listing
    assert "hx-confirm=" in listing
    assert ">Empty Junk</button>" in (await web_client.get(f"/mail/folders/{junk}")).text
    assert "Empty Trash" not in (await web_client.get(f"/mail/folders/{inbox}")).text

    asked = await post_form(web_client, f"/mail/folders/{trash}/empty", {})  # no scripts: a page asks first
    assert asked.status_code == 200
    assert "All 2 messages in Trash are deleted for good." in asked.text
    assert await _found(db, user_id, "in:Trash") != []
    done = await post_form(web_client, f"/mail/folders/{trash}/empty", {"confirm": "yes"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/mail/folders/{trash}?notice=deleted&n=2"
    assert "2 messages deleted for good." in (await web_client.get(done.headers["location"])).text
    htmx = await web_client.post(  # after htmx's confirm dialog
        f"/mail/folders/{junk}/empty",
        data={"_csrf_token": await csrf_token(web_client)},
        headers={"HX-Request": "true"},
    )
    assert htmx.headers["hx-redirect"] == f"/mail/folders/{junk}?notice=deleted&n=1"
    for confirm in ({}, {"confirm": "yes"}):  # refused before asking, and after
        refused = await post_form(web_client, f"/mail/folders/{inbox}/empty", confirm)
        assert refused.status_code == 400
        assert "Only the Trash and Junk folders can be emptied." in refused.text
    async with db.read() as session:
        assert (await session.exec(select(col(Message.id)))).all() == keep
        assert await body_count(session) == 1
    assert (await api(web_client, "POST", f"/folders/{trash}/empty")).json() == {"deleted": 0}


async def test_the_folders_page_creates_renames_moves_and_deletes(web_client: WebClient, db: Database) -> None:
    user_id = await _web_user(web_client, db)
    page = await web_client.get("/settings/folders")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/settings/folders" aria-current="page">Folders</a>' in page.text
    assert 'href="/settings/account"' in page.text

    made = await post_form(web_client, "/settings/folders", {"name": "Clients", "parent": ""})
    assert made.status_code == 303
    clients = (await _paths(db, user_id))["Clients"]
    assert "Created the folder Clients." in (await web_client.get("/settings/folders")).text
    await post_form(web_client, "/settings/folders", {"name": "Acme", "parent": str(clients)})
    acme = (await _paths(db, user_id))["Clients/Acme"]
    await _fill(db, user_id, "Clients/Acme", "order 1", "order 2")

    clash = await post_form(web_client, "/settings/folders", {"name": "clients", "parent": ""})
    assert clash.status_code == 409
    assert 'There is already a folder named "Clients" here.' in unescape(clash.text)
    assert 'value="clients"' in clash.text  # what was typed stays
    bad = await post_form(web_client, f"/settings/folders/{clients}/rename", {"name": "a/b"})
    assert bad.status_code == 400
    assert 'A folder name cannot contain "/"' in unescape(bad.text)

    assert (
        await post_form(web_client, f"/settings/folders/{clients}/rename", {"name": "Customers"})
    ).status_code == 303
    assert {"Customers", "Customers/Acme"} <= set(await _paths(db, user_id))
    tree = (await web_client.get("/settings/folders")).text
    assert "Renamed the folder to Customers." in tree
    assert "2 messages, 2 unread" in tree
    moved = await post_form(web_client, "/settings/folders/move", {"folder": str(acme), "parent": ""})
    assert moved.status_code == 303
    assert "Acme" in await _paths(db, user_id)
    into_self = await post_form(web_client, "/settings/folders/move", {"folder": str(clients), "parent": str(clients)})
    assert into_self.status_code == 400

    asked = await post_form(web_client, f"/settings/folders/{acme}/delete", {})
    assert asked.status_code == 200
    assert "their messages go to Trash" in asked.text
    assert "Acme" in await _paths(db, user_id)
    deleted = await post_form(web_client, f"/settings/folders/{acme}/delete", {"confirm": "yes"})
    assert deleted.status_code == 303
    assert "Deleted the folder Acme; 2 messages moved to Trash." in (await web_client.get("/settings/folders")).text
    assert (await assert_counts_exact(db, user_id))["Trash"] == (2, 2)
    inbox = await _special(db, user_id, SpecialUse.INBOX)
    for confirm in ({}, {"confirm": "yes"}):  # refused before asking, and after
        special = await post_form(web_client, f"/settings/folders/{inbox}/delete", confirm)
        assert special.status_code == 400
        assert "Inbox is a special folder" in special.text


async def test_the_api_manages_folders(web_client: WebClient, db: Database) -> None:
    user_id = await _web_user(web_client, db)
    made = await api(web_client, "POST", "/folders", {"name": "Travel"})
    assert made.status_code == 201, made.text
    travel = made.json()["id"]
    child = (await api(web_client, "POST", "/folders", {"name": "2026", "parent_id": travel})).json()
    assert child["path"] == "Travel/2026"
    assert (await api(web_client, "POST", "/folders", {"name": "travel"})).status_code == 409
    bad = await api(web_client, "POST", "/folders", {"name": "a\u2028b"})
    assert bad.status_code == 400
    assert bad.json() == {"error": "A folder name cannot contain line breaks or other control characters."}
    renamed = await api(web_client, "PATCH", f"/folders/{travel}", {"name": "Trips"})
    assert renamed.json()["path"] == "Trips"
    assert {"Trips", "Trips/2026"} <= set(await _paths(db, user_id))
    moved = await api(web_client, "POST", f"/folders/{child['id']}/move", {"parent_id": None})
    assert moved.json()["path"] == "2026"
    await _fill(db, user_id, "2026", "boarding pass")
    assert (await api(web_client, "DELETE", f"/folders/{child['id']}")).json() == {"folders": 1, "trashed": 1}
    inbox = await _special(db, user_id, SpecialUse.INBOX)
    assert (await api(web_client, "PATCH", f"/folders/{inbox}", {"name": "Mine"})).status_code == 400
    assert (await api(web_client, "DELETE", "/folders/999999")).status_code == 404
    assert (await api(web_client, "DELETE", f"/folders/{travel}", csrf=False)).status_code == 403
