"""What a message page loads beside it: the sandboxed body frame and its strict CSP,
inline images by signed link, and downloads that the browser never renders.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from service.config import Settings
from service.domain.users import UserView
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.mail_samples import sample
from tests.test_reading_render import NON_ASCII_NAMES, PNG, html_message, with_attachments
from web.controllers.mail import links
from web.controllers.mail.content import content_disposition


async def _signed_in(client: WebClient, db: Database) -> UserView:
    await set_up_admin(client)
    return await find_user(db=db, email=ADMIN_EMAIL)


async def _deliver(db: Database, user_id: int, raw: bytes) -> int:
    async with db.write() as session:
        inbox = await folder_by_path(session, user_id, "Inbox")
        assert inbox.id is not None
        stored = await deliver(session, user_id=user_id, folder_id=inbox.id, raw=raw)
    assert stored.id is not None
    return stored.id


def _directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()}


async def test_the_body_frame_is_sanitised_under_a_strict_policy(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    message_id = await _deliver(db, user.id, html_message())

    frame = await web_client.get(f"/mail/messages/{message_id}/body")
    assert frame.status_code == 200
    assert frame.headers["content-type"].startswith("text/html")
    csp = _directives(frame.headers["content-security-policy"])
    assert csp["default-src"] == "'none'"
    assert csp["style-src"] == "'unsafe-inline'"
    assert csp["img-src"] == "'self' data:"
    assert "script-src" not in csp
    assert csp["frame-ancestors"] == "'self'"
    assert csp["form-action"] == "'none'"
    assert "sandbox" in csp  # also sandboxed when opened on its own
    assert frame.headers["x-content-type-options"] == "nosniff"
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"
    assert frame.headers["referrer-policy"] == "no-referrer"
    assert frame.headers["cache-control"] == "no-store"
    body = frame.text
    assert "Hello <b>reader</b>" in body
    for gone in ("<script", "alert", "onerror", "onload", "javascript:", "tracker.example", "evil.example", "<form"):
        assert gone not in body, gone

    with_images = await web_client.get(f"/mail/messages/{message_id}/body?images=1")
    assert _directives(with_images.headers["content-security-policy"])["img-src"] == "'self' data: https: http:"
    assert 'src="https://tracker.example/pixel.gif"' in with_images.text
    assert "onerror" not in with_images.text


async def test_a_plain_message_in_the_frame_is_escaped_text(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    message_id = await _deliver(db, user.id, sample("Plain", body="<script>alert(1)</script>\r\n"))
    frame = await web_client.get(f"/mail/messages/{message_id}/body")
    assert "<pre>&lt;script&gt;alert(1)&lt;/script&gt;\n</pre>" in frame.text


async def test_inline_images_load_by_signed_link_without_cookies(
    web_client: WebClient, db: Database, settings: Settings
) -> None:
    user = await _signed_in(web_client, db)
    message_id = await _deliver(db, user.id, html_message())
    frame = (await web_client.get(f"/mail/messages/{message_id}/body")).text
    match = re.search(r'<img src="(/mail/inline/[^"]+)" alt="logo">', frame)
    assert match is not None
    link = match.group(1).replace("&amp;", "&")

    cookies = dict(web_client.cookies)
    web_client.cookies.clear()  # what the sandboxed frame sends: no session, no CSRF cookie
    image = await web_client.get(link)
    assert image.status_code == 200
    assert image.content == PNG
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]
    for broken in (
        link[:-3] + "AAA",  # signature
        re.sub(r"\be=\d+", "e=99999999999", link),  # expiry
        link.replace(f"/inline/{message_id}/", f"/inline/{message_id + 1}/"),  # another message
        link.replace("/2.2?", "/1?"),  # a part that is not an image
    ):
        assert (await web_client.get(broken)).status_code == 404, broken
    web_client.cookies.update(cookies)
    expired = links.inline_url_maker(settings, user_id=user.id, message_id=message_id)("2.2")
    expired = re.sub(r"\be=\d+", "e=1000", expired)
    assert (await web_client.get(expired)).status_code == 404


async def test_attachments_download_with_safe_headers_and_exact_names(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    original = with_attachments()
    message_id = await _deliver(db, user.id, original)
    for part_id, name in zip(("2", "3", "4"), NON_ASCII_NAMES, strict=True):
        response = await web_client.get(f"/mail/messages/{message_id}/attachments/{part_id}")
        assert response.status_code == 200
        assert response.content == f"content of {name}".encode()
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["x-content-type-options"] == "nosniff"
        disposition = response.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        shown = name.replace("\\", "_")
        assert disposition.endswith(f"filename*=UTF-8''{quote(shown, safe='!#$&+-.^_`|~')}")
    assert (await web_client.get(f"/mail/messages/{message_id}/attachments/9")).status_code == 404
    assert (await web_client.get(f"/mail/messages/{message_id}/attachments/x")).status_code == 404

    raw = await web_client.get(f"/mail/messages/{message_id}/raw")
    assert raw.content == original
    assert raw.headers["content-disposition"] == (
        f"attachment; filename=\"message-{message_id}.eml\"; filename*=UTF-8''message-{message_id}.eml"
    )


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        ("Größe €.pdf", "attachment; filename=\"Gr__e _.pdf\"; filename*=UTF-8''Gr%C3%B6%C3%9Fe%20%E2%82%AC.pdf"),
        ('a"b\\c.txt', "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt"),
        ("報告書", "attachment; filename=\"___\"; filename*=UTF-8''%E5%A0%B1%E5%91%8A%E6%9B%B8"),
    ],
)
def test_content_disposition_follows_rfc_6266(name: str, header: str) -> None:
    assert content_disposition(name) == header
