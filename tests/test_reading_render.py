"""A message as the reader sees it: headers, plain text or sanitised HTML, inline images,
attachments with their part ids, and mail the parser chokes on still shown.

The builders here (`html_message`, `with_attachments`) are shared by the web and browser tests.
"""

from __future__ import annotations

import base64
from email import policy
from email.message import EmailMessage

import pytest

from service.domain.rendering import find_attachment, find_inline_image, render_message, sanitize_html
from service.errors import InvalidInput
from service.usecases.reading import PageCursor
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
NON_ASCII_NAMES = ["Bericht Größe €.pdf", "報告書.txt", 'quote"and\\slash.bin']
HOSTILE_HTML = """<html><head><title>Hidden title</title><base href="https://evil.example/">
<meta http-equiv="refresh" content="0;url=https://evil.example/"><style>p { color: red }</style>
<script>alert(1)</script></head>
<body onload="alert('body')">
<p onclick="alert('click')" style="color: green; background: url(https://evil.example/bg.png);
   width: expression(alert(1)); position: fixed; font-weight: bold">Hello <b>reader</b></p>
<img src="https://tracker.example/pixel.gif" onerror="alert('img')" alt="tracker">
<img src="http://tracker.example/plain.gif">
<img src="cid:logo@example.test" alt="logo">
<a href="javascript:alert('link')">bad link</a> <a href="https://good.example/page">good link</a>
<a href="mailto:someone@example.test">mail</a> <a href="/logout">relative</a>
<form action="https://evil.example/steal"><input name="password"><button>Send</button></form>
<iframe src="https://evil.example/frame"></iframe><object data="https://evil.example/x"></object>
<svg onload="alert('svg')"><circle r="4"/></svg>
<div style="background-image: u\\72l(https://evil.example/escaped.png)">escaped</div>
</body></html>"""


def html_message(
    html: str = HOSTILE_HTML,
    *,
    subject: str = "Newsletter",
    inline_png: bytes | None = PNG,
    cid: str = "logo@example.test",
    attachments: list[tuple[str, bytes]] | None = None,
) -> bytes:
    """A multipart/alternative message (text and HTML), the HTML with an inline PNG via multipart/related."""
    message = EmailMessage()
    message["From"] = "News Desk <news@example.test>"
    message["To"] = "Reader <reader@example.test>"
    message["Cc"] = "Copy <copy@example.test>"
    message["Subject"] = subject
    message["Date"] = "Tue, 05 Mar 2024 10:11:12 +0000"
    message["Message-ID"] = "<html-1@example.test>"
    message.set_content("The plain version.\n")
    message.add_alternative(html, subtype="html")
    if inline_png is not None:
        html_part = list(message.iter_parts())[1]
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(inline_png, maintype="image", subtype="png", cid=f"<{cid}>")
    for name, data in attachments or []:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes(policy=policy.SMTP)


def with_attachments(names: list[str] = NON_ASCII_NAMES) -> bytes:
    """A plain-text message with one attachment per name; each attachment's bytes say its name."""
    message = EmailMessage()
    message["From"] = "Jörg <joerg@example.test>"
    message["To"] = "reader@example.test"
    message["Subject"] = "Files für dich"
    message["Date"] = "Wed, 06 Mar 2024 08:00:00 +0100"
    message.set_content("See the attachments.\n<b>not bold</b>\n")
    for name in names:
        message.add_attachment(
            f"content of {name}".encode(), maintype="application", subtype="octet-stream", filename=name
        )
    return message.as_bytes(policy=policy.SMTP)


def test_plain_text_message() -> None:
    view = render_message(sample("Plain one", body="Line one\r\n<script>alert(1)</script>\r\n"))
    assert view.subject == "Plain one"
    assert view.sender == "Sender <sender@example.test>"
    assert view.to == "reader@example.test"
    assert view.date is not None
    assert view.html is None
    assert view.text == "Line one\n<script>alert(1)</script>\n"  # escaping is the page's job
    assert view.attachments == ()
    assert view.problem is None


def test_html_is_sanitised_and_remote_images_are_held_back() -> None:
    view = render_message(html_message(), inline_url=lambda part_id: f"/inline/{part_id}")
    assert view.html is not None
    assert view.text is None
    html = view.html
    for gone in (
        "<script", "alert", "onload", "onclick", "onerror", "javascript:", "<style", "<base", "<meta",
        "<form", "<input", "<iframe", "<object", "<svg", "Hidden title", "evil.example", "tracker.example",
        "expression", "position", "/logout",
    ):  # fmt: skip
        assert gone not in html, gone
    assert view.remote_images == 2
    assert "Hello <b>reader</b>" in html
    assert 'style="color:green;font-weight:bold"' in html
    assert '<a href="https://good.example/page" rel="noopener noreferrer">good link</a>' in html
    assert 'href="mailto:someone@example.test"' in html
    assert '<img alt="tracker">' in html
    # The inline image points at the caller's URL for its part, and is not listed as an attachment.
    assert '<img src="/inline/2.2" alt="logo">' in html
    assert view.attachments == ()
    assert (view.sender, view.cc) == ("News Desk <news@example.test>", "Copy <copy@example.test>")

    shown = render_message(html_message(), allow_remote_images=True)
    assert shown.html is not None
    assert 'src="https://tracker.example/pixel.gif"' in shown.html
    assert 'src="http://tracker.example/plain.gif"' in shown.html
    assert "onerror" not in shown.html
    assert shown.remote_images == 2
    # Without a URL for inline parts, the cid image has no source and the part is offered for download.
    assert "cid:" not in shown.html
    assert [a.content_type for a in shown.attachments] == ["image/png"]


