"""The OpenAPI document at /api/v1/schema/openapi.json is true: every operation's answers, including
its errors, are what the document says.

The document is checked by hand where a reader depends on it (the error shape, the security schemes,
which operations need the CSRF header), and by schemathesis over every operation: requests generated
from the document (a bounded, derandomized number per operation, signed in, with the CSRF header)
must get no server error, only documented statuses and content types, and bodies that match the
documented schemas. Failures are collected, one per operation, and reported together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case as AnyCase
from schemathesis.schemas import APIOperation as AnyOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.config import Settings
from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask, SmtpAccount
from service.usecases import filters, retrieval_tasks
from tests.fixtures.webapp import WebClient, csrf_token
from tests.mail_samples import sample
from tests.test_api import API, UNSAFE, signed_in
from tests.test_api_mail import store
from tests.test_reading_render import with_attachments
from tests.test_smtp_fakes import make_account
from web.app import create_app
from web.support.csrf import CSRF_HEADER

Operation = AnyOperation[Any, Any, Any, Any]
Case = AnyCase[Any]
SCHEMA = f"{API}/schema/openapi.json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}  # per operation
ERROR = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture
def web_app(settings: Settings) -> Litestar:
    """The default outbound policy (no loopback exception): generated hosts reach nothing local."""
    return create_app(settings.model_copy(update={"outbound_allow": ""}))


async def _document(client: WebClient) -> dict[str, Any]:
    response = await client.get(SCHEMA)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


async def test_errors_are_documented_as_the_api_sends_them(web_client: WebClient, db: Database) -> None:
    document = await _document(web_client)
    assert document["components"]["schemas"]["ErrorBody"] == {
        "properties": {"error": {"type": "string"}},
        "type": "object",
        "required": ["error"],
        "title": "ErrorBody",
    }
    for method, path, op in _operations(document):
        errors = {status: r for status, r in op["responses"].items() if int(status) >= 400}
        for status, response in errors.items():
            assert response["content"] == {"application/json": {"schema": ERROR}}, (method, path, status)
        assert "401" in errors, (method, path)
        if method in UNSAFE:
            assert "403" in errors, (method, path)
        if "{" in path:
            assert "404" in errors, (method, path)
        if path.endswith("/test"):
            assert "429" in errors, (method, path)

    # What is really sent for an anonymous call, a validation error and a missing object.
    anonymous = await web_client.get(f"{API}/smtp-accounts")
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "Sign in to continue."})
    await signed_in(web_client, db)
    invalid = await web_client.get(f"{API}/logs", params={"limit": "0"})
    assert invalid.status_code == 400
    assert set(invalid.json()) == {"error"}
    missing = await web_client.get(f"{API}/filters/999")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}


async def test_sign_in_is_documented_as_a_cookie_and_the_csrf_header(web_client: WebClient, db: Database) -> None:
    document = await _document(web_client)
    schemes = document["components"]["securitySchemes"]
    assert {name: (s["type"], s["in"]) for name, s in schemes.items()} == {
        "session": ("apiKey", "cookie"),
        "csrf": ("apiKey", "header"),
    }
    assert schemes["csrf"]["name"].lower() == CSRF_HEADER.lower()
    await signed_in(web_client, db)
    assert schemes["session"]["name"] in web_client.cookies  # the cookie signing in really sets
    for method, path, op in _operations(document):
        expected: list[dict[str, list[str]]] = [{"session": [], "csrf": []}] if method in UNSAFE else [{"session": []}]
        assert op["security"] == expected, (method, path)


async def _seed(db: Database, secret_box: SecretBox, user_id: int) -> None:
    """One of each object, so generated ids (1 comes up often) sometimes reach a real one."""
    await make_account(db, secret_box, user_id, "smtp.example.test", 587, password="pw")
    new = retrieval_tasks.NewTask(
        protocol=Protocol.IMAP, host="imap.example.test", security=Security.SSL, username="me", password="pw"
    )
    await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user_id, new=new)
    rule = FilterRule(
        name="News",
        conditions=(Condition(FilterField.SUBJECT, FilterOp.CONTAINS, "news"),),
        actions=(Action(ActionKind.MOVE, "News"),),
    )
    await filters.create_rule(db=db, user_id=user_id, rule=rule)
    await store(db, user_id, with_attachments(["report.pdf"]))
    await store(db, user_id, sample("Second"))
    async with db.write() as session:  # and one of each signing in with a provider (issue 15), pending
        session.add(
            RetrievalTask(
                user_id=user_id,
                protocol=Protocol.IMAP,
                host="imap.example.test",
                port=993,
                username="",
                auth=AuthKind.OAUTH2,
                oauth_provider="local",
                oauth_status=CredentialStatus.PENDING,
            )
        )
        session.add(
            SmtpAccount(
                user_id=user_id,
                email_address="",
                host="smtp.example.test",
                port=587,
                security=Security.STARTTLS,
                auth=AuthKind.OAUTH2,
                oauth_provider="local",
                oauth_status=CredentialStatus.PENDING,
            )
        )


def _first_failure(operation: Operation, mode: GenerationMode, send: Callable[[Case], httpx.Response]) -> str | None:
    """Run the operation's generated cases (no shrinking: the first failure is reported as found)."""
    found: list[str] = []

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES[mode],
        derandomize=True,  # the same cases on every run
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        response = send(case)
        try:
            case.validate_response(response, checks=CHECKS)
        except (FailureGroup, AssertionError) as exc:
            if not found:
                found.append(f"{case.method} {case.formatted_path} {case.body!r} -> {response.status_code}: {exc}")

    run()
    return found[0] if found else None


def _fuzz(operations: list[Operation], send: Callable[[Case], httpx.Response]) -> list[str]:
    """Each operation with valid data, then with invalid data; the first failure of each, as text."""
    failures = [_first_failure(operation, mode, send) for operation in operations for mode in MAX_EXAMPLES]
    return [failure for failure in failures if failure is not None]


async def test_every_operation_keeps_the_contract(web_client: WebClient, db: Database, secret_box: SecretBox) -> None:
    user_id = await signed_in(web_client, db)
    await _seed(db, secret_box, user_id)
    token = await csrf_token(web_client)
    schema = schemathesis.openapi.from_dict(await _document(web_client))
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", op.path, op.method))  # deletes last
    assert len(operations) == len(_operations(await _document(web_client)))
    loop = asyncio.get_running_loop()

    def send(case: Case) -> httpx.Response:
        """The case as the signed-in client sends it: its session cookie, and the real CSRF token."""
        prepared = case.as_transport_kwargs(base_url=str(web_client.base_url))
        headers = {k: v for k, v in prepared["headers"].items() if k.lower() != CSRF_HEADER.lower()}
        if case.method.upper() in UNSAFE:
            headers[CSRF_HEADER] = token
        body: dict[str, Any] = {}
        if "json" in prepared:
            body["json"] = prepared["json"]
        elif prepared.get("data") is not None:
            body["content"] = prepared["data"]
        request = web_client.request(
            prepared["method"], prepared["url"], headers=headers, params=prepared.get("params"), **body
        )
        return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)

    failures = await asyncio.to_thread(_fuzz, operations, send)
    assert failures == [], "\n\n".join(failures)
