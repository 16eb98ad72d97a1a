"""`tributary restore DIR`: put a backup back into an empty data directory.

Every file is checked against the manifest (size and SHA-256) before anything is written,
so a damaged backup leaves the data directory as it was, and the refusal names the file.
The data directory must be empty (or not exist yet): restoring over a live installation
would mix two states. The database file goes where the settings say SQLite lives; a
backup of a PostgreSQL installation brings back the key file and body segments, and the
database comes back with pg_restore (README, "Backups").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.usecases.backup.directory import emptied_on_failure, empty_directory
from service.usecases.backup.manifest import (
    DATABASE_FILE,
    BackupDamaged,
    BackupRefused,
    Manifest,
    check_relative,
    copy_file,
    fsync_directory,
    sha256_of,
)
from service.usecases.backup.take import sqlite_path


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What `restore` put back, and what the operator still has to do."""

    data_dir: str
    database: str
    key: str
    files: int
    bytes: int
    schema_revision: str | None
    next_steps: list[str]


def verify(directory: Path) -> Manifest:
    """The backup's manifest, once every file it lists is there with its size and checksum."""
    if not directory.is_dir():
        raise BackupRefused(f"There is no backup directory at {directory}.")
    manifest = Manifest.load(directory)
    for entry in manifest.files:
        path = directory / check_relative(entry.path)
        try:
            size, digest = sha256_of(path)
        except FileNotFoundError:
            raise BackupDamaged(f"The backup is incomplete: {entry.path} is missing; nothing was restored.") from None
        if (size, digest) != (entry.size, entry.sha256):
            raise BackupDamaged(
                f"The backup is damaged: {entry.path} does not match its checksum in the manifest; "
                "nothing was restored."
            )
    return manifest


def _copy(source: Path, manifest: Manifest, data_dir: Path, database_target: Path | None) -> None:
    written: set[Path] = {data_dir}
    for entry in manifest.files:
        relative = check_relative(entry.path)
        target = database_target if entry.path == DATABASE_FILE and database_target else data_dir / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        size, digest = copy_file(source / relative, target)
        if (size, digest) != (entry.size, entry.sha256):
            raise BackupDamaged(f"{entry.path} changed while it was being restored; restore into a new directory.")
        written.add(target.parent)
    for folder in written:
        fsync_directory(folder)


def restore(*, settings: Settings, directory: Path) -> RestoreReport:
    """Restore the backup in `directory` into the settings' data directory, which must be empty."""
    source = directory.expanduser().absolute()
    manifest = verify(source)
    if manifest.database == "sqlite" and not settings.is_sqlite:
        raise BackupRefused(
            "This backup holds a SQLite database, but TRIBUTARY_DATABASE_URL names PostgreSQL; "
            "unset it to restore this backup."
        )
    if manifest.database != "sqlite" and settings.is_sqlite:
        raise BackupRefused(
            "This backup comes from a PostgreSQL installation; set TRIBUTARY_DATABASE_URL to the "
            "database you restore with pg_restore, then run restore again."
        )
    data_dir = empty_directory(settings.data_dir, what="The data directory")
    database_target = sqlite_path(settings) if settings.is_sqlite else None
    if database_target is not None and database_target.exists():
        raise BackupRefused(f"A database already exists at {database_target}; restore needs a new one.")
    with emptied_on_failure(data_dir, what="The restore", also=database_target):
        _copy(source, manifest, data_dir, database_target)
    steps = []
    if manifest.database != "sqlite":
        steps.append("Restore the PostgreSQL database with pg_restore (README, Backups).")
    if manifest.key == "setting":
        steps.append("The keys came from TRIBUTARY_SECRET_KEY: set it to the same value as before.")
    elif settings.secret_key is not None:  # the restored secret.key is not read while the setting is there
        steps.append(
            "The stored passwords need the restored key file, but TRIBUTARY_SECRET_KEY is set: "
            "unset it (or set it to the key file's keys, comma-separated) before starting the service."
        )
    steps.append("Run `tributary db upgrade` before starting the service if this Tributary is newer.")
    return RestoreReport(
        data_dir=str(data_dir),
        database=manifest.database,
        key=manifest.key,
        files=len(manifest.files),
        bytes=sum(f.size for f in manifest.files),
        schema_revision=manifest.schema_revision,
        next_steps=steps,
    )