@pytest.mark.parametrize(
    ("style", "kept"),
    [
        ("color: red; background-color: #fff", "color:red;background-color:#fff"),
        ("background: url(https://x.example/a.png)", None),
        ("BACKGROUND: URL( 'https://x.example/a.png' )", None),
        ("width: expression(alert(1))", None),
        ("background-image: image-set('a.png' 1x)", None),
        ("-moz-binding: url(x.xml#y); color: blue", "color:blue"),
        ("behavior: url(x.htc)", None),
        ("font-family: a\\72 b", None),
        ("color: red /* url(x) */", None),
        ("position: fixed; top: 0; color: red", "color:red"),
    ],
)
def test_style_attributes_cannot_load_or_run_anything(style: str, kept: str | None) -> None:
    html = sanitize_html(f'<p style="{style}">x</p>').html
    assert html == (f'<p style="{kept}">x</p>' if kept else "<p>x</p>")


@pytest.mark.parametrize(
    "src",
    ["java\tscript:alert(1)", " javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "data:image/svg+xml,<svg/>",
     "vbscript:x", "//evil.example/x.png", "/static/x.png", "file:///etc/passwd"],
)  # fmt: skip
def test_image_sources_other_than_http_cid_and_raster_data_are_dropped(src: str) -> None:
    sanitized = sanitize_html(f'<img src="{src}" alt="x">', allow_remote_images=True)
    assert sanitized.html == '<img alt="x">'


def test_data_images_and_links_that_are_safe_stay() -> None:
    sanitized = sanitize_html('<img src="data:image/png;base64,AAAA"><a href="HTTPS://a.example/">a</a>')
    assert (
        sanitized.html
        == '<img src="data:image/png;base64,AAAA"><a href="HTTPS://a.example/" rel="noopener noreferrer">a</a>'
    )
    assert sanitized.remote_images == 0


def test_attachments_with_non_ascii_names() -> None:
    raw = with_attachments()
    view = render_message(raw)
    assert view.text == "See the attachments.\n<b>not bold</b>\n"
    assert view.subject == "Files für dich"
    assert [a.filename for a in view.attachments] == ["Bericht Größe €.pdf", "報告書.txt", 'quote"and_slash.bin']
    assert [a.part_id for a in view.attachments] == ["2", "3", "4"]
    for attachment, name in zip(view.attachments, NON_ASCII_NAMES, strict=True):
        part = find_attachment(raw, attachment.part_id)
        assert part is not None
        assert part.data == f"content of {name}".encode()
        assert attachment.size == len(part.data)
    assert find_attachment(raw, "9") is None
    assert find_attachment(raw, "1") is not None  # the text body is a part too
    assert find_inline_image(raw, "2") is None  # not an image


def test_inline_images_are_raster_only() -> None:
    raw = html_message('<img src="cid:logo@example.test">')
    assert find_inline_image(raw, "2.2") is not None
    svg = html_message('<img src="cid:logo@example.test">').replace(b"image/png", b"image/svg+xml")
    assert find_inline_image(svg, "2.2") is None
    view = render_message(svg, inline_url=lambda part_id: f"/inline/{part_id}")
    assert view.html is not None
    assert view.html.strip() == "<img>"


def test_an_attached_message_is_one_part_named_after_its_subject() -> None:
    outer = EmailMessage()
    outer["Subject"] = "Forwarded"
    outer.set_content("See below.")
    inner = EmailMessage()
    inner["Subject"] = "Original"
    inner.set_content("Inner text")
    outer.add_attachment(inner)
    view = render_message(outer.as_bytes())
    [part] = view.attachments
    assert (part.filename, part.content_type, part.part_id) == ("Original.eml", "message/rfc822", "2")
    found = find_attachment(outer.as_bytes(), "2")
    assert found is not None
    assert b"Inner text" in found.data


@pytest.mark.parametrize("raw", [MALFORMED, b"", b"\r\n\r\n", b"no headers at all", b"Subject: x\r\n" + b"y" * 5000])
def test_malformed_messages_are_still_viewable(raw: bytes) -> None:
    view = render_message(raw)
    assert view.html is None
    assert view.text is not None


def test_a_broken_multipart_shows_its_text_and_says_so() -> None:
    view = render_message(MALFORMED)
    assert view.text is not None
    assert "binary" in view.text
    assert "\x01" not in view.text
    assert view.problem is not None


def test_truncated_messages_never_raise() -> None:
    raw = with_attachments() + html_message()
    for cut in range(0, len(raw), max(1, len(raw) // 60)):
        view = render_message(raw[:cut])
        assert view.text is not None or view.html is not None


def test_undeclared_eight_bit_text_is_read_as_utf8_or_windows_1252() -> None:
    view = render_message(EIGHT_BIT)
    assert view.sender == "Jörg <joerg@example.test>"
    assert view.text is not None
    assert view.text.startswith("Straße")


@pytest.mark.parametrize("token", ["", "abc", "1_", "_1", "1.5_2", "9" * 60 + "_1", "12-3"])
def test_bad_page_cursors_are_invalid_input(token: str) -> None:
    with pytest.raises(InvalidInput):
        PageCursor.parse(token)


def test_page_cursor_round_trips() -> None:
    cursor = PageCursor.parse("1709633472123456_42")
    assert cursor.id == 42
    assert cursor.sort_date.isoformat() == "2024-03-05T10:11:12.123456+00:00"
    assert PageCursor.parse(cursor.token) == cursor
