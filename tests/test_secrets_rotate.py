"""`tributary secrets rotate`: every stored credential moves to a new key, and a crash at any
step leaves every credential decryptable."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from sqlmodel import select

from service.config import Settings
from service.domain.oauth import AuthKind
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import KEY_FILE_NAME, SecretBox, load_or_create_keys, write_key_file
from service.persistence.tables import Domain, OAuthState, RetrievalTask, SmtpAccount
from service.usecases import secrets
from service.usecases.users import add_user
from tests.cli_runner import tributary

PASSWORDS = {"task": "task-secret-1", "smtp": "smtp-secret-2", "relay": "relay-secret-3"}


@pytest.fixture
def file_settings(settings: Settings) -> Settings:
    """The test's database, with the key in data_dir/secret.key instead of TRIBUTARY_SECRET_KEY."""
    return settings.model_copy(update={"secret_key": None})


async def _plant(db: Database, box: SecretBox) -> None:
    user = await add_user(db=db, email="alice@example.test", password="long enough password")
    async with db.write() as session:
        session.add(
            RetrievalTask(
                user_id=user.id,
                protocol=Protocol.IMAP,
                host="imap.example.test",
                port=993,
                security=Security.SSL,
                username="alice",
                password_encrypted=box.encrypt(PASSWORDS["task"]),
            )
        )
        session.add(
            SmtpAccount(
                user_id=user.id,
                email_address="alice@example.test",
                host="smtp.example.test",
                port=587,
                password_encrypted=box.encrypt(PASSWORDS["smtp"]),
            )
        )
        domain = (await session.exec(select(Domain))).one()
        domain.relay_host = "relay.example.test"
        domain.relay_password_encrypted = box.encrypt(PASSWORDS["relay"])
        session.add(domain)


async def _tokens(db: Database) -> dict[str, str]:
    async with db.read() as session:
        task = (await session.exec(select(RetrievalTask))).one()
        smtp = (await session.exec(select(SmtpAccount))).one()
        domain = (await session.exec(select(Domain))).one()
    assert domain.relay_password_encrypted is not None
    assert smtp.password_encrypted is not None
    assert task.password_encrypted is not None
    return {"task": task.password_encrypted, "smtp": smtp.password_encrypted, "relay": domain.relay_password_encrypted}


async def _assert_readable(db: Database, keys: list[bytes]) -> None:
    box = SecretBox(keys)
    assert {name: box.decrypt(token) for name, token in (await _tokens(db)).items()} == PASSWORDS


def _unreadable_with(key: bytes, tokens: dict[str, str]) -> bool:
    for token in tokens.values():
        try:
            Fernet(key).decrypt(token.encode())
        except InvalidToken:
            continue
        return False
    return True


async def test_rotate_with_the_key_file(file_settings: Settings) -> None:
    db = Database(file_settings)
    try:
        old_keys = load_or_create_keys(file_settings)
        await _plant(db, SecretBox(old_keys))
        result = tributary(file_settings, "secrets", "rotate", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"reencrypted": 3, "key_source": "key file"}

        key_file = file_settings.data_dir / KEY_FILE_NAME
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        new_keys = load_or_create_keys(file_settings)
        assert len(new_keys) == 1
        assert new_keys != old_keys
        await _assert_readable(db, new_keys)
        assert _unreadable_with(old_keys[0], await _tokens(db))

        again = tributary(file_settings, "secrets", "rotate")
        assert again.returncode == 0, again.stderr
        assert "Re-encrypted 3 credentials under the new key" in again.stdout
        await _assert_readable(db, load_or_create_keys(file_settings))
    finally:
        await db.dispose()


