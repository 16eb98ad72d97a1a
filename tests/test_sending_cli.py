"""`tributary smtp ...`, `send` and `outbox` as an operator runs them: a real process, real server, JSON out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.config import Settings
from tests.fixtures.smtp import StartSmtpServer

TRIBUTARY = str(Path(sys.executable).with_name("tributary"))


def run(
    settings: Settings, *args: str, stdin: str = "", ca_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    env["TRIBUTARY_DATA_DIR"] = str(settings.data_dir)
    env["TRIBUTARY_DATABASE_URL"] = settings.async_database_url
    assert settings.secret_key is not None
    env["TRIBUTARY_SECRET_KEY"] = settings.secret_key.get_secret_value()
    env["TRIBUTARY_OUTBOUND_ALLOW"] = settings.outbound_allow  # the aiosmtpd fixture is on loopback
    if ca_file is not None:
        env["TRIBUTARY_EXTRA_CA_FILE"] = str(ca_file)
    return subprocess.run(
        [TRIBUTARY, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_smtp_add_list_test_send_outbox_delete(
    settings: Settings, smtp_server: StartSmtpServer, tmp_path: Path
) -> None:
    server = smtp_server(mode="starttls", users={"alice": "app-password-1"})
    ca = server.cert_pem_path
    user = "alice@example.test"
    created = run(settings, "user", "add", user, "--password-stdin", stdin="long enough\n")
    assert created.returncode == 0, created.stderr

    added = run(
        settings,
        "smtp",
        "add",
        "--user",
        user,
        "--email",
        user,
        "--server",
        server.host,
        "--port",
        str(server.port),
        "--security",
        "starttls",
        "--display-name",
        "Alice Ådahl",
        "--username",
        "alice",
        "--password-stdin",
        "--default",
        "--json",
        stdin="app-password-1\n",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"id": 1}
    assert "app-password-1" not in added.stdout + added.stderr

    listed = run(settings, "smtp", "list", "--user", user, "--json")
    [account] = json.loads(listed.stdout)
    assert (account["id"], account["security"], account["has_password"], account["is_default"]) == (
        1,
        "starttls",
        True,
        True,
    )
    assert "app-password-1" not in listed.stdout
    assert not any("password" in key and key != "has_password" for key in account)

    tested = run(settings, "smtp", "test", "1", ca_file=ca)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "starttls: ok" in tested.stdout
    assert "auth: ok" in tested.stdout
    body = tmp_path / "body.txt"
    body.write_text("Hello Bob,\nsee attached.\n", encoding="utf-8")
    attachment = tmp_path / "Übersicht.csv"
    attachment.write_bytes(b"a,b\n1,2\n")
    sent = run(
        settings,
        "send",
        "--user",
        user,
        "--from",
        "1",
        "--to",
        "Bob <bob@example.test>",
        "--cc",
        "carol@example.test",
        "--bcc",
        "sam@example.test",
        "--subject",
        "Zahlen für Bob",
        "--body-file",
        str(body),
        "--attach",
        str(attachment),
        "--json",
        ca_file=ca,
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"status": "sent", "refused": {}}
    (received,) = server.received
    assert received.rcpt_tos == ["bob@example.test", "carol@example.test", "sam@example.test"]
    assert b"sam@example.test" not in received.data
    assert b"filename*=utf-8''%C3%9Cbersicht.csv" in received.data

    everything = run(settings, "outbox", "--user", user, "--all", "--json")
    [entry] = json.loads(everything.stdout)
    assert (entry["status"], entry["subject"], entry["accepted"]) == (
        "sent",
        "Zahlen für Bob",
        ["bob@example.test", "carol@example.test", "sam@example.test"],
    )

    deleted = run(settings, "smtp", "delete", "1")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "Deleted SMTP account 1."


def test_send_errors_are_one_sentence_on_stderr(settings: Settings) -> None:
    user = "alice@example.test"
    created = run(settings, "user", "add", user, "--password-stdin", stdin="long enough\n")
    assert created.returncode == 0, created.stderr
    added = run(settings, "smtp", "add", "--user", user, "--email", user, "--server", "127.0.0.1", "--security", "none")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "1"

    injected = run(
        settings, "send", "--user", user, "--from", "1", "--to", "b@example.test", "--subject", "a\nBcc: x@y.z"
    )
    assert (injected.returncode, injected.stdout) == (1, ""), injected.stderr
    assert injected.stderr.strip() == "The subject cannot contain line breaks or other control characters."

    switched = run(settings, "domain", "set", "example.test", "--smtp-accounts", "off")
    assert switched.returncode == 0, switched.stderr
    refused = run(settings, "send", "--user", user, "--from", "1", "--to", "b@example.test", "--json")
    assert (refused.returncode, refused.stdout) == (1, ""), refused.stderr
    # --json asks for the error as JSON too (issue 19's contract): {"error": sentence} on stderr.
    assert json.loads(refused.stderr) == {"error": "Your administrator turned off SMTP accounts for example.test."}


def test_send_queue_then_worker_once_sends_the_queue_over_one_connection(
    settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user = "carol@example.test"
    assert run(settings, "user", "add", user, "--password-stdin", stdin="long enough\n").returncode == 0
    added = run(
        settings, "smtp", "add", "--user", user, "--email", user, "--server", server.host,
        "--port", str(server.port), "--security", "none", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    account = str(json.loads(added.stdout)["id"])
    for number in range(3):
        queued = run(
            settings, "send", "--user", user, "--from", account, "--to", f"d{number}@example.test", "--queue", "--json"
        )
        assert json.loads(queued.stdout)["status"] == "queued", queued.stderr
    assert server.received == []
    before = server.connections_accepted

    once = run(settings, "worker", "--once")

    assert once.returncode == 0, once.stderr
    assert [m.rcpt_tos for m in server.received] == [[f"d{n}@example.test"] for n in range(3)]
    assert server.connections_accepted - before == 1
    listed = json.loads(run(settings, "outbox", "--user", user, "--json").stdout)
    assert listed == []
