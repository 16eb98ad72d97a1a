"""What a backup directory holds (manifest, checksums, owner-only files), the body segments copied under
the shared compaction lock, and every refusal of backup and restore in one sentence."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.secrets import SecretBox
from service.usecases.backup import backup, restore, take
from service.usecases.backup.manifest import BackupDamaged, BackupFailed, BackupRefused
from service.usecases.users import add_user
from tests.cli_runner import tributary
from tests.mail_samples import sample


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    """The test's settings with the keys in data_dir/secret.key (created here)."""
    with_key_file = settings.model_copy(update={"secret_key": None})
    SecretBox.from_settings(with_key_file)
    return with_key_file


def _fresh(settings: Settings, directory: Path) -> Settings:
    return settings.model_copy(update={"data_dir": directory})


def _segments(settings: Settings) -> dict[str, bytes]:
    """Stand-in segment files of the body store (issue 20) with the lock file compaction uses."""
    bodies = settings.data_dir / "bodies"
    (bodies / "segments").mkdir(parents=True)
    files = {"bodies/segments/000001.seg": b"\x00segment one" * 1000, "bodies/000002.seg": b"two"}
    for name, data in files.items():
        (settings.data_dir / name).write_bytes(data)
    (bodies / "compaction.lock").touch()
    return files


async def _deliver_one(settings: Settings, raw: bytes) -> None:
    """A user with one message in the Inbox (stored where the settings' body store puts it)."""
    db = Database(settings)
    try:
        user = await add_user(db=db, email="owner@example.test", password="long enough")
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            assert inbox.id is not None
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=raw)
    finally:
        await db.dispose()


