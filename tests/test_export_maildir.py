"""`tributary export --user EMAIL --maildir DIR [--folder PATH]`: the user's folders as a Maildir++
tree that Python's own Maildir reader (and Dovecot) opens, every message's stored bytes unchanged,
flags in the file names; and `export --id N` exactly as before."""

from __future__ import annotations

import mailbox
import os
import re
from pathlib import Path

import pytest
from imapclient.imap_utf7 import decode as decode_utf7

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.cli_runner import tributary, tributary_bytes
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample

EMAIL = "exporter@example.test"
FROM_LINES = b"Subject: quoting\r\n\r\nFrom the start\r\n>From quoted\r\nnot From here\r\n"
HUGE = b"Subject: huge\r\n\r\n" + b"0123456789abcdef" * (9 * 1024 * 1024 // 16) + b"\r\nend\r\n"

# path -> (Maildir++ directory name); "." and "\\" inside a name are escaped, the rest is mUTF-7.
FOLDERS = {
    "Work/Projects": ".Work.Projects",
    "Reisen/Ça va": ".Reisen.&AMc-a va",
    "Mr. Smith": ".Mr\\2e Smith",
    "back\\slash": ".back\\5cslash",
    "Evil\r\nName": ".Evil&AA0ACg-Name",
    "Inbox/Sub": ".INBOX.Sub",
    "Empty": ".Empty",
    "報告": ".&WDFUSg-",
}


async def _fill(db: Database) -> dict[str, list[tuple[bytes, str]]]:
    """The user's mailbox: path -> [(stored bytes, expected flags)]."""
    user = await add_user(db=db, email=EMAIL, password="long enough")
    stored: dict[str, list[tuple[bytes, str]]] = {}
    plan: dict[str, list[tuple[bytes, dict[str, bool], str]]] = {
        "Inbox": [
            (sample("plain"), {}, ""),
            (EIGHT_BIT, {"seen": True}, "S"),
            (MALFORMED, {"seen": True, "answered": True, "flagged": True, "draft": True}, "DFRS"),
            (FROM_LINES, {"flagged": True, "answered": True}, "FR"),
            (b"", {}, ""),
        ],
        "Work/Projects": [(sample("project"), {"seen": True, "flagged": True}, "FS"), (HUGE, {}, "")],
        "Reisen/Ça va": [(sample("reise"), {}, "")],
        "Mr. Smith": [(sample("smith"), {}, "")],
        "back\\slash": [(sample("slash"), {}, "")],
        "Evil\r\nName": [(sample("evil"), {}, "")],
        "Inbox/Sub": [(sample("sub"), {"draft": True}, "D")],
        "Empty": [],
        "報告": [(sample("report"), {}, "")],
    }
    async with db.write() as session:
        for path, messages in plan.items():
            folder = await folder_by_path(session, user.id, path)
            assert folder.id is not None
            for raw, flags, letters in messages:
                await deliver(
                    session,
                    user_id=user.id,
                    folder_id=folder.id,
                    raw=raw,
                    seen=flags.get("seen", False),
                    flagged=flags.get("flagged", False),
                    answered=flags.get("answered", False),
                    draft=flags.get("draft", False),
                )
                stored.setdefault(path, []).append((raw, letters))
            stored.setdefault(path, [])
    return stored


def _files(directory: Path) -> dict[bytes, str]:
    """The messages of one Maildir folder directory: bytes -> the flags of its file name."""
    assert {p.name for p in directory.iterdir() if p.is_dir()} >= {"cur", "new", "tmp"}
    assert not any((directory / "tmp").iterdir())
    assert not any((directory / "new").iterdir())
    found: dict[bytes, str] = {}
    for path in (directory / "cur").iterdir():
        match = re.fullmatch(r"\d+\.T\d+\.tributary,S=(\d+):2,([A-Z]*)", path.name)
        assert match, path.name
        raw = path.read_bytes()
        assert int(match[1]) == len(raw)
        found[raw] = match[2]
    return found


async def test_every_folder_becomes_a_maildir_with_bytes_and_flags_unchanged(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    stored = await _fill(db)
    target = tmp_path / "export"

    result = tributary(settings, "export", "--user", EMAIL, "--maildir", str(target), "--json")

    assert result.returncode == 0, result.stderr
    assert '"messages": 13' in result.stdout
    assert _files(target) == dict(stored["Inbox"])  # the Inbox is the Maildir++ root
    for path, name in FOLDERS.items():
        assert (target / name / "maildirfolder").is_file()
        assert _files(target / name) == dict(stored[path]), path
    special = {".Sent", ".Drafts", ".Trash", ".Junk", ".Outbox", ".Work", ".Reisen"}  # parents too
    assert {p.name for p in target.iterdir()} == {"cur", "new", "tmp", *FOLDERS.values(), *special}
    # Python's Maildir++ reader sees the same tree; the names decode back to the folder paths.
    reader = mailbox.Maildir(target, create=False)
    decoded = {
        "/".join(decode_utf7(level.encode()).replace("\\2e", ".").replace("\\5c", "\\") for level in name.split("."))
        for name in reader.list_folders()
    }
    assert decoded >= {"Work/Projects", "Reisen/Ça va", "Mr. Smith", "back\\slash", "Evil\r\nName", "INBOX/Sub"}
    assert sorted(m.get_flags() for m in reader.get_folder("Work.Projects")) == ["", "FS"]


async def test_a_message_file_carries_its_arrival_time(db: Database, settings: Settings, tmp_path: Path) -> None:
    user = await add_user(db=db, email=EMAIL, password="long enough")
    async with db.write() as session:
        inbox = await folder_by_path(session, user.id, "Inbox")
        assert inbox.id is not None
        message = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample("dated"))
    target = tmp_path / "export"

    assert tributary(settings, "export", "--user", EMAIL, "--maildir", str(target)).returncode == 0

    [exported] = list((target / "cur").iterdir())
    assert int(os.stat(exported).st_mtime) == int(message.received_at.timestamp())


async def test_one_folder_and_those_below_it(db: Database, settings: Settings, tmp_path: Path) -> None:
    stored = await _fill(db)
    target = tmp_path / "work"

    result = tributary(settings, "export", "--user", EMAIL, "--maildir", str(target), "--folder", "Work")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Exported 2 messages in 2 folders to {target}."
    assert {p.name for p in target.iterdir()} == {"cur", "new", "tmp", ".Work", ".Work.Projects"}
    assert _files(target / ".Work.Projects") == dict(stored["Work/Projects"])
    assert _files(target) == {}


@pytest.mark.parametrize("case", ["not empty", "a file", "below a file", "unknown folder", "unknown user"])
async def test_unusable_directories_and_names_are_refused_in_one_sentence(
    db: Database, settings: Settings, tmp_path: Path, case: str
) -> None:
    await add_user(db=db, email=EMAIL, password="long enough")
    target = tmp_path / "target"
    extra: list[str] = []
    user = EMAIL
    expected = {
        "not empty": f"The export directory {target} is not empty; choose a new or empty directory.",
        "a file": f"The export directory {target} is a file, not a directory.",
        "below a file": f"The export directory {target}/inner cannot be created: part of its path is a file.",
        "unknown folder": "There is no folder 'Nowhere'.",
        "unknown user": "",
    }[case]
    if case == "not empty":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif case in ("a file", "below a file"):
        target.write_text("a file")
        if case == "below a file":
            target = target / "inner"
    elif case == "unknown folder":
        extra = ["--folder", "Nowhere"]
    else:
        user = "nobody@example.test"

    result = tributary(settings, "export", "--user", user, "--maildir", str(target), *extra)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if expected:
        assert result.stderr.strip() == expected
    if case == "not empty":
        assert [p.name for p in target.iterdir()] == ["keep.txt"]
    if case == "unknown folder":
        assert not target.exists()


async def test_export_by_id_is_unchanged_and_the_two_modes_exclude_each_other(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    stored = await _fill(db)
    listed = tributary(settings, "messages", "--user", EMAIL, "--folder", "Inbox", "--json")
    ids = [int(n) for n in re.findall(r'"id": (\d+)', listed.stdout)]

    exported = {tributary_bytes(settings, "export", "--user", EMAIL, "--id", str(n)).stdout for n in ids}

    assert exported == {raw for raw, _ in stored["Inbox"]}
    both = tributary(settings, "export", "--user", EMAIL, "--id", str(ids[0]), "--maildir", str(tmp_path / "x"))
    neither = tributary(settings, "export", "--user", EMAIL)
    assert both.returncode == neither.returncode == 2
    assert "Give either --id N (one message) or --maildir DIR (the folders)." in neither.stderr
