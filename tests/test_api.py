"""The JSON API under /api/v1: its schema, authentication and CSRF, errors, and the SMTP accounts,
retrieval tasks, mail, compose, outbox and logs it offers (real aiosmtpd and Dovecot servers).

Helpers here (`api`, `signed_in`) are shared by the other API tests and the tenant isolation walk.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import smtp_accounts
from service.usecases.users import find_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, csrf_token, set_up_admin
from tests.mail_samples import sample
from web.app import create_app
from web.support.csrf import CSRF_HEADER

API = "/api/v1"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
SMTP_PASSWORD = "smtp-canary-password-0f9a"


async def api(client: WebClient, method: str, path: str, body: Any = None, *, csrf: bool = True) -> httpx.Response:
    """Call the API with the session cookie, and the CSRF header on unsafe methods (unless `csrf` is off)."""
    headers = {CSRF_HEADER: await csrf_token(client)} if csrf and method.upper() in UNSAFE else {}
    url = path if path.startswith(API) else API + path
    return await client.request(method, url, json=body, headers=headers)


async def signed_in(client: WebClient, db: Database) -> int:
    """The first-run administrator, signed in on `client`; returns their id."""
    await set_up_admin(client)
    return (await find_user(db=db, email=ADMIN_EMAIL)).id


def smtp_body(host: str, port: int, **changes: Any) -> dict[str, Any]:
    return {
        "email_address": "ada@home.test",
        "display_name": "Ada",
        "host": host,
        "port": port,
        "security": "none",
        "auth_required": True,
        "username": "user",
        "password": SMTP_PASSWORD,
        "timeout_seconds": 10,
        **changes,
    }


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


# Schema, authentication, CSRF


async def test_the_openapi_schema_is_served_as_json_and_lists_the_api(web_client: WebClient) -> None:
    schema = ok(await web_client.get(f"{API}/schema/openapi.json"))
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for path in [
        "/api/v1/smtp-accounts",
        "/api/v1/smtp-accounts/{account_id}/test",
        "/api/v1/retrieval-tasks/{task_id}/run",
        "/api/v1/folders",
        "/api/v1/folders/{folder_id}/messages",
        "/api/v1/messages/{message_id}",
        "/api/v1/messages/{message_id}/attachments/{part_id}",
        "/api/v1/messages/send",
        "/api/v1/outbox/{outbox_id}/retry",
        "/api/v1/logs",
    ]:
        assert path in paths
    components = schema["components"]["schemas"]
    assert "password" in components["SmtpAccountIn"]["properties"]
    assert "password" not in components["SmtpAccountOut"]["properties"]
    assert "password" not in components["RetrievalTaskOut"]["properties"]
    # No UI that would load scripts from a CDN.
    for ui in ("swagger", "redoc", "elements", "rapidoc", ""):
        response = await web_client.get(f"{API}/schema/{ui}")
        assert "cdn" not in response.text.lower()


async def test_anonymous_calls_answer_401_json_not_a_redirect(web_client: WebClient) -> None:
    for method, path in [("GET", "/smtp-accounts"), ("GET", "/folders"), ("GET", "/messages/1"), ("GET", "/logs")]:
        response = await api(web_client, method, path)
        assert response.status_code == 401, (method, path)
        assert response.json() == {"error": "Sign in to continue."}
    response = await api(web_client, "POST", "/smtp-accounts", smtp_body("127.0.0.1", 25))
    assert response.status_code == 401


async def test_unsafe_calls_with_the_session_cookie_need_the_csrf_token(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    body = smtp_body("smtp.example.test", 25)
    refused = await api(web_client, "POST", "/smtp-accounts", body, csrf=False)
    assert refused.status_code == 403
    assert "expired" in refused.json()["error"]
    forged = await web_client.post(f"{API}/smtp-accounts", json=body, headers={CSRF_HEADER: "0" * 64})
    assert forged.status_code == 403
    assert ok(await api(web_client, "GET", "/smtp-accounts")) == []

    session = ok(await api(web_client, "GET", "/session"))
    assert session["email"] == ADMIN_EMAIL
    response = await web_client.post(f"{API}/smtp-accounts", json=body, headers={CSRF_HEADER: session["csrf_token"]})
    assert response.status_code == 201, response.text


# SMTP accounts


async def same_as_the_use_case(
    report: dict[str, Any], db: Database, secret_box: SecretBox, settings: Settings, user_id: int, account_id: int
) -> bool:
    """The API's Test Connection answers what the page's use case answers: the same steps, the same outcome."""
    direct = await smtp_accounts.probe_smtp_account(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, account_id=account_id
    )
    assert report["steps"], report
    return [(s["name"], s["ok"]) for s in report["steps"]] == [(s.name, s.ok) for s in direct.steps] and report[
        "ok"
    ] is direct.ok


async def test_smtp_accounts_are_created_read_updated_tested_and_deleted(
    web_client: WebClient, db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", users={"user": SMTP_PASSWORD}, require_starttls=False)
    user_id = await signed_in(web_client, db)

    created = ok(await api(web_client, "POST", "/smtp-accounts", smtp_body(server.host, server.port)), 201)
    assert created["email_address"] == "ada@home.test"
    assert created["has_password"] is True
    account_id = created["id"]
    assert ok(await api(web_client, "GET", f"/smtp-accounts/{account_id}")) == created
    assert [a["id"] for a in ok(await api(web_client, "GET", "/smtp-accounts"))] == [account_id]

    report = ok(await api(web_client, "POST", f"/smtp-accounts/{account_id}/test"))
    assert report["ok"] is True, report
    assert await same_as_the_use_case(report, db, secret_box, settings, user_id, account_id)

    wrong = smtp_body(server.host, server.port, password="wrong password", account_id=account_id)
    failed = ok(await api(web_client, "POST", "/smtp-accounts/test", wrong))
    assert failed["ok"] is False

    # An update without a password keeps the stored one.
    changed = smtp_body(server.host, server.port, display_name="Ada L.", password=None, is_default=True)
    updated = ok(await api(web_client, "PUT", f"/smtp-accounts/{account_id}", changed))
    assert (updated["display_name"], updated["is_default"], updated["has_password"]) == ("Ada L.", True, True)
    retested = ok(await api(web_client, "POST", f"/smtp-accounts/{account_id}/test"))
    assert await same_as_the_use_case(retested, db, secret_box, settings, user_id, account_id)

    duplicate = await api(web_client, "POST", "/smtp-accounts", smtp_body(server.host, server.port))
    assert duplicate.status_code == 409
    assert set(duplicate.json()) == {"error"}
    invalid = await api(web_client, "POST", "/smtp-accounts", smtp_body(server.host, 70000, email_address="b@x.test"))
    assert invalid.status_code == 400
    assert invalid.json()["error"]
    not_json = await api(web_client, "POST", "/smtp-accounts", {"host": 5})
    assert not_json.status_code == 400

    ok(await api(web_client, "DELETE", f"/smtp-accounts/{account_id}"), 204)
    missing = await api(web_client, "GET", f"/smtp-accounts/{account_id}")
    assert missing.status_code == 404
    assert missing.json() == {"error": missing.json()["error"]}


# Retrieval tasks


@pytest.fixture
async def trusting_client(settings: Settings, dovecot: DovecotServer) -> AsyncIterator[WebClient]:
    """A web client whose app trusts the Dovecot fixture's certificate."""
    trusting = settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})
    async with AsyncTestClient(app=create_app(trusting)) as client:
        client.follow_redirects = False
        yield client


