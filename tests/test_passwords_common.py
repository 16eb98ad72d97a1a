"""A password on the list of common passwords is refused wherever a user's password is set:
the use cases, first-run setup, the administration page and `tributary user add`."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.domain.passwords import MIN_PASSWORD_LENGTH, TOO_COMMON, check_strength, is_common
from service.errors import InvalidInput
from service.persistence.database import Database
from service.usecases import users
from tests.cli_runner import tributary
from tests.fixtures.webapp import WebClient, csrf_token, post_form, set_up_admin


@pytest.mark.parametrize("password", ["password1", "iloveyou", "QWERTYUIOP", "TrustNo1", "Sunshine1"])
def test_common_passwords_are_refused_in_any_case(password: str) -> None:
    assert is_common(password)
    with pytest.raises(InvalidInput) as refused:
        check_strength(password)
    assert refused.value.message == TOO_COMMON


def test_the_minimum_length_stays_and_uncommon_passwords_pass() -> None:
    with pytest.raises(InvalidInput, match=f"at least {MIN_PASSWORD_LENGTH} characters"):
        check_strength("x7#q")
    check_strength("correct horse battery staple")


async def test_use_cases_refuse_a_common_password(db: Database) -> None:
    with pytest.raises(InvalidInput, match="most common"):
        await users.create_first_admin(db=db, email="boss@example.test", password="Password1")
    with pytest.raises(InvalidInput, match="most common"):
        await users.add_user(db=db, email="carol@example.test", password="qwerty123")
    assert await users.list_users(db=db) == []


async def test_setup_and_the_admin_page_refuse_a_common_password(web_client: WebClient, db: Database) -> None:
    fields = {
        "email": "admin@example.test",
        "display_name": "",
        "password": "baseball1",
        "password_confirm": "baseball1",
    }
    setup = await post_form(web_client, "/setup", fields)
    assert setup.status_code == 400
    assert TOO_COMMON in setup.text
    assert await users.list_users(db=db) == []

    await set_up_admin(web_client)
    data = {"_csrf_token": await csrf_token(web_client), "email": "new@example.test", "display_name": ""}
    added = await web_client.post("/admin/users", data={**data, "password": "superman1"})
    assert added.status_code == 400
    assert TOO_COMMON in added.text
    assert [u.email for u in await users.list_users(db=db)] == ["admin@example.test"]


def test_the_cli_refuses_a_common_password(settings: Settings) -> None:
    result = tributary(settings, "user", "add", "root@example.test", "--password-stdin", stdin="football\n")
    assert result.returncode != 0
    assert TOO_COMMON in result.stderr
