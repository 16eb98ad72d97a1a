"""Large bodies are read only for a signed-in session whose CSRF token verified first: an anonymous
95 MB upload to /compose is refused before it is read, anonymous requests get a small limit, and a
signed-in compose with a large attachment still goes out."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any, cast

import httpx
from litestar import Litestar
from litestar.types import Scope

from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import SESSION_COOKIE, WebClient, csrf_token, set_up_admin
from tests.test_web_compose import add_account, parsed, signed_in_user, text_of
from web.support.csrf import ANONYMOUS_MAX_BODY, FORM_TOKEN_MAX_BODY
from web.support.sessions import SESSION_STORE, USER_ID_KEY, signed_in_user_id

BOUNDARY = "----tributary-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
ANONYMOUS_SESSION = "a" * 32
_ACTION = re.compile(r'<form id="compose-form"[^>]*\saction="([^"]+)"')


class CountingBody:
    """A request body streamed in chunks, counting how many the server pulled."""

    def __init__(self, total: int, chunk: int) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="attachments"; filename="big.bin"\r\n\r\n'
        yield head.encode()
        sent = 0
        while sent < self.total:
            self.pulled += 1
            yield b"x" * self.chunk
            sent += self.chunk


def _raw_client(app: Litestar, client: WebClient) -> httpx.AsyncClient:
    """A client of the running app that streams request bodies lazily, with `client`'s cookies."""
    transport = httpx.ASGITransport(app=cast(Any, app))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver.local", cookies=client.cookies)


async def test_an_anonymous_95_mb_upload_to_compose_is_refused_unread(web_app: Litestar, web_client: WebClient) -> None:
    await set_up_admin(web_client)
    web_client.cookies.delete(SESSION_COOKIE)
    token = await csrf_token(web_client)  # a valid visitor token does not help
    async with _raw_client(web_app, web_client) as raw:
        # With Content-Length or chunked; the token (if any) would be in the form, or a visitor's in the header.
        for declared, header in ((True, False), (False, False), (True, True)):
            body = CountingBody(95 * 1024 * 1024, 1024 * 1024)
            headers = {"Content-Type": MULTIPART, **({"X-CSRFToken": token} if header else {})}
            if declared:
                headers["Content-Length"] = str(95 * 1024 * 1024 + 200)
            response = await raw.post("/compose", content=body, headers=headers)
            assert response.status_code == 303
            assert response.headers["location"] == "/login"
            assert body.pulled == 0


async def test_anonymous_requests_get_the_small_limit(web_app: Litestar, web_client: WebClient) -> None:
    await set_up_admin(web_client)
    web_client.cookies.delete(SESSION_COOKIE)
    async with _raw_client(web_app, web_client) as raw:
        body = CountingBody(1024 * 1024, 16 * 1024)  # chunked: no Content-Length to refuse up front
        response = await raw.post("/login", content=body, headers={"Content-Type": MULTIPART})
        assert response.status_code == 413
        assert body.pulled <= ANONYMOUS_MAX_BODY // body.chunk + 1
        declared = await raw.post(
            "/login",
            content=CountingBody(1024 * 1024, 16 * 1024),
            headers={"Content-Type": MULTIPART, "Content-Length": str(1024 * 1024 + 200)},
        )
        assert declared.status_code == 413


async def test_an_anonymous_session_with_stored_data_still_gets_the_small_limit(
    web_app: Litestar, web_client: WebClient
) -> None:
    await set_up_admin(web_client)
    web_client.cookies.delete(SESSION_COOKIE)
    # A stored session that holds something, but no user: the large limits are for signed-in users only.
    await web_app.stores.get(SESSION_STORE).set(ANONYMOUS_SESSION, b'{"notice": "kept for later"}', expires_in=600)
    web_client.cookies.set(SESSION_COOKIE, ANONYMOUS_SESSION)
    async with _raw_client(web_app, web_client) as raw:
        body = CountingBody(1024 * 1024, 16 * 1024)
        response = await raw.post("/login", content=body, headers={"Content-Type": MULTIPART})
        assert response.status_code == 413
        assert body.pulled <= ANONYMOUS_MAX_BODY // body.chunk + 1
        compose = CountingBody(95 * 1024 * 1024, 1024 * 1024)
        sent = await raw.post("/compose", content=compose, headers={"Content-Type": MULTIPART})
        assert sent.status_code == 303
        assert sent.headers["location"] == "/login"
        assert compose.pulled == 0


def test_only_a_user_id_in_the_session_counts_as_signed_in() -> None:
    assert signed_in_user_id(cast(Scope, {"session": {USER_ID_KEY: 7}})) == 7
    for session in ({}, {"notice": "x"}, {USER_ID_KEY: "7"}, {USER_ID_KEY: True}, None):
        assert signed_in_user_id(cast(Scope, {"session": session})) is None
    assert signed_in_user_id(cast(Scope, {})) is None


async def test_a_signed_in_compose_with_a_large_attachment_goes_out(
    web_client: WebClient, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await signed_in_user(web_client, db)
    account = await add_account(db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada")
    big = bytes(range(256)) * ((FORM_TOKEN_MAX_BODY + 2 * 1024 * 1024) // 256)  # over the limit without the token
    fields = {"send_from": str(account), "to": "bob@example.test", "subject": "Big", "cc": "", "bcc": "", "body": "x"}
    files = [("attachments", ("big.bin", big, "application/octet-stream"))]

    page = await web_client.get("/compose")
    action = _ACTION.search(page.text)
    assert action is not None
    # A plain form post (no script): the token rides in the form's action URL, checked before the body.
    response = await web_client.post(unescape(action.group(1)), data=fields, files=files)
    assert "Message sent" in text_of(response), text_of(response)
    [received] = server.received
    [attachment] = list(parsed(received.data).iter_attachments())
    assert attachment.get_payload(decode=True) == big

    # The token only inside the body: the body is read only up to the ordinary limit.
    token = await csrf_token(web_client)
    refused = await web_client.post("/compose", data={"_csrf_token": token, **fields}, files=files)
    assert refused.status_code == 413
    assert len(server.received) == 1
