"""`tributary retrieval ...`, `folders`, `messages` and `export`, run as real processes."""

from __future__ import annotations

import json

from service.config import Settings
from tests.cli_runner import tributary, tributary_bytes
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample


def test_retrieve_and_export_byte_for_byte(settings: Settings, dovecot: DovecotServer, mail_user: MailUser) -> None:
    settings = settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})
    for raw in (EIGHT_BIT, MALFORMED):
        dovecot.deliver(mail_user.email, raw, folder="Reisen/Ça va")
    dovecot.deliver(mail_user.email, sample("plain one"))
    assert (
        tributary(settings, "user", "add", "me@example.test", "--password-stdin", stdin="long enough\n").returncode == 0
    )

    added = tributary(
        settings,
        *("retrieval", "add", "--user", "me@example.test", "--protocol", "imap", "--server", "127.0.0.1"),
        *("--port", str(dovecot.imaps_port), "--security", "ssl", "--username", mail_user.email),
        *("--password-stdin", "--folder-transfer", "root", "--manual", "--json"),
        stdin=mail_user.password + "\n",
    )
    assert added.returncode == 0, added.stderr
    task_id = json.loads(added.stdout)["id"]
    assert mail_user.password not in added.stdout + added.stderr

    listed = json.loads(tributary(settings, "retrieval", "list", "--user", "me@example.test", "--json").stdout)
    assert [(t["id"], t["method"], t["folder_transfer"]) for t in listed] == [(task_id, "manual", "root")]
    assert [(t["auth"], t["status"]) for t in listed] == [("password", "ok")]
    assert not [key for t in listed for key in t if "password" in key]
    assert mail_user.password not in json.dumps(listed)

    ran = tributary(settings, "retrieval", "run", str(task_id), "--json")
    assert ran.returncode == 0, ran.stderr
    outcome = json.loads(ran.stdout)
    assert (outcome["imported"], outcome["skipped"], outcome["errors"]) == (3, 0, [])
    again = json.loads(tributary(settings, "retrieval", "run", str(task_id), "--json").stdout)
    assert again["imported"] == 0

    folders = json.loads(tributary(settings, "folders", "--user", "me@example.test", "--json").stdout)
    assert {f["path"]: f["total"] for f in folders}["Reisen/Ça va"] == 2

    shown = tributary(settings, "messages", "--user", "me@example.test", "--folder", "Reisen/Ça va", "--json")
    messages = json.loads(shown.stdout)
    assert {m["folder"] for m in messages} == {"Reisen/Ça va"}
    assert set(messages[0]) == {"id", "folder", "subject", "from", "date", "message_id", "size"}
    exported = sorted(
        tributary_bytes(settings, "export", "--user", "me@example.test", "--id", str(m["id"])).stdout for m in messages
    )
    assert exported == sorted([EIGHT_BIT, MALFORMED])

    tested = tributary(settings, "retrieval", "test", str(task_id), "--json")
    assert tested.returncode == 0, tested.stdout
    assert [s["name"] for s in json.loads(tested.stdout)["steps"]][-1] == "folders"

    deleted = tributary(settings, "retrieval", "delete", str(task_id))
    assert deleted.returncode == 0
    assert json.loads(tributary(settings, "retrieval", "list", "--user", "me@example.test", "--json").stdout) == []


def test_failed_run_exits_non_zero_with_the_reason(
    settings: Settings, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    settings = settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})
    assert (
        tributary(settings, "user", "add", "me@example.test", "--password-stdin", stdin="long enough\n").returncode == 0
    )
    added = tributary(
        settings,
        *("retrieval", "add", "--user", "me@example.test", "--protocol", "imap", "--server", "127.0.0.1"),
        *("--port", str(dovecot.imaps_port), "--username", mail_user.email, "--password-stdin", "--json"),
        stdin="wrong password\n",
    )
    task_id = json.loads(added.stdout)["id"]
    ran = tributary(settings, "retrieval", "run", str(task_id))
    assert ran.returncode == 1
    assert "rejected the username or password" in ran.stderr
    assert "wrong password" not in ran.stdout + ran.stderr


def test_retrieval_refused_when_the_administrator_turned_it_off(settings: Settings) -> None:
    assert (
        tributary(settings, "user", "add", "me@example.test", "--password-stdin", stdin="long enough\n").returncode == 0
    )
    assert tributary(settings, "domain", "set", "example.test", "--retrieval", "off").returncode == 0
    added = tributary(
        settings,
        *("retrieval", "add", "--user", "me@example.test", "--protocol", "imap", "--server", "imap.example.test"),
        *("--username", "me", "--password-stdin"),
        stdin="secret\n",
    )
    assert added.returncode == 1
    assert added.stderr.strip() == "Your administrator turned off IMAP/POP Retrieval for example.test."
