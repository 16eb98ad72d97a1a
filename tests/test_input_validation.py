"""Server addresses (issue 14): one host rule, service.domain.smtp_accounts.check_host, for SMTP
accounts, retrieval tasks and Test Connection, on the web pages and in the API.

A host the rule refuses answers 400 (or the form with its mistake) with one
sentence, never 500 and never a connection attempt; an IDN host is kept in
its ASCII (IDNA) form, a trailing dot dropped.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.domain.smtp_accounts import check_host
from service.errors import InvalidInput
from service.persistence.database import Database
from tests.fixtures.webapp import WebClient, post_form
from tests.settings_web import text_of
from tests.test_api import api, ok, signed_in

EMPTY_HOST = "Enter the server's host name or address, for example mail.example.com."
INVALID = "is not a valid server address: enter a host name such as mail.example.com or an IP address."
BAD_HOSTS = [
    ("mail\u0098x", INVALID),
    ("mail\x85x.example", INVALID),
    ("mail\u2028x.example", INVALID),
    ("mail.example\r\nx", INVALID),
    ("a..b", INVALID),
    ("x" * 300, INVALID),
    ("-mail.example", INVALID),
    ("mail example", INVALID),
    ("", EMPTY_HOST),
    ("   ", EMPTY_HOST),
]
GOOD_HOSTS = [
    ("bücher.example", "xn--bcher-kva.example"),
    ("Mail.Example.test.", "mail.example.test"),
    ("[::1]", "::1"),
    ("192.0.2.7", "192.0.2.7"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
]


@pytest.mark.parametrize(("host", "sentence"), BAD_HOSTS)
def test_the_host_rule_refuses_with_one_sentence(host: str, sentence: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_host(host)
    assert refused.value.message.endswith(sentence)
    assert len(refused.value.message) < 200  # a 300-character host is not echoed whole


@pytest.mark.parametrize(("host", "kept"), GOOD_HOSTS)
def test_the_host_rule_keeps_what_the_user_meant(host: str, kept: str) -> None:
    assert check_host(host) == kept


def _smtp_fields(host: str) -> dict[str, str]:
    return {
        "display_name": "Ada",
        "email_address": "ada@home.test",
        "host": host,
        "security": "none",
        "port": "2525",
        "timeout_seconds": "10",
        "is_active": "on",
    }


def _task_fields(host: str) -> dict[str, str]:
    return {
        "name": "Remote",
        "protocol": "imap",
        "host": host,
        "security": "ssl",
        "port": "993",
        "username": "ada",
        "password": "remote-Secret-1",
        "timeout_seconds": "10",
        "method": "manual",
        "folder_transfer": "subfolders",
    }


def _smtp_body(host: str) -> dict[str, Any]:
    return {
        "email_address": "ada@home.test",
        "display_name": "Ada",
        "host": host,
        "port": 2525,
        "security": "none",
        "auth_required": False,
        "timeout_seconds": 10,
    }


def _task_body(host: str) -> dict[str, Any]:
    return {
        "protocol": "imap",
        "host": host,
        "port": 993,
        "security": "ssl",
        "username": "ada",
        "password": "remote-Secret-1",
        "name": "Remote",
        "method": "manual",
        "timeout_seconds": 10,
    }


def _outcome(path: str, response: httpx.Response, sentence: str) -> tuple[str, int, bool]:
    """(path, status, whether the sentence is shown): every path is tried before anything is asserted."""
    return path, response.status_code, sentence in text_of(response.text)


@pytest.mark.parametrize(("host", "sentence"), BAD_HOSTS)
async def test_a_bad_host_is_a_form_mistake_on_every_settings_page(
    web_client: WebClient, db: Database, host: str, sentence: str
) -> None:
    await signed_in(web_client, db)
    pages = [
        ("/settings/smtp/new", _smtp_fields(host)),
        ("/settings/smtp/test", _smtp_fields(host)),
        ("/settings/retrieval/new", _task_fields(host)),
        ("/settings/retrieval/test", _task_fields(host)),
    ]
    outcomes = [_outcome(path, await post_form(web_client, path, fields), sentence) for path, fields in pages]
    assert outcomes == [(path, 400, True) for path, _ in pages]
    assert ok(await api(web_client, "GET", "/smtp-accounts")) == []
    assert ok(await api(web_client, "GET", "/retrieval-tasks")) == []


@pytest.mark.parametrize(("host", "sentence"), BAD_HOSTS)
async def test_a_bad_host_is_a_400_in_the_api(web_client: WebClient, db: Database, host: str, sentence: str) -> None:
    await signed_in(web_client, db)
    calls = [
        ("/smtp-accounts", _smtp_body(host)),
        ("/smtp-accounts/test", _smtp_body(host)),
        ("/retrieval-tasks", _task_body(host)),
        ("/retrieval-tasks/test", _task_body(host)),
    ]
    outcomes = [_outcome(path, await api(web_client, "POST", path, body), sentence) for path, body in calls]
    assert outcomes == [(path, 400, True) for path, _ in calls]
    assert ok(await api(web_client, "GET", "/smtp-accounts")) == []
    assert ok(await api(web_client, "GET", "/retrieval-tasks")) == []


@pytest.mark.parametrize(("host", "kept"), GOOD_HOSTS[:2])
async def test_an_idn_host_and_a_trailing_dot_are_saved_as_the_user_meant(
    web_client: WebClient, db: Database, host: str, kept: str
) -> None:
    await signed_in(web_client, db)
    assert ok(await api(web_client, "POST", "/smtp-accounts", _smtp_body(host)), 201)["host"] == kept
    assert ok(await api(web_client, "POST", "/retrieval-tasks", _task_body(host)), 201)["host"] == kept
    assert (await post_form(web_client, "/settings/retrieval/new", _task_fields(host))).status_code == 303
    hosts = [task["host"] for task in ok(await api(web_client, "GET", "/retrieval-tasks"))]
    assert hosts == [kept, kept]


async def test_a_signature_with_nul_is_refused_not_a_database_error(web_client: WebClient, db: Database) -> None:
    """PostgreSQL refuses NUL in text columns: an unchecked signature was a 500 there."""
    await signed_in(web_client, db)
    for field in ("signature_text", "signature_html"):
        response = await api(web_client, "POST", "/smtp-accounts", {**_smtp_body("mail.example.test"), field: "A\0B"})
        assert (response.status_code, "The signature cannot contain NUL characters." in response.text) == (400, True)
    assert ok(await api(web_client, "GET", "/smtp-accounts")) == []


@pytest.mark.parametrize("field", ["name", "destination_folder"])
async def test_a_task_name_or_folder_with_nul_is_refused_not_a_database_error(
    web_client: WebClient, db: Database, field: str
) -> None:
    """PostgreSQL refuses NUL in text columns: an unchecked task name or destination folder was a 500 there."""
    await signed_in(web_client, db)
    pages = [("/settings/retrieval/new", _task_fields("mail.example.test") | {field: "A\0B"})]
    calls = [("/retrieval-tasks", _task_body("mail.example.test") | {field: "A\0B"})]
    sentence = "Names cannot contain NUL characters."
    outcomes = [_outcome(path, await post_form(web_client, path, fields), sentence) for path, fields in pages]
    outcomes += [_outcome(path, await api(web_client, "POST", path, body), sentence) for path, body in calls]
    page, call = outcomes
    assert page[:2] == (pages[0][0], 400)
    assert page[2] or field != "name"  # the name field shows its mistake
    assert call == (calls[0][0], 400, True)
    assert ok(await api(web_client, "GET", "/retrieval-tasks")) == []
