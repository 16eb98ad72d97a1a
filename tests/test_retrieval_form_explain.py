"""The Retrieval Task form explains the two folder transfer methods with the folder names they give
THIS task (issue 17, "rough edges"): under "Add as subfolders", "Remote INBOX → <destination>/INBOX,
Sent → <destination>/Sent, Work/2024 → <destination>/Work/2024", the destination being the one typed
or the folder named after the account; under "Add as root level folders", "Remote INBOX → Inbox,
Sent → Sent, Work/2024 → Work/2024". The subfolders line follows the name, username, server and
destination as they are typed (htmx). Against Dovecot, a run puts the mail where the form said."""

from __future__ import annotations

import html
import re

import pytest
from litestar import Litestar
from playwright.sync_api import Browser, expect
from sqlmodel import col, select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.tables import Folder, Message
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.mail_samples import sample
from tests.settings_web import htmx_post, task_fields, text_of
from web.app import create_app

EXAMPLE = re.compile(r'<p class="hint transfer-example" id="task-folder_transfer-(\w+)-example"[^>]*>([^<]*)</p>')
ROOT_LINE = "Remote INBOX → Inbox, Sent → Sent, Work/2024 → Work/2024."
REMOTE_FOLDERS = ("INBOX", "Sent", "Work/2024")


@pytest.fixture
def web_app(settings: Settings, dovecot: DovecotServer) -> Litestar:
    """The app, trusting the Dovecot fixture's self-signed certificate."""
    return create_app(settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path}))


def _lines(page: str) -> dict[str, str]:
    """Each method's example line as a reader sees it: {"subfolders": "...", "root": "..."}."""
    return {mode: " ".join(html.unescape(line).split()) for mode, line in EXAMPLE.findall(page)}


def _subfolders(destination: str) -> str:
    return "Remote " + ", ".join(f"{f} → {destination}/{f}" for f in REMOTE_FOLDERS) + "."


def _mapping(line: str) -> dict[str, str]:
    """ "Remote A → B, C → D." as {"A": "B", "C": "D"}."""
    pairs = line.removeprefix("Remote ").removesuffix(".").split(", ")
    return dict(pair.split(" → ") for pair in pairs)


async def test_the_new_form_explains_both_methods(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    form = (await web_client.get("/settings/retrieval/new")).text
    assert _lines(form) == {"subfolders": _subfolders("<account name>"), "root": ROOT_LINE}
    for mode in ("subfolders", "root"):  # read out with the choice itself
        radio = re.search(rf'<input id="task-folder_transfer-{mode}"[^>]*>', form)
        assert radio is not None
        assert f"task-folder_transfer-{mode}-example" in radio.group(0)

    # A form that comes back after a mistake explains it for what was typed.
    typo = await post_form(
        web_client, "/settings/retrieval/new", {"protocol": "imap", "name": "Old ISP", "host": "x", "port": "x"}
    )
    assert typo.status_code == 400
    assert _lines(typo.text)["subfolders"] == _subfolders("Old ISP")


@pytest.mark.parametrize(
    ("typed", "destination"),
    [
        ({"name": "Old ISP"}, "Old ISP"),
        ({"name": "  Home/Work  ", "username": "bob"}, "Home_Work"),  # a "/" would make it two levels
        ({"username": "bob@old.example"}, "bob@old.example"),
        ({"username": "bob", "host": "IMAP.Old.Example"}, "bob@imap.old.example"),  # the host as stored
        ({"username": "bob"}, "<account name>"),  # not known until the server is typed
        ({"name": "Old ISP", "destination_folder": "/Archive/Old ISP/ "}, "Archive/Old ISP"),
        ({"name": "<b>Old</b>"}, "<b>Old<_b>"),  # shown as text (its "/" made a "_")
    ],
)
async def test_the_subfolders_example_follows_what_is_typed(
    web_client: WebClient, typed: dict[str, str], destination: str
) -> None:
    await set_up_admin(web_client)
    answer = await web_client.get("/settings/retrieval/transfer-example", params=typed)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "<b>" not in answer.text
    assert _lines(answer.text) == {"subfolders": _subfolders(destination)}


async def test_the_example_needs_a_signed_in_user(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    web_client.cookies.clear()
    answer = await web_client.get("/settings/retrieval/transfer-example", params={"name": "x"}, follow_redirects=False)
    assert answer.status_code in (303, 401)
    assert "transfer-example" not in answer.text


@pytest.mark.parametrize("mode", ["subfolders", "root"])
async def test_a_run_puts_the_mail_where_the_form_said(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser, mode: str
) -> None:
    await set_up_admin(web_client)
    for remote in REMOTE_FOLDERS:
        dovecot.deliver(mail_user.email, sample(f"Kept in {remote}"), folder=remote)
    fields = task_fields(
        dovecot, mail_user, protocol="imap", port=str(dovecot.imaps_port), name="Old ISP", folder_transfer=mode
    )
    saved = await post_form(web_client, "/settings/retrieval/new", fields)
    assert saved.status_code == 303, text_of(saved.text)
    task_id = int(saved.headers["location"].rsplit("-", 1)[1])
    said = _mapping(_lines((await web_client.get(f"/settings/retrieval/{task_id}/edit")).text)[mode])
    assert set(said) == set(REMOTE_FOLDERS)

    await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Message.subject, Folder.path)
                .join(Folder, col(Folder.id) == col(Message.folder_id))
                .where(Message.task_id == task_id)
            )
        ).all()
    landed = {subject.removeprefix("Kept in "): path for subject, path in rows}
    assert landed == said


@pytest.mark.browser
@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_the_example_changes_as_the_user_types(settings: Settings, live_server: str, browser: Browser) -> None:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto("/setup")
    page.get_by_label("Email address").fill("ada@example.test")
    page.get_by_label("Password", exact=True).fill("correct horse battery staple")
    page.get_by_label("Confirm password").fill("correct horse battery staple")
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    page.goto("/settings/retrieval/new")
    subfolders = page.get_by_role("radio", name="Add as subfolders")
    example = page.locator("#task-folder_transfer-subfolders-example")
    expect(subfolders).to_have_accessible_description(re.compile(r"INBOX → <account name>/INBOX"))
    page.get_by_label("Name", exact=True).fill("Old ISP")
    expect(example).to_have_text(_subfolders("Old ISP"))
    page.get_by_label("Destination folder").fill("Archive")
    expect(example).to_have_text(_subfolders("Archive"))
    expect(subfolders).to_have_accessible_description(re.compile(r"INBOX → Archive/INBOX"))
    expect(page.locator("#task-folder_transfer-root-example")).to_have_text(ROOT_LINE)
    context.close()
