"""The mail page's "Download as mbox": a folder as one mboxrd file, streamed, named after the folder
(RFC 6266 filename* for any name), that gives every message back byte for byte once unquoted."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.export.mbox import _DECIDE, _Quoter
from service.usecases.users import add_user, find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample

FROM_LINES = (
    b"Subject: quoting\r\n\r\nFrom the start\r\n>From once\r\n>>From twice\r\n"
    b"not From here\r\nFromage\r\n>From"  # the last line has no line break
)
HUGE = b"Subject: huge\r\n\r\n" + b"From x" + b"a" * (9 * 1024 * 1024) + b"\r\nFrom the end\r\n"
_SEPARATOR = re.compile(rb"^From MAILER-DAEMON \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n", re.MULTILINE)
_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


def unmbox(data: bytes) -> list[bytes]:
    """The messages of an mboxrd file, unquoted: split at the separator lines, drop the blank line
    after each message (and the line break added to one that had none)."""
    starts = [m.start() for m in _SEPARATOR.finditer(data)]
    assert starts[:1] == [0] or not data
    messages = []
    for begin, end in zip(starts, [*starts[1:], len(data)], strict=True):
        body = data[begin:end].split(b"\n", 1)[1]
        assert body.endswith(b"\n\n") or body == b"\n"
        messages.append(_QUOTED.sub(rb"\1", body[:-1]))
    return messages


def reference(raw: bytes) -> bytes:
    """mboxrd quoting of a whole message at once (what the streamed quoting must equal)."""
    quoted = re.sub(rb"^(>*From )", rb">\1", raw, flags=re.MULTILINE)
    return quoted if quoted.endswith(b"\n") or not quoted else quoted + b"\n"


@pytest.mark.parametrize("raw", [FROM_LINES, b"From only", b"", b"\n\nFrom \n", MALFORMED])
def test_quoting_does_not_depend_on_where_the_chunks_break(raw: bytes) -> None:
    for size in range(1, max(len(raw), 1) + 1):
        quoter = _Quoter()
        out = b"".join(quoter.feed(raw[i : i + size]) for i in range(0, len(raw), size)) + quoter.close()
        assert out == reference(raw), size


def test_a_line_longer_than_the_carry_limit_is_quoted_by_its_start_only() -> None:
    line = b">>From " + b"x" * (3 * _DECIDE) + b" From inside\r\n"
    raw = b"a\r\n" + line + b"From next\r\n"
    for size in (1000, _DECIDE - 1, _DECIDE + 7):
        quoter = _Quoter()
        out = b"".join(quoter.feed(raw[i : i + size]) for i in range(0, len(raw), size)) + quoter.close()
        assert out == reference(raw), size


async def _folder(db: Database, user_id: int, path: str, raws: list[bytes]) -> int:
    async with db.write() as session:
        folder = await folder_by_path(session, user_id, path)
        assert folder.id is not None
        for raw in raws:
            await deliver(session, user_id=user_id, folder_id=folder.id, raw=raw)
    return folder.id


async def test_a_folder_downloads_as_mboxrd_with_every_message_back(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    raws = [sample("first"), FROM_LINES, EIGHT_BIT, b"", MALFORMED, HUGE]
    folder_id = await _folder(db, user.id, "Reisen/Ça va", raws)

    page = await web_client.get(f"/mail/folders/{folder_id}")
    response = await web_client.get(f"/mail/folders/{folder_id}/mbox")

    assert f'href="/mail/folders/{folder_id}/mbox" download' in page.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/mbox")
    assert response.headers["content-disposition"] == (
        f"attachment; filename=\"_a va.mbox\"; filename*=UTF-8''{quote('Ça va.mbox')}"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert unmbox(response.content) == [r if r.endswith(b"\n") or not r else r + b"\n" for r in raws]
    assert (
        b"\r\n\r\n>From the start\r\n>>From once\r\n>>>From twice\r\nnot From here\r\nFromage\r\n>From\n\n"
        in response.content
    )


async def test_empty_and_oddly_named_folders_and_other_peoples_folders(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    empty = await _folder(db, user.id, "Empty", [])
    odd = await _folder(db, user.id, 'Evil\r\nName/報告 "x"', [sample("odd")])
    stranger = await add_user(db=db, email="stranger@example.test", password="long enough")
    theirs = await _folder(db, stranger.id, "Private", [sample("not yours")])

    empty_download = await web_client.get(f"/mail/folders/{empty}/mbox")
    odd_download = await web_client.get(f"/mail/folders/{odd}/mbox")
    refused = await web_client.get(f"/mail/folders/{theirs}/mbox")

    assert (empty_download.status_code, empty_download.content) == (200, b"")
    assert empty_download.headers["content-disposition"].startswith('attachment; filename="Empty.mbox"')
    disposition = odd_download.headers["content-disposition"]
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert disposition.endswith("filename*=UTF-8''" + quote('報告 "x".mbox', safe="!#$&+-.^_`|~"))
    assert len(unmbox(odd_download.content)) == 1
    assert refused.status_code == 404
    assert b"not yours" not in refused.content