async def test_rotate_with_the_setting_uses_the_first_key(settings: Settings) -> None:
    db = Database(settings)
    try:
        assert settings.secret_key is not None
        old = settings.secret_key.get_secret_value().encode()
        await _plant(db, SecretBox([old]))

        refused = tributary(settings, "secrets", "rotate")
        assert refused.returncode == 1
        assert "put the new key first" in refused.stderr

        new = tributary(settings, "secrets", "new-key").stdout.strip().encode()
        both = settings.model_copy(update={"secret_key": SecretStr(f"{new.decode()},{old.decode()}")})
        result = tributary(both, "secrets", "rotate")
        assert result.returncode == 0, result.stderr
        assert "Re-encrypted 3 credentials" in result.stdout
        await _assert_readable(db, [new])  # the new key alone now opens every credential
        assert _unreadable_with(old, await _tokens(db))
    finally:
        await db.dispose()


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", ["reencrypt", "commit", "final write"])
async def test_a_crash_at_any_step_leaves_every_credential_readable(
    file_settings: Settings, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    db = Database(file_settings)
    try:
        await _plant(db, SecretBox(load_or_create_keys(file_settings)))
        real_write = write_key_file
        real_reencrypt = secrets.reencrypt_all
        writes: list[int] = []

        def write(path: Any, keys: list[bytes]) -> None:
            writes.append(len(keys))
            if crash_at == "final write" and len(writes) == 2:
                raise Crash()
            real_write(path, keys)

        async def reencrypt(*, db: Database, box: SecretBox) -> int:
            if crash_at == "reencrypt":
                raise Crash()
            if crash_at == "commit":  # the rows change, then the transaction dies before committing
                async with db.write() as session:
                    for row in (await session.exec(select(RetrievalTask))).all():
                        assert row.password_encrypted is not None
                        row.password_encrypted = box.rotate(row.password_encrypted)
                        session.add(row)
                    raise Crash()
            return await real_reencrypt(db=db, box=box)

        monkeypatch.setattr(secrets, "write_key_file", write)
        monkeypatch.setattr(secrets, "reencrypt_all", reencrypt)
        with pytest.raises(Crash):
            await secrets.rotate(settings=file_settings, db=db)
        await _assert_readable(db, load_or_create_keys(file_settings))

        monkeypatch.undo()
        result = await secrets.rotate(settings=file_settings, db=db)  # running it again finishes the job
        assert result.reencrypted == 3
        keys = load_or_create_keys(file_settings)
        assert len(keys) == 1
        await _assert_readable(db, keys)
    finally:
        await db.dispose()


OAUTH_SECRETS = {
    "task access": "task-access-token",
    "task refresh": "task-refresh-token",
    "smtp access": "smtp-access-token",
    "smtp refresh": "smtp-refresh-token",
    "verifier": "pkce-code-verifier",
}


async def _plant_oauth(db: Database, box: SecretBox) -> None:
    """An OAuth2 retrieval task and SMTP account (no passwords) and a sign-in in progress."""
    user = await add_user(db=db, email="olga@example.test", password="long enough password")
    async with db.write() as session:
        session.add(
            RetrievalTask(
                user_id=user.id,
                protocol=Protocol.IMAP,
                host="imap.example.test",
                port=993,
                username="olga@example.test",
                auth=AuthKind.OAUTH2,
                oauth_provider="local",
                oauth_access_token_encrypted=box.encrypt(OAUTH_SECRETS["task access"]),
                oauth_refresh_token_encrypted=box.encrypt(OAUTH_SECRETS["task refresh"]),
            )
        )
        session.add(
            SmtpAccount(
                user_id=user.id,
                email_address="olga@example.test",
                host="smtp.example.test",
                port=587,
                auth=AuthKind.OAUTH2,
                oauth_provider="local",
                oauth_access_token_encrypted=box.encrypt(OAUTH_SECRETS["smtp access"]),
                oauth_refresh_token_encrypted=box.encrypt(OAUTH_SECRETS["smtp refresh"]),
            )
        )
        session.add(
            OAuthState(
                state_hash="0" * 64,
                user_id=user.id,
                kind="smtp",
                target_id=1,
                provider="local",
                code_verifier_encrypted=box.encrypt(OAUTH_SECRETS["verifier"]),
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            )
        )


async def _oauth_tokens(db: Database) -> dict[str, str]:
    async with db.read() as session:
        task = (await session.exec(select(RetrievalTask))).one()
        smtp = (await session.exec(select(SmtpAccount))).one()
        state = (await session.exec(select(OAuthState))).one()
    values = {
        "task access": task.oauth_access_token_encrypted,
        "task refresh": task.oauth_refresh_token_encrypted,
        "smtp access": smtp.oauth_access_token_encrypted,
        "smtp refresh": smtp.oauth_refresh_token_encrypted,
        "verifier": state.code_verifier_encrypted,
    }
    assert task.password_encrypted is None
    return {name: value for name, value in values.items() if value is not None}


async def test_rotate_covers_oauth_tokens_and_code_verifiers(file_settings: Settings) -> None:
    """Issue 15: OAuth2 tokens and PKCE verifiers are credentials too; a key rotation moves them."""
    db = Database(file_settings)
    try:
        old_keys = load_or_create_keys(file_settings)
        await _plant_oauth(db, SecretBox(old_keys))
        result = await secrets.rotate(settings=file_settings, db=db)
        assert result.reencrypted == 5
        new_keys = load_or_create_keys(file_settings)
        assert new_keys != old_keys
        tokens = await _oauth_tokens(db)
        box = SecretBox(new_keys)
        assert {name: box.decrypt(token) for name, token in tokens.items()} == OAUTH_SECRETS
        assert _unreadable_with(old_keys[0], tokens)
    finally:
        await db.dispose()
