"""The one rule backup, restore and Maildir export share: they write into an empty directory.

Writing into a directory that already holds files could mix two backups (or two exports)
into one that restores wrongly, or overwrite a data directory in use. A directory that
does not exist is created (mode 0700: backups hold the encryption key and the mail).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from service.usecases.backup.manifest import BackupFailed, BackupRefused


def empty_directory(path: Path, *, what: str) -> Path:
    """`path` made absolute, created when missing, refused (BackupRefused) when it holds anything
    or cannot be written; `what` names the directory in the sentence ("The backup directory")."""
    path = path.expanduser().absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise BackupRefused(f"{what} {path} is not empty; choose a new or empty directory.")
        probe = path / ".tributary-write-check"
        probe.touch(mode=0o600)
        probe.unlink()
    except FileExistsError:
        raise BackupRefused(f"{what} {path} is a file, not a directory.") from None
    except NotADirectoryError:
        raise BackupRefused(f"{what} {path} cannot be created: part of its path is a file.") from None
    except PermissionError:
        raise BackupRefused(f"{what} {path} cannot be written: permission denied.") from None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise BackupRefused(f"{what} {path} cannot be written: the file system is read-only.") from None
        raise BackupRefused(f"{what} {path} cannot be used: {exc.strerror or exc}.") from None
    return path


@contextlib.contextmanager
def emptied_on_failure(path: Path, *, what: str, also: Path | None = None) -> Iterator[None]:
    """When the block fails, empty `path` again (it was empty when the block began) and remove
    `also` (a file written outside it); a file-system or SQLite error becomes one sentence."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(OSError):
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            if also is not None:
                also.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise BackupFailed(f"{what} failed, and what it wrote was removed: {exc.strerror or exc}{where}.") from exc
        if isinstance(exc, sqlite3.Error):
            raise BackupFailed(
                f"{what} failed, and what it wrote was removed: the database could not be read ({exc})."
            ) from exc
        raise
