"""Remote passwords at rest: Fernet tokens (AES-128-CBC + HMAC-SHA256) under MultiFernet.

The key comes from TRIBUTARY_SECRET_KEY (comma-separated Fernet keys, the first
encrypts, all decrypt, so a key can be rotated) or, when that is unset, from the
file `secret.key` in the data directory, created with mode 0600 on first start
and reused after. A lost key makes stored passwords unreadable: back it up with
the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.config import Settings
from service.errors import TributaryError

KEY_FILE_NAME = "secret.key"


class SecretKeyError(TributaryError):
    """The encryption key is missing, malformed, or does not open a stored secret."""


def _key_file(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def key_file_in_use(settings: Settings) -> Path | None:
    """The key file the keys come from, or None when TRIBUTARY_SECRET_KEY supplies them."""
    return None if settings.secret_key is not None else _key_file(settings)


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically: a 0600 temporary file, flushed to disk, renamed over it.

    A reader (or a crash) sees either the whole old file or the whole new one, never a torn one.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"".join(key + b"\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def load_or_create_keys(settings: Settings) -> list[bytes]:
    """The Fernet keys, newest first. Creates the key file (0600) if no key is configured."""
    if settings.secret_key is not None:
        keys = [k.strip().encode() for k in settings.secret_key.get_secret_value().split(",") if k.strip()]
    else:
        path = _key_file(settings)
        if not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(Fernet.generate_key() + b"\n")
        keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    if not keys:
        raise SecretKeyError("No encryption key is configured: set TRIBUTARY_SECRET_KEY or remove the empty key file.")
    return keys


class SecretBox:
    """Encrypts and decrypts the remote passwords stored in the database."""

    def __init__(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise SecretKeyError(
                "The encryption key is not a valid Fernet key (32 url-safe base64-encoded bytes)."
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(load_or_create_keys(settings))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                "A stored password cannot be decrypted with the configured key; was the key changed?"
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the newest key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise SecretKeyError(
                "A stored password cannot be decrypted with the configured keys; nothing was re-encrypted."
            ) from exc
