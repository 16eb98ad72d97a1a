"""Tenant isolation: two users, each with an SMTP account, a retrieval task, a filter, a folder, a message with
an attachment, an outbox entry and log entries. Signed in as Bob, walk EVERY route of the app (pages
and API, taken from app.routes, so a new route is walked too) with Alice's ids in the path, for GET
and for every unsafe method with a valid CSRF token: each answers 404 (403 for the administration
pages, 405 for a method the route lacks), never Alice's data, and Alice's objects stay as they were.

A route with a path parameter this walk does not know fails the test: say what the new parameter
names (whose object it is) in TENANT_PARAMS or NEUTRAL_PARAMS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlmodel import select

from service.config import Settings
from service.domain.compose import Draft
from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule
from service.domain.values import LogLevel, LogSource, Protocol, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain
from service.usecases import filters, reading, retrieval_tasks, sending, smtp_accounts
from service.usecases.logs import list_logs, record
from service.usecases.users import add_user
from tests.fixtures.webapp import WebClient, csrf_token, log_in
from tests.test_api import signed_in
from tests.test_smtp_fakes import make_account, scripted_aiosmtpd
from web.support.csrf import CSRF_HEADER

BOB_EMAIL = "bob@example.test"
BOB_PASSWORD = "bob's long enough password"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NEUTRAL_PARAMS = {"file_path": "nothing-here.txt", "path": "nothing-here", "rest": "nothing-here"}
"""Path parameters that name no user's object."""


@dataclass(frozen=True)
class Tenant:
    """One user's objects, and words that appear only in them (to spot a leak in any response)."""

    user_id: int
    account_id: int
    task_id: int
    folder_id: int
    message_id: int
    part_id: str
    outbox_id: int
    domain_id: int
    rule_id: int
    markers: tuple[str, ...]

    def params(self) -> dict[str, str]:
        """TENANT_PARAMS: each path parameter that names a user's object, with this tenant's id."""
        return {
            "account_id": str(self.account_id),
            "task_id": str(self.task_id),
            "folder_id": str(self.folder_id),
            "message_id": str(self.message_id),
            "part_id": self.part_id,
            "outbox_id": str(self.outbox_id),
            "domain_id": str(self.domain_id),
            "user_id": str(self.user_id),
            "rule_id": str(self.rule_id),
        }

    def query(self) -> dict[str, str]:
        """Query parameters naming this tenant's objects, sent to every route too."""
        return {
            "reply": str(self.message_id),
            "reply_all": str(self.message_id),
            "forward": str(self.message_id),
            "account": f"smtp:{self.account_id}",
            "smtp_account_id": str(self.account_id),
            "retrieval_task_id": str(self.task_id),
            # an inline image link for this user (its signature is not valid: Bob cannot make one)
            "u": str(self.user_id),
            "e": "4102444800",
            "s": "0" * 64,
        }

    def form(self) -> dict[str, str]:
        return {
            "ids": str(self.message_id),
            "action": "delete",
            "folder_id": str(self.folder_id),
            "send_from": str(self.account_id),
            "to": "walker@example.test",
            "subject": "walk",
            "body": "walk",
            "reply_to": str(self.message_id),
            "forward_of": str(self.message_id),
        }

    def json(self) -> dict[str, Any]:
        return {
            "seen": True,
            "folder_id": self.folder_id,
            "account_id": self.account_id,
            "task_id": self.task_id,
            "from_account_id": self.account_id,
            "in_reply_to_message_id": self.message_id,
            "to": ["walker@example.test"],
            "subject": "walk",
            "text": "walk",
            # valid SMTP account and retrieval task settings, so an edit gets as far as the ownership check
            "email_address": "walker@example.test",
            "host": "127.0.0.1",
            "security": "none",
            "auth_required": False,
            "protocol": "imap",
            "username": "walker",
            "password": "walker-password",
            "method": "manual",
            # a valid filter, so an edit or a move gets as far as the ownership check
            "name": "walk",
            "conditions": [{"field": "subject", "op": "contains", "value": "walk"}],
            "actions": [{"kind": "flag"}],
            "up": True,
        }


def _message(name: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} Sender <sender-{name.lower()}@example.test>"
    message["To"] = f"{name.lower()}@example.test"
    message["Subject"] = f"{name} private subject"
    message.set_content(f"{name} private body text.\n")
    message.add_attachment(
        f"{name} attachment bytes".encode(), maintype="text", subtype="plain", filename=f"{name.lower()}-notes.txt"
    )
    return bytes(message)


