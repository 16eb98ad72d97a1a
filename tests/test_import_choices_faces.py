"""What to import (issue 18) through the CLI and the API: `retrieval add --initial ...
--include-folder ... --exclude-folder ...`, `"initial"`, `"include_folders"` and `"exclude_folders"`
in the API and in `retrieval list --json`, and bad choices refused in words."""

from __future__ import annotations

import json

from service.config import Settings
from service.persistence.database import Database
from tests.cli_runner import tributary
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient
from tests.mail_samples import sample
from tests.test_api import api, ok, signed_in, task_body, trusting_client

__all__ = ["trusting_client"]  # the fixture, used by name below


def test_the_cli_adds_lists_and_runs_with_import_choices(
    settings: Settings, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    settings = settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})
    dovecot.deliver(mail_user.email, sample("already there"))
    dovecot.deliver(mail_user.email, sample("in Entwürfe"), folder="Entwürfe")
    assert (
        tributary(settings, "user", "add", "me@example.test", "--password-stdin", stdin="long enough\n").returncode == 0
    )
    base = (
        *("retrieval", "add", "--user", "me@example.test", "--protocol", "imap", "--server", "127.0.0.1"),
        *("--port", str(dovecot.imaps_port), "--username", mail_user.email, "--password-stdin", "--manual"),
    )

    for bad, words in (  # one date and one pattern: the rest of the worst inputs are the domain tests'
        (("--initial", "since:2024-02-30"), "is not a date"),
        (("--exclude-folder", "a\r\nb"), "line breaks"),
    ):
        refused = tributary(settings, *base, *bad, stdin=mail_user.password + "\n")
        assert refused.returncode != 0
        assert words in refused.stderr, refused.stderr

    added = tributary(
        settings,
        *base,
        *("--initial", "new", "--exclude-folder", "Entwürfe", "--exclude-folder", "Spam**", "--json"),
        stdin=mail_user.password + "\n",
    )
    assert added.returncode == 0, added.stderr
    task_id = json.loads(added.stdout)["id"]
    listed = json.loads(tributary(settings, "retrieval", "list", "--user", "me@example.test", "--json").stdout)
    assert [(t["initial"], t["include_folders"], t["exclude_folders"]) for t in listed] == [
        ("new", [], ["Entwürfe", "Spam*"])
    ]
    text = tributary(settings, "retrieval", "list", "--user", "me@example.test").stdout
    assert "initial: new folders: -Entwürfe -Spam*" in text
    assert json.loads(tributary(settings, "retrieval", "run", str(task_id), "--json").stdout)["imported"] == 0
    dovecot.deliver(mail_user.email, sample("arrived later"))
    dovecot.deliver(mail_user.email, sample("later in Entwürfe"), folder="Entwürfe")
    assert json.loads(tributary(settings, "retrieval", "run", str(task_id), "--json").stdout)["imported"] == 1


async def test_the_api_takes_and_returns_import_choices(
    trusting_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    client = trusting_client
    await signed_in(client, db)
    dovecot.deliver(mail_user.email, sample("one"), folder="Архив/2024")
    tested = ok(await api(client, "POST", "/retrieval-tasks/test", task_body(dovecot, mail_user)))
    assert {"path": "Архив/2024", "messages": 1} in tested["folders"]
    assert {f["path"] for f in tested["folders"]} >= {"INBOX", "Архив/2024"}
    body = task_body(dovecot, mail_user, initial="since:2024-03-01", include_folders=["INBOX", "Архив/*"])
    created = ok(await api(client, "POST", "/retrieval-tasks", body), 201)
    assert (created["initial"], created["include_folders"], created["exclude_folders"]) == (
        "since:2024-03-01",
        ["INBOX", "Архив/*"],
        [],
    )
    task_id = created["id"]
    changed = task_body(dovecot, mail_user, password="", initial="all", exclude_folders=["Spam"])
    updated = ok(await api(client, "PUT", f"/retrieval-tasks/{task_id}", changed))
    assert (updated["initial"], updated["include_folders"], updated["exclude_folders"]) == ("all", [], ["Spam"])
    assert ok(await api(client, "GET", "/retrieval-tasks"))[0]["exclude_folders"] == ["Spam"]

    for bad in (
        {"initial": "since:2024-1-1"},
        {"initial": "since:2024-01-01\r\n"},
        {"include_folders": ["x" * 1001]},
        {"exclude_folders": ["\x00"]},
        {"include_folders": "INBOX"},
    ):
        answer = await api(client, "POST", "/retrieval-tasks", task_body(dovecot, mail_user, **bad))
        assert answer.status_code == 400, (bad, answer.text)