async def test_the_backup_lists_every_file_with_size_and_checksum(keyed: Settings, tmp_path: Path) -> None:
    await _deliver_one(keyed, sample("kept"))
    segments = _segments(keyed)
    target = tmp_path / "backup"

    result = tributary(keyed, "backup", str(target), "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["database"] == ("sqlite" if keyed.is_sqlite else "postgresql")
    assert report["key"] == "file"
    manifest = json.loads((target / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    stored = {p.relative_to(keyed.data_dir).as_posix() for p in (keyed.data_dir / "bodies").rglob("*.seg")}
    assert stored > set(segments) or not keyed.is_sqlite  # the body store's own segment too (files by default)
    expected = {"secret.key", *stored} | ({"tributary.db"} if keyed.is_sqlite else set())
    assert set(listed) == expected
    assert report["files"] == len(expected)
    for name, entry in listed.items():
        data = (target / name).read_bytes()
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    for name, data in segments.items():
        assert (target / name).read_bytes() == data
    assert (target / "secret.key").read_bytes() == (keyed.data_dir / "secret.key").read_bytes()
    assert manifest["schema_revision"] == (report["schema_revision"])
    assert (manifest["schema_revision"] is not None) == keyed.is_sqlite
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert {stat.S_IMODE((target / n).stat().st_mode) for n in [*listed, "manifest.json"]} == {0o600}

    text = tributary(keyed, "backup", str(tmp_path / "again"))
    assert text.returncode == 0
    assert ("pg_dump" in text.stdout) == (not keyed.is_sqlite)


async def test_restore_brings_back_database_key_and_segments(keyed: Settings, tmp_path: Path) -> None:
    segments = _segments(keyed)
    assert tributary(keyed, "backup", str(tmp_path / "backup")).returncode == 0
    restored = _fresh(keyed, tmp_path / "new-data")

    result = tributary(restored, "restore", str(tmp_path / "backup"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Restored {len(segments) + 1 + keyed.is_sqlite} files")
    for name, data in segments.items():
        assert (restored.data_dir / name).read_bytes() == data
    assert (restored.data_dir / "secret.key").read_bytes() == (keyed.data_dir / "secret.key").read_bytes()
    assert not (restored.data_dir / "bodies" / "compaction.lock").exists()
    if keyed.is_sqlite:
        added = tributary(restored, "user", "add", "new@example.test", "--password-stdin", stdin="long enough\n")
        assert added.returncode == 0, added.stderr
    else:
        assert "pg_restore" in result.stdout


def test_compaction_cannot_run_while_the_backup_copies(
    keyed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared lock is held from before the database snapshot to after the last segment."""
    _segments(keyed)
    lock = keyed.data_dir / "bodies" / "compaction.lock"
    compaction_refused: list[str] = []

    def compaction_would_wait(step: str) -> None:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            compaction_refused.append(step)
        finally:
            os.close(fd)

    def watched(step: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            compaction_would_wait(f"before {step}")
            found = original(*args)
            compaction_would_wait(f"after {step}")
            return found

        return call

    monkeypatch.setattr(take, "_snapshot_sqlite", watched("snapshot", take._snapshot_sqlite))
    monkeypatch.setattr(take, "_copy_bodies", watched("segments", take._copy_bodies))

    backup(settings=keyed, directory=tmp_path / "backup")

    steps = ["segments"] if not keyed.is_sqlite else ["snapshot", "segments"]
    assert compaction_refused == [f"{when} {step}" for step in steps for when in ("before", "after")]
    compaction_refused.clear()
    compaction_would_wait("once the backup is done")
    assert compaction_refused == []  # released


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    ["checksum of the key", "checksum of the database", "missing segment", "no manifest", "data dir not empty"],
)
def test_restore_refuses_and_changes_nothing(keyed: Settings, tmp_path: Path, damage: str) -> None:
    _segments(keyed)
    source = tmp_path / "backup"
    assert tributary(keyed, "backup", str(source)).returncode == 0
    restored = _fresh(keyed, tmp_path / "new-data")
    expected = {
        "checksum of the key": "The backup is damaged: secret.key does not match its checksum in the manifest; "
        "nothing was restored.",
        "checksum of the database": "The backup is damaged: tributary.db does not match its checksum in the "
        "manifest; nothing was restored.",
        "missing segment": "The backup is incomplete: bodies/000002.seg is missing; nothing was restored.",
        "no manifest": f"{source} is not a complete Tributary backup: it has no manifest.json.",
        "data dir not empty": f"The data directory {restored.data_dir} is not empty; choose a new or empty directory.",
    }[damage]
    if damage == "checksum of the key":
        _flip_a_byte(source / "secret.key")
    elif damage == "checksum of the database":
        if not keyed.is_sqlite:
            pytest.skip("a PostgreSQL backup holds no database file")
        _flip_a_byte(source / "tributary.db")
    elif damage == "missing segment":
        (source / "bodies" / "000002.seg").unlink()
    elif damage == "no manifest":
        (source / "manifest.json").unlink()
    else:
        restored.data_dir.mkdir()
        (restored.data_dir / "notes.txt").write_text("someone's")

    result = tributary(restored, "restore", str(source))

    assert result.returncode == 1
    assert result.stderr.strip() == expected
    if damage == "data dir not empty":
        assert [p.name for p in restored.data_dir.iterdir()] == ["notes.txt"]
    else:
        assert not restored.data_dir.exists() or not any(restored.data_dir.iterdir())


@pytest.mark.parametrize("case", ["not empty", "below a file"])
def test_backup_refuses_a_directory_it_cannot_use(keyed: Settings, tmp_path: Path, case: str) -> None:
    target = tmp_path / "target"
    if case == "not empty":
        target.mkdir()
        (target / "old-backup.txt").write_text("older")
        expected = f"The backup directory {target} is not empty; choose a new or empty directory."
    else:
        target.write_text("a file")
        target = target / "inner"
        expected = f"The backup directory {target} cannot be created: part of its path is a file."

    result = tributary(keyed, "backup", str(target))

    assert (result.returncode, result.stderr.strip()) == (1, expected)


def test_a_key_from_the_setting_is_not_in_the_backup_and_restore_says_so(settings: Settings, tmp_path: Path) -> None:
    assert settings.secret_key is not None

    taken = tributary(settings, "backup", str(tmp_path / "backup"))
    result = tributary(_fresh(settings, tmp_path / "new-data"), "restore", str(tmp_path / "backup"))

    assert "TRIBUTARY_SECRET_KEY" in taken.stdout
    assert not (tmp_path / "backup" / "secret.key").exists()
    assert result.returncode == 0, result.stderr
    assert "The keys came from TRIBUTARY_SECRET_KEY: set it to the same value as before." in result.stdout


def test_a_backup_that_fails_part_way_removes_what_it_wrote(
    keyed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _segments(keyed)
    target = tmp_path / "backup"
    original = take.copy_file  # type: ignore[attr-defined]

    def disk_full(source: Path, destination: Path) -> tuple[int, str]:
        if destination.name == "secret.key":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(destination))
        return original(source, destination)

    monkeypatch.setattr(take, "copy_file", disk_full)

    with pytest.raises(BackupFailed) as failed:
        backup(settings=keyed, directory=target)

    assert failed.value.message == (
        f"The backup failed, and what it wrote was removed: No space left on device ({target / 'secret.key'})."
    )
    assert list(target.iterdir()) == []


async def test_a_segment_the_snapshot_needs_but_the_copy_lacks_fails_the_backup(
    keyed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not keyed.is_sqlite:
        pytest.skip("the check reads the SQLite snapshot; PostgreSQL's is pg_dump's")
    await _deliver_one(keyed, sample("in a segment"))
    assert list((keyed.data_dir / "bodies").glob("*.seg"))  # the files store wrote it
    monkeypatch.setattr(take, "_copy_bodies", lambda bodies, target: [])  # as if compaction had deleted it
    target = tmp_path / "backup"

    with pytest.raises(BackupDamaged) as failed:
        backup(settings=keyed, directory=target)

    assert "body segment 1 is missing or shorter than the database says" in failed.value.message
    assert list(target.iterdir()) == []


def _edit_manifest(source: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = source / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "hostile", ["../outside", "/tmp/rev19-absolute", "bodies/../../outside", "sessions/x", "bodies", "bodies/./.."]
)
def test_a_manifest_naming_a_path_outside_what_a_backup_writes_is_refused(
    keyed: Settings, tmp_path: Path, hostile: str
) -> None:
    source = tmp_path / "backup"
    assert tributary(keyed, "backup", str(source)).returncode == 0
    restored = _fresh(keyed, tmp_path / "data" / "new")
    key = (source / "secret.key").read_bytes()
    entry = {"path": hostile, "size": len(key), "sha256": hashlib.sha256(key).hexdigest()}
    _edit_manifest(source, lambda m: m["files"].append(entry))

    result = tributary(restored, "restore", str(source))

    assert result.returncode == 1
    assert result.stderr.strip() == f"The backup's manifest names a file a backup never writes: {hostile!r}."
    assert not (tmp_path / "data" / "outside").exists()
    assert not (tmp_path / "outside").exists()
    assert not Path("/tmp/rev19-absolute").exists()
    assert not restored.data_dir.exists() or not any(restored.data_dir.iterdir())


@pytest.mark.parametrize("left_out", ["tributary.db", "secret.key"])
def test_a_manifest_without_the_database_or_the_key_file_it_promises_is_refused(
    keyed: Settings, tmp_path: Path, left_out: str
) -> None:
    """Restoring such a backup would bring back an installation without its mail or its passwords."""
    if left_out == "tributary.db" and not keyed.is_sqlite:
        pytest.skip("a PostgreSQL backup holds no database file")
    source = tmp_path / "backup"
    assert tributary(keyed, "backup", str(source)).returncode == 0
    _edit_manifest(source, lambda m: m.update(files=[f for f in m["files"] if f["path"] != left_out]))
    restored = _fresh(keyed, tmp_path / "new-data")

    result = tributary(restored, "restore", str(source))

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"The backup is incomplete: its manifest does not list {left_out}; nothing was restored."
    )
    assert not restored.data_dir.exists() or not any(restored.data_dir.iterdir())


def test_a_backup_directory_inside_the_body_store_is_refused(keyed: Settings, tmp_path: Path) -> None:
    """It would be copied into itself as body segments, and restored as such."""
    _segments(keyed)
    inside = keyed.data_dir / "bodies" / "backup"

    with pytest.raises(BackupRefused) as refused:
        backup(settings=keyed, directory=inside)

    assert refused.value.message == (
        f"The backup directory {inside} is inside the body store {keyed.data_dir / 'bodies'}; choose one outside it."
    )
    assert not inside.exists()


def test_restoring_a_key_file_while_the_keys_come_from_the_setting_says_what_to_do(
    keyed: Settings, settings: Settings, tmp_path: Path
) -> None:
    """The restored secret.key is not read while TRIBUTARY_SECRET_KEY is set: the stored passwords
    would not open unless the operator is told."""
    assert settings.secret_key is not None
    backup(settings=keyed, directory=tmp_path / "backup")
    target = settings.model_copy(update={"data_dir": tmp_path / "new-data"})  # keys from the setting

    report = restore(settings=target, directory=tmp_path / "backup")

    assert (target.data_dir / "secret.key").exists()
    assert (
        "The stored passwords need the restored key file, but TRIBUTARY_SECRET_KEY is set: "
        "unset it (or set it to the key file's keys, comma-separated) before starting the service."
    ) in report.next_steps