def task_body(dovecot: DovecotServer, mailbox: MailUser, **changes: Any) -> dict[str, Any]:
    return {
        "protocol": Protocol.IMAP.value,
        "host": "127.0.0.1",
        "port": dovecot.imaps_port,
        "security": Security.SSL.value,
        "username": mailbox.email,
        "password": mailbox.password,
        "name": "Remote",
        "method": "manual",
        "timeout_seconds": 10,
        **changes,
    }


async def test_retrieval_tasks_are_created_tested_run_updated_and_deleted(
    trusting_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    client = trusting_client
    await signed_in(client, db)
    dovecot.deliver(mail_user.email, sample("From the remote inbox"))
    dovecot.deliver(mail_user.email, sample("Second one"))

    unsaved = ok(await api(client, "POST", "/retrieval-tasks/test", task_body(dovecot, mail_user)))
    assert unsaved["ok"] is True, unsaved
    created = ok(await api(client, "POST", "/retrieval-tasks", task_body(dovecot, mail_user)), 201)
    task_id = created["id"]
    assert "password" not in created
    assert mail_user.password not in str(created)
    assert ok(await api(client, "GET", f"/retrieval-tasks/{task_id}")) == created
    assert [t["id"] for t in ok(await api(client, "GET", "/retrieval-tasks"))] == [task_id]
    assert ok(await api(client, "POST", f"/retrieval-tasks/{task_id}/test"))["ok"] is True

    run = ok(await api(client, "POST", f"/retrieval-tasks/{task_id}/run"))
    assert run == {"imported": 2, "skipped": 0, "errors": [], "already_running": False}
    again = ok(await api(client, "POST", f"/retrieval-tasks/{task_id}/run"))
    assert again["imported"] == 0

    renamed = ok(
        await api(client, "PUT", f"/retrieval-tasks/{task_id}", task_body(dovecot, mail_user, name="Work", password=""))
    )
    assert renamed["name"] == "Work"
    assert renamed["messages_imported"] == 2
    assert ok(await api(client, "POST", f"/retrieval-tasks/{task_id}/test"))["ok"] is True
    bad = await api(client, "POST", "/retrieval-tasks", task_body(dovecot, mail_user, password=""))
    assert bad.status_code == 400

    ok(await api(client, "DELETE", f"/retrieval-tasks/{task_id}"), 204)
    assert (await api(client, "POST", f"/retrieval-tasks/{task_id}/run")).status_code == 404


# Sending


async def test_a_message_is_sent_with_an_attachment_and_the_outbox_and_logs_are_listed(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    await signed_in(web_client, db)
    account = ok(
        await api(web_client, "POST", "/smtp-accounts", smtp_body(server.host, server.port, auth_required=False)), 201
    )
    attachment = {"filename": "notes.txt", "content_base64": base64.b64encode(b"the notes").decode()}
    message = {
        "to": ["Bob <bob@example.test>"],
        "bcc": ["carol@example.test"],
        "subject": "Over the API",
        "text": "Hello Bob.",
        "from_account_id": account["id"],
        "attachments": [{**attachment, "content_type": "text/plain"}],
    }
    result = ok(await api(web_client, "POST", "/messages/send", message))
    assert result["status"] == "sent", result
    [received] = server.received
    assert sorted(received.rcpt_tos) == ["bob@example.test", "carol@example.test"]
    assert b"Subject: Over the API" in received.data
    assert base64.b64encode(b"the notes") in received.data
    assert b"Bcc" not in received.data

    assert ok(await api(web_client, "GET", "/outbox")) == []
    [sent] = ok(await api(web_client, "GET", "/outbox?all=true"))
    assert (sent["id"], sent["status"], sent["subject"]) == (result["outbox_id"], "sent", "Over the API")
    again = await api(web_client, "POST", f"/outbox/{sent['id']}/retry")
    assert again.status_code == 400

    broken = {**message, "attachments": [{"filename": "x", "content_base64": "not base64!"}]}
    assert (await api(web_client, "POST", "/messages/send", broken)).status_code == 400
    nobody = await api(web_client, "POST", "/messages/send", {**message, "to": [], "bcc": []})
    assert nobody.status_code == 400

    logs = ok(await api(web_client, "GET", "/logs?limit=1"))
    assert set(logs) == {"entries", "next_before"}
    filtered = ok(await api(web_client, "GET", f"/logs?smtp_account_id={account['id']}&level=Error"))
    assert all(e["level"] == "Error" for e in filtered["entries"])
    assert (await api(web_client, "GET", "/logs?level=Loud")).status_code == 400


async def test_ids_and_numbers_too_large_for_the_database_are_invalid_input(
    web_client: WebClient, db: Database
) -> None:
    await signed_in(web_client, db)
    huge = 10**20
    for method, path, body in [
        ("GET", f"/messages/{huge}", None),
        ("GET", f"/logs?before={huge}", None),
        ("POST", "/messages/send", {"to": ["bob@example.test"], "from_account_id": huge}),
        ("POST", "/smtp-accounts", smtp_body("smtp.example.test", 25, messages_per_minute=huge)),
    ]:
        response = await api(web_client, method, path, body)
        assert response.status_code == 400, (method, path, response.text)
        assert set(response.json()) == {"error"}


async def test_ids_past_the_32_bit_id_columns_are_invalid_input_on_every_database(
    web_client: WebClient, db: Database
) -> None:
    """Id columns are INTEGER (32 bits on PostgreSQL, which refuses a larger value in a query)."""
    await signed_in(web_client, db)
    past = 2**31
    for method, path, body in [
        ("GET", f"/filters/{past}", None),
        ("GET", f"/folders/{past}/messages", None),
        ("GET", f"/logs?retrieval_task_id={past}", None),
        ("PUT", f"/messages/{past}/flags", {"seen": True}),
        ("POST", "/smtp-accounts/test", {**smtp_body("smtp.example.test", 25), "account_id": past}),
    ]:
        response = await api(web_client, method, path, body)
        assert response.status_code == 400, (method, path, response.text)
        assert set(response.json()) == {"error"}
    assert (await api(web_client, "GET", f"/filters/{past - 1}")).status_code == 404


async def test_a_filter_name_with_a_control_character_is_invalid_input_on_every_database(
    web_client: WebClient, db: Database
) -> None:
    """PostgreSQL refuses NUL in text (a server error before)."""
    await signed_in(web_client, db)
    rule = {"conditions": [{"field": "subject", "op": "contains", "value": "x"}], "actions": [{"kind": "flag"}]}
    for name in ("a\x00b", "bell\x07", "c1\x9b"):
        response = await api(web_client, "POST", "/filters", {**rule, "name": name})
        assert response.status_code == 400, (name, response.text)
        assert response.json() == {"error": "A filter name cannot contain control characters."}
    assert (await api(web_client, "POST", "/filters", {**rule, "name": "Ünïcode 🎉 news"})).status_code == 201


async def test_an_unknown_api_path_answers_404_json(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    for path in ["/nothing", "/smtp-account", "/a/b/c"]:
        response = await api(web_client, "GET", path)
        assert response.status_code == 404
        assert response.json() == {"error": "There is nothing at this address."}


async def test_errors_before_routing_are_json_and_giant_ids_are_not_found(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    deep = await web_client.get(f"{API}/smtp-accounts/1/no-such-thing")
    assert deep.status_code == 404
    assert deep.json() == {"error": "There is nothing at this address."}
    for path in ("/mail/messages/99999999999999999999", f"{API}/messages/99999999999999999999"):
        response = await web_client.get(path)
        assert response.status_code in (400, 404), (path, response.status_code)


async def test_only_the_api_is_in_the_schema(web_client: WebClient) -> None:
    schema = ok(await web_client.get(f"{API}/schema/openapi.json"))
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
