"""The backup's manifest: what a backup directory holds, with each file's size and SHA-256.

`manifest.json` is written last, so a directory without one is an interrupted backup,
never mistaken for a complete one. Paths in it are relative, with "/" separators, and
may only name what a backup writes (the database, the key file, body segments):
restore refuses anything that would land outside the data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from service.errors import InvalidInput, TributaryError
from service.persistence.secrets import KEY_FILE_NAME as KEY_FILE

MANIFEST_NAME = "manifest.json"
FORMAT = "tributary-backup"
VERSION = 1
DATABASE_FILE = "tributary.db"
BODIES_DIR = "bodies"
_CHUNK = 1024 * 1024


class BackupRefused(InvalidInput):
    """The backup or restore cannot start: the directory is not usable; the sentence says why."""


class BackupFailed(TributaryError):
    """Writing the backup, restore or export failed part-way (a full disk, an unreadable file); what
    was written is removed again, and the sentence says what went wrong."""


class BackupDamaged(TributaryError):
    """A backup's file is missing or does not match its checksum: restore refuses the whole backup."""


@dataclass(frozen=True, slots=True)
class BackupFile:
    """One file of the backup: its path inside the backup directory, size in bytes, SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """What `manifest.json` says. `database` is "sqlite" (the file is in the backup) or "postgresql"
    (dumped beside it with pg_dump); `key` is "file" (secret.key is in the backup) or "setting"
    (the keys come from TRIBUTARY_SECRET_KEY, which the operator keeps apart)."""

    created_at: str
    database: str
    key: str
    schema_revision: str | None = None
    files: list[BackupFile] = field(default_factory=list)
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupRefused(f"{directory} is not a complete Tributary backup: it has no {MANIFEST_NAME}.") from None
        except (OSError, ValueError) as exc:
            raise BackupDamaged(f"The backup's {MANIFEST_NAME} cannot be read: {exc}.") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupDamaged(f"{path} is not a Tributary backup manifest.")
        if data.get("version") != VERSION:
            found = data.get("version")
            raise BackupDamaged(f"This backup has format version {found}; this Tributary reads {VERSION}.")
        try:
            files = [BackupFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]]
            manifest = cls(
                created_at=str(data["created_at"]),
                database=str(data["database"]),
                key=str(data["key"]),
                schema_revision=data.get("schema_revision"),
                files=files,
            )
        except (KeyError, TypeError, ValueError):
            raise BackupDamaged(f"The backup's {MANIFEST_NAME} is incomplete or malformed.") from None
        for entry in files:
            check_relative(entry.path)
        # A backup of SQLite always holds the database, one whose keys came from the file holds the
        # file: a manifest without them would restore an installation without its mail or passwords.
        listed = {entry.path for entry in files}
        promised = [DATABASE_FILE] * (manifest.database == "sqlite") + [KEY_FILE] * (manifest.key == "file")
        for name in promised:
            if name not in listed:
                raise BackupDamaged(
                    f"The backup is incomplete: its manifest does not list {name}; nothing was restored."
                )
        if len(listed) != len(files):
            raise BackupDamaged(f"The backup's {MANIFEST_NAME} lists a file twice.")
        return manifest


def check_relative(name: str) -> PurePosixPath:
    """A manifest path, refused unless it is one a backup writes (no absolute path, no "..")."""
    path = PurePosixPath(name)
    allowed = name in (DATABASE_FILE, KEY_FILE) or (len(path.parts) > 1 and path.parts[0] == BODIES_DIR)
    if path.is_absolute() or ".." in path.parts or not allowed:
        raise BackupDamaged(f"The backup's manifest names a file a backup never writes: {name!r}.")
    return path


def sha256_of(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def copy_file(source: Path, target: Path) -> tuple[int, str]:
    """Copy `source` to a new file `target` (mode 0600, refusing to overwrite), hashing while copying,
    and fsync it; returns (size, SHA-256 hex) of the bytes copied."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return size, digest.hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """A new file readable by its owner only, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
