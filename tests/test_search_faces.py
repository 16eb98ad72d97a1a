"""Search through its faces: GET /api/v1/messages/search, the /mail/search page and
`tributary search`, each answering any query text without failing (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import quote

import pytest

from service.config import Settings
from service.persistence import mailstore, search_backlog
from service.persistence.database import Database
from service.usecases.users import add_user
from tests.cli_runner import TRIBUTARY, cli_environment, tributary
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient
from tests.test_api import api, ok, signed_in
from tests.test_search import WORST, make, store
from tests.test_search_backlog import queue

FACE_WORST = [q for q in WORST if len(q) < 5000] + ["x" * 4000, "%", "&page=2", "<script>alert(1)</script>"]


async def _mailbox(db: Database, user_id: int) -> None:
    await store(
        db,
        user_id,
        "Inbox",
        *(make(f"Budget {n}", date=f"Tue, 05 Mar 2024 10:0{n}:00 +0000", body="quarterly figures") for n in range(3)),
    )
    await store(db, user_id, "Archive/2024", make("Filed budget", date="Mon, 04 Mar 2024 09:00:00 +0000"))


async def test_api_search_pages_like_the_message_list(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in(web_client, db)
    await _mailbox(db, user_id)
    other = await add_user(db=db, email="other@example.test", password="long enough")
    await store(db, other.id, "Inbox", make("Budget of someone else", body="quarterly figures"))

    first = ok(await api(web_client, "GET", "/messages/search?q=budget&per_page=2"))
    assert [m["subject"] for m in first["messages"]] == ["Budget 2", "Budget 1"]
    assert (first["page"], first["per_page"], first["next_page"], first["previous_page"]) == (1, 2, 2, None)
    hit = first["messages"][0]
    assert set(hit) == {
        "id", "folder", "folder_id", "folder_name", "subject", "from_address", "date", "size", "seen", "flagged",
        "has_attachments",
    }  # fmt: skip
    assert (hit["folder"], hit["folder_name"], hit["seen"]) == ("Inbox", "Inbox", False)
    second = ok(await api(web_client, "GET", "/messages/search?q=budget&per_page=2&page=2"))
    assert [(m["subject"], m["folder"]) for m in second["messages"]] == [
        ("Budget 0", "Inbox"),
        ("Filed budget", "Archive/2024"),
    ]
    assert (second["next_page"], second["previous_page"]) == (None, 1)
    opened = ok(await api(web_client, "GET", f"/messages/{hit['id']}"))
    assert opened["folder"]["id"] == hit["folder_id"]
    in_archive = ok(await api(web_client, "GET", "/messages/search?q=" + quote('budget in:"archive/2024"')))
    assert [m["subject"] for m in in_archive["messages"]] == ["Filed budget"]
    assert ok(await api(web_client, "GET", "/messages/search?q=someone"))["messages"] == []
    assert ok(await api(web_client, "GET", "/messages/search"))["messages"] == []
    assert (await api(web_client, "GET", "/messages/search?q=budget&page=0")).status_code == 400
    assert (await api(web_client, "GET", "/messages/search?q=budget&per_page=201")).status_code == 400


async def test_api_and_page_answer_any_text(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in(web_client, db)
    await _mailbox(db, user_id)
    for query in FACE_WORST:
        encoded = quote(query.encode("utf-8", "surrogateescape"), safe="")
        found = ok(await api(web_client, "GET", f"/messages/search?q={encoded}"))
        assert all("udget" in m["subject"] for m in found["messages"])
        shown = await web_client.get(f"/mail/search?q={encoded}")
        assert shown.status_code == 200, query
        assert shown.headers["content-type"].startswith("text/html")
        assert "<script>alert" not in shown.text


async def test_api_answers_query_bytes_that_are_not_utf8(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    response = await api(web_client, "GET", "/messages/search?q=%FF%FEbudget%00%C3")
    assert response.status_code in (200, 400), response.text
    assert (await web_client.get("/mail/search?q=%FF%FE%00&page=%FF")).status_code in (200, 400)


async def test_results_page_lists_messages_with_their_folders(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in(web_client, db)
    await _mailbox(db, user_id)
    empty = await web_client.get("/mail/search")
    assert empty.status_code == 200
    assert 'role="search"' in empty.text
    assert 'name="q"' in empty.text
    page = await web_client.get("/mail/search", params={"q": "budget", "page": "1"})
    assert page.status_code == 200
    text = page.text
    assert text.index("Budget 2") < text.index("Budget 1") < text.index("Budget 0") < text.index("Filed budget")
    assert 'href="/mail/folders/' in text
    assert ">Archive/2024</a>" in text
    assert 'value="budget"' in text
    none = await web_client.get("/mail/search", params={"q": "nothing-like-this"})
    assert "No messages match" in none.text
    beyond = await web_client.get("/mail/search", params={"q": "budget", "page": "999999999"})
    assert beyond.status_code == 200


def _run(settings: Settings, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [TRIBUTARY, *args], capture_output=True, env=cli_environment(settings), timeout=120, check=False
    )


async def test_cli_search_json_and_plain(settings: Settings, db: Database) -> None:
    owner = await add_user(db=db, email=ADMIN_EMAIL, password="long enough")
    await _mailbox(db, owner.id)
    result = tributary(settings, "search", "--user", ADMIN_EMAIL, "budget", "after:2024-03-05", "--json")
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert [m["subject"] for m in page["messages"]] == ["Budget 2", "Budget 1", "Budget 0"]
    assert page["messages"][0]["folder"] == "Inbox"
    assert (page["page"], page["next_page"]) == (1, None)
    plain = tributary(settings, "search", "--user", ADMIN_EMAIL, "--per-page", "1", '"quarterly figures"')
    assert plain.returncode == 0, plain.stderr
    assert "Budget 2" in plain.stdout
    assert "(more: --page 2)" in plain.stdout
    nothing = tributary(settings, "search", "--user", ADMIN_EMAIL, "zzzz")
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "No messages found.")
    unknown = tributary(settings, "search", "--user", "nobody@example.test", "budget")
    assert unknown.returncode == 1
    assert "Traceback" not in unknown.stderr


async def test_cli_answers_any_text(settings: Settings, db: Database) -> None:
    await add_user(db=db, email=ADMIN_EMAIL, password="long enough")
    queries = ['"unbalanced', "NEAR(a b) AND -x*", "'; DROP TABLE message; --", "x" * 4000, "\udcff\udcfe"]
    for query in queries:  # the last: bytes that are not UTF-8
        result = _run(
            settings, "search", "--user", ADMIN_EMAIL, "--json", "--", query.encode("utf-8", "surrogateescape")
        )
        assert result.returncode == 0, (query, result.stderr)
        assert json.loads(result.stdout)["messages"] == []


async def test_results_page_clamps_a_page_past_the_deepest_one(web_client: WebClient, db: Database) -> None:
    """A page number beyond what search will walk (10,000 results) shows the deepest page, never an error."""
    user_id = await signed_in(web_client, db)
    await _mailbox(db, user_id)
    for number in ("999", "99999", "1000"):
        shown = await web_client.get(f"/mail/search?q=budget&page={number}")
        assert shown.status_code == 200, number
        assert "must be a number" not in shown.text
        assert "at most" not in shown.text


async def test_api_and_page_say_how_many_messages_are_still_being_indexed(
    web_client: WebClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk retrieval queues mail for the index; a search indexes CATCH_UP of the searcher's queue
    first and says how many still wait (`indexing`), which the next search then finds."""
    user_id = await signed_in(web_client, db)
    async with db.read() as session:
        inbox = (await mailstore.list_folders(session, user_id))[0].id
    assert inbox is not None
    await queue(db, user_id, inbox, *(make(f"Kayak {n}", body="paddle") for n in range(5)))
    monkeypatch.setattr(search_backlog, "CATCH_UP", 2)
    first = ok(await api(web_client, "GET", "/messages/search?q=paddle"))
    assert (len(first["messages"]), first["indexing"]) == (2, 3)
    page = await web_client.get("/mail/search", params={"q": "paddle"})
    assert "Still indexing 1 of your messages for search" in page.text
    last = ok(await api(web_client, "GET", "/messages/search?q=paddle"))
    assert (len(last["messages"]), last["indexing"]) == (5, 0)
    assert "Still indexing" not in (await web_client.get("/mail/search", params={"q": "paddle"})).text
