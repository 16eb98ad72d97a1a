"""`tributary backup DIR`: a consistent copy of everything Tributary stores, while it runs.

The order is what makes the copy consistent:

1. If `<data_dir>/bodies/` exists (the segment-file body store of issue 20), take a shared
   `flock` on `bodies/compaction.lock` and hold it to the end. Compaction takes it exclusively
   (and skips a round when it cannot), and compaction is what deletes segment files; so every
   segment the database snapshot of step 2 refers to still exists when step 3 copies it.
2. SQLite: SQLite's online backup API (`sqlite3.Connection.backup`) copies the whole database in
   one step, inside one read transaction: a snapshot of the last commit, taken while retrieval
   keeps writing (WAL: the reader never blocks the writer, nor the writer it). A half-committed
   batch is either wholly in it or not at all. The copy is switched to rollback-journal mode, so
   it is one self-contained file. PostgreSQL: nothing here; the operator runs pg_dump beside
   (README, "Backups").
3. The body segments, after the snapshot: segments are append-only and a batch's bytes are
   fsynced before the commit that references them, so each copied segment holds at least every
   byte the snapshot refers to (bytes appended later are unreferenced, and reclaimed later).
4. The key file (when the keys come from it, not from TRIBUTARY_SECRET_KEY).
5. `manifest.json`, last, with each file's size and SHA-256.

Before the manifest, the copy is checked: every segment the snapshot's `message_body_ref` rows
refer to is in the backup and long enough.

Sessions (`sessions/`) are not backed up: after a restore, people sign in again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from service.config import Settings
from service.persistence.bodies.segments import Segments
from service.persistence.secrets import KEY_FILE_NAME, key_file_in_use
from service.usecases.backup.directory import emptied_on_failure, empty_directory
from service.usecases.backup.manifest import (
    BODIES_DIR,
    DATABASE_FILE,
    MANIFEST_NAME,
    BackupDamaged,
    BackupFile,
    BackupRefused,
    Manifest,
    copy_file,
    fsync_directory,
    sha256_of,
    write_private,
)

COMPACTION_LOCK = "compaction.lock"
BUSY_TIMEOUT_MS = 60_000


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What `backup` wrote: the directory, the manifest, and whether the database is in it."""

    directory: str
    database: str
    key: str
    files: int
    bytes: int
    schema_revision: str | None
    database_included: bool


def sqlite_path(settings: Settings) -> Path:
    """The SQLite database file the settings name."""
    database = make_url(settings.sync_database_url).database
    if not database or database == ":memory:":
        raise BackupRefused("The configured SQLite database is not a file, so it cannot be backed up.")
    return Path(database)


@contextlib.contextmanager
def _compaction_shared(bodies: Path) -> Iterator[None]:
    """Hold a shared flock on bodies/compaction.lock (compaction takes it exclusively)."""
    fd = os.open(bodies / COMPACTION_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _snapshot_sqlite(source: Path, target: Path) -> str | None:
    """Copy the live database to `target` in one step of the online backup API; returns the
    snapshot's Alembic revision."""
    if not source.exists():
        raise BackupRefused(f"There is no database at {source}: nothing to back up.")
    reader = sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only before any byte
        os.close(fd)
        writer = sqlite3.connect(target)
        try:
            reader.backup(writer)  # pages=-1: all pages in one step, one read transaction
            writer.execute("PRAGMA journal_mode = DELETE")
            try:
                row = writer.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.DatabaseError:
                row = None
        finally:
            writer.close()
    finally:
        reader.close()
    return str(row[0]) if row else None


def _copy_bodies(bodies: Path, target: Path) -> list[BackupFile]:
    """Copy every file under bodies/ but the lock files (compaction.lock, append.lock: empty, held
    by flock only); a segment that vanishes mid-copy fails the backup."""
    copied: list[BackupFile] = []
    for source in sorted(p for p in bodies.rglob("*") if p.is_file() and p.suffix != ".lock"):
        relative = source.relative_to(bodies)
        destination = target / BODIES_DIR / relative
        destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            size, digest = copy_file(source, destination)
        except FileNotFoundError:
            raise BackupDamaged(
                f"The body file {source} disappeared while it was being backed up; run the backup again."
            ) from None
        copied.append(BackupFile(path=f"{BODIES_DIR}/{relative.as_posix()}", size=size, sha256=digest))
    return copied


def _check_references(target: Path) -> None:
    """Every segment the snapshot refers to is in the backup, at least as long as its references
    reach: what the lock order above guarantees, checked rather than trusted."""
    connection = sqlite3.connect(target / DATABASE_FILE)
    try:
        reaches = connection.execute(
            'SELECT segment, MAX("offset" + length) FROM message_body_ref GROUP BY segment'
        ).fetchall()
    except sqlite3.OperationalError:
        reaches = []  # a schema from before the body store
    finally:
        connection.close()
    segments = Segments(target / BODIES_DIR)
    for segment, end in reaches:
        path = segments.path(int(segment))
        if not path.is_file() or path.stat().st_size < int(end):
            raise BackupDamaged(
                f"The backup is inconsistent: body segment {int(segment)} is missing or shorter than the database "
                "says; run the backup again."
            )


def backup(*, settings: Settings, directory: Path) -> BackupReport:
    """Write a consistent backup of the running service into `directory` (new or empty)."""
    bodies = (settings.data_dir / BODIES_DIR).expanduser().absolute()
    wanted = directory.expanduser().absolute()
    if bodies.resolve() in (wanted.resolve(), *wanted.resolve().parents):
        # The segments are copied from there: the backup would copy itself in as body files.
        raise BackupRefused(f"The backup directory {wanted} is inside the body store {bodies}; choose one outside it.")
    target = empty_directory(directory, what="The backup directory")
    with emptied_on_failure(target, what="The backup"):
        return _write(settings, target)


def _write(settings: Settings, target: Path) -> BackupReport:
    bodies = settings.data_dir / BODIES_DIR
    files: list[BackupFile] = []
    revision: str | None = None
    with contextlib.ExitStack() as stack:
        locked = bodies.is_dir()
        if locked:
            stack.enter_context(_compaction_shared(bodies))
        if settings.is_sqlite:
            revision = _snapshot_sqlite(sqlite_path(settings), target / DATABASE_FILE)
            size, digest = sha256_of(target / DATABASE_FILE)
            files.append(BackupFile(path=DATABASE_FILE, size=size, sha256=digest))
        if not locked and bodies.is_dir():
            # The store appeared during the snapshot (bodies being migrated to files): lock it now.
            stack.enter_context(_compaction_shared(bodies))
        if bodies.is_dir():
            files += _copy_bodies(bodies, target)
        if settings.is_sqlite:
            _check_references(target)
    key_file = key_file_in_use(settings)
    if key_file is not None:
        if not key_file.exists():
            raise BackupRefused(f"The key file {key_file} does not exist; start Tributary once to create it.")
        size, digest = copy_file(key_file, target / KEY_FILE_NAME)
        files.append(BackupFile(path=KEY_FILE_NAME, size=size, sha256=digest))
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(),
        database="sqlite" if settings.is_sqlite else "postgresql",
        key="file" if key_file is not None else "setting",
        schema_revision=revision,
        files=files,
    )
    write_private(target / MANIFEST_NAME, manifest.to_json().encode())
    for folder in {target, *(target / Path(f.path).parent for f in files)}:
        fsync_directory(folder)
    return BackupReport(
        directory=str(target),
        database=manifest.database,
        key=manifest.key,
        files=len(files),
        bytes=sum(f.size for f in files),
        schema_revision=revision,
        database_included=settings.is_sqlite,
    )