async def _populate(db: Database, secret_box: SecretBox, settings: Settings, user_id: int, name: str) -> Tenant:
    lower = name.lower()
    with scripted_aiosmtpd(data=["554 5.7.1 Refused by the walk"]) as server:
        account_id = await make_account(
            db, secret_box, user_id, server.host, server.port, email_address=f"{lower}-smtp@{lower}.test"
        )
        result = await sending.send_message(
            db=db,
            secret_box=secret_box,
            settings=settings,
            user_id=user_id,
            from_account_id=account_id,
            draft=Draft(to=("someone@example.test",), subject=f"{name} outbox subject", text="x"),
        )
    task = await retrieval_tasks.add_task(
        db=db,
        secret_box=secret_box,
        user_id=user_id,
        new=retrieval_tasks.NewTask(
            protocol=Protocol.IMAP,
            host="127.0.0.1",
            port=9,
            security=Security.NONE,
            username=f"{lower}-remote-user",
            password=f"{lower}-remote-password",
            method=RetrievalMethod.MANUAL,
        ),
    )
    async with db.write() as session:
        folder = await folder_by_path(session, user_id, f"{name}Folder")
        assert folder.id is not None
        stored = await deliver(session, user_id=user_id, folder_id=folder.id, raw=_message(name), seen=False)
        assert stored.id is not None
        record(session, source=LogSource.OUTGOING, level=LogLevel.INFO, text=f"{name} log line", user_id=user_id)
        record(
            session,
            source=LogSource.INCOMING,
            level=LogLevel.ERROR,
            text=f"{name} task log line",
            user_id=user_id,
            retrieval_task_id=task.id,
        )
        domain_id = (await session.exec(select(Domain.id))).first()
        assert domain_id is not None
    rule = await filters.create_rule(
        db=db,
        user_id=user_id,
        rule=FilterRule(
            name=f"{name} private filter",
            conditions=(Condition(FilterField.SUBJECT, FilterOp.CONTAINS, f"{lower}-secret-word"),),
            actions=(Action(ActionKind.MOVE, f"{name}FilterTarget"),),
        ),
    )
    assert rule.id is not None
    view = await reading.open_message(db=db, user_id=user_id, message_id=stored.id, mark_read=False)
    [part] = view.view.attachments
    return Tenant(
        user_id=user_id,
        account_id=account_id,
        task_id=task.id,
        folder_id=folder.id,
        message_id=stored.id,
        part_id=part.part_id,
        outbox_id=result.outbox_id,
        domain_id=domain_id,
        rule_id=rule.id,
        markers=(
            f"{name} private subject",
            f"{name} private body",
            f"{name} attachment bytes",
            f"{lower}-notes.txt",
            f"{lower}-smtp@{lower}.test",
            f"{lower}-remote-user",
            f"{name}Folder",
            f"{name} log line",
            f"{name} task log line",
            f"{name} outbox subject",
            f"{name} private filter",
            f"{lower}-secret-word",
            f"{name}FilterTarget",
        ),
    )


async def _snapshot(db: Database, tenant: Tenant) -> dict[str, Any]:
    """Everything of the tenant's that a route could change."""
    uid = tenant.user_id
    opened = await reading.open_message(db=db, user_id=uid, message_id=tenant.message_id, mark_read=False)
    return {
        "account": await smtp_accounts.get_smtp_account(db=db, user_id=uid, account_id=tenant.account_id),
        "task": await retrieval_tasks.get_task(db=db, task_id=tenant.task_id, user_id=uid),
        "folders": await reading.list_folders(db=db, user_id=uid),
        "message": (opened.folder.id, opened.seen, opened.flagged),
        "raw": await reading.export_raw(db=db, user_id=uid, message_id=tenant.message_id),
        "outbox": await sending.list_outbox(db=db, user_id=uid, include_sent=True),
        "logs": await list_logs(db=db, user_id=uid, limit=1000),
        "filters": await filters.list_rules(db=db, user_id=uid),
    }


def _path(route: HTTPRoute, values: dict[str, str]) -> str:
    """The route's path with each {name:type} replaced by the value for that name."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, (
            f"{route.path}: the tenant isolation walk does not know the path parameter {name!r}; "
            "add it to Tenant.params() (a user's object) or NEUTRAL_PARAMS"
        )
        return values[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, route.path)


async def _signed_in_as_bob(client: WebClient) -> None:
    if (await client.get("/api/v1/session")).status_code != 200:
        client.cookies.clear()
        response = await log_in(client, email=BOB_EMAIL, password=BOB_PASSWORD)
        assert response.status_code == 303, response.text


async def _call(client: WebClient, method: str, path: str, alice: Tenant) -> httpx.Response:
    headers = {} if method == "GET" else {CSRF_HEADER: await csrf_token(client)}
    if method == "GET":
        return await client.get(path, params=alice.query())
    if path.startswith("/api/"):
        return await client.request(method, path, params=alice.query(), json=alice.json(), headers=headers)
    form = {**alice.form(), "_csrf_token": headers[CSRF_HEADER]}
    return await client.request(method, path, params=alice.query(), data=form, headers=headers)


def _expected(route: HTTPRoute, method: str) -> set[int]:
    if method not in route.methods:
        return {405}
    if route.path.startswith("/admin"):
        return {403}
    return {404}


async def test_no_route_reaches_another_users_objects(
    web_app: Litestar, web_client: WebClient, db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    alice_id = await signed_in(web_client, db)  # the first-run administrator
    bob = await add_user(db=db, email=BOB_EMAIL, password=BOB_PASSWORD)
    alice = await _populate(db, secret_box, settings, alice_id, "Alice")
    await _populate(db, secret_box, settings, bob.id, "Bob")
    before = await _snapshot(db, alice)
    web_client.cookies.clear()
    await _signed_in_as_bob(web_client)

    values = {**NEUTRAL_PARAMS, **alice.params()}
    routes = [r for r in web_app.routes if isinstance(r, HTTPRoute)]
    assert any(r.path.startswith("/api/v1/") for r in routes)
    assert any(r.path.startswith("/mail/") for r in routes)
    problems: list[str] = []
    walked = 0
    for route in routes:
        path = _path(route, values)
        names_an_object = any(name in route.path for name in alice.params())
        for method in METHODS:
            response = await _call(web_client, method, path, alice)
            walked += 1
            leaked = [m for m in alice.markers if m in response.text]
            if leaked:
                problems.append(f"{method} {route.path}: {response.status_code} shows Alice's {leaked}")
            if names_an_object and response.status_code not in _expected(route, method):
                problems.append(f"{method} {route.path}: {response.status_code}, expected {_expected(route, method)}")
            if response.status_code >= 500:
                problems.append(f"{method} {route.path}: {response.status_code}")
            if method != "GET":
                await _signed_in_as_bob(web_client)  # a route like /logout may have signed Bob out
    assert walked >= 5 * 50
    assert not problems, "\n".join(problems)
    assert await _snapshot(db, alice) == before
