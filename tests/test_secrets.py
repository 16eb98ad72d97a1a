"""Remote passwords are encrypted at rest, and the key is created once and kept private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text

from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import KEY_FILE_NAME, SecretBox, SecretKeyError
from service.persistence.tables import RetrievalTask
from service.usecases.users import add_user

PASSWORD = "canary-Pa55word-9f3e1c"


async def test_stored_password_is_not_in_the_raw_row(db: Database, secret_box: SecretBox) -> None:
    user = await add_user(db=db, email="alice@example.test", password="long enough")
    async with db.write() as session:
        session.add(
            RetrievalTask(
                user_id=user.id,
                protocol=Protocol.IMAP,
                host="imap.example.test",
                port=993,
                security=Security.SSL,
                username="alice",
                password_encrypted=secret_box.encrypt(PASSWORD),
            )
        )
    async with db.read() as session:
        rows = (await (await session.connection()).execute(text("SELECT * FROM retrieval_task"))).all()
    assert len(rows) == 1
    raw = " ".join(str(value) for value in rows[0])
    assert PASSWORD not in raw
    assert PASSWORD.encode().hex() not in raw
    token = rows[0]._mapping["password_encrypted"]
    assert secret_box.decrypt(token) == PASSWORD


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = SecretBox.from_settings(settings)
    key_file = settings.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = first.encrypt(PASSWORD)
    again = SecretBox.from_settings(Settings(data_dir=tmp_path / "data"))
    assert again.decrypt(token) == PASSWORD


def test_a_different_key_cannot_decrypt(tmp_path: Path) -> None:
    token = SecretBox([Fernet.generate_key()]).encrypt(PASSWORD)
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        SecretBox([Fernet.generate_key()]).decrypt(token)


def test_configured_keys_rotate(tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = SecretBox([old]).encrypt(PASSWORD)
    both = SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=SecretStr(f"{new.decode()},{old.decode()}")))
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == PASSWORD
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_malformed_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="not a valid Fernet key"):
        SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=SecretStr("not-a-key")))
