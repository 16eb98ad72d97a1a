"""Reply, reply all and forward drafts built from stored messages: recipients, subjects, quoting,
forwarded attachments, and messages the parser chokes on."""

from __future__ import annotations

import pytest

from service.domain.values import SpecialUse
from service.errors import NotFound
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.replies import ReplyMode, forwarded_attachments, start_reply
from service.usecases.replies.html_text import html_to_text
from service.usecases.replies.original import parse, prefixed
from tests.test_smtp_fakes import make_account, make_user

ORIGINAL = (
    b"From: =?utf-8?q?Bj=C3=B6rn_Berg?= <bjorn@example.test>\r\n"
    b'To: Alice <alice@example.test>, "Doe, Carol" <carol@example.test>\r\n'
    b"Cc: dave@example.test, ALICE@work.test\r\n"
    b"Subject: Plans for =?utf-8?q?M=C3=A4rz?=\r\n"
    b"Date: Mon, 04 Mar 2024 09:30:00 +0100\r\n"
    b"Message-ID: <plans-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n'
    b"\r\n"
    b"--alt\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hi all,\r\nmeet on Friday?\r\n> earlier quote\r\n"
    b"--alt\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hi all,</p><p>meet on Friday?</p>\r\n"
    b"--alt--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''Agenda%20M%C3%A4rz.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer--\r\n"
)


async def deliver(db: Database, user_id: int, raw: bytes, folder: SpecialUse = SpecialUse.INBOX) -> int:
    async with db.write() as session:
        folders = await mailstore.ensure_special_folders(session, user_id)
        folder_id = folders[folder].id
        assert folder_id is not None
        message = await mailstore.deliver(session, user_id=user_id, folder_id=folder_id, raw=raw)
        assert message.id is not None
        return message.id


async def test_reply_goes_to_the_sender_with_re_and_the_quoted_text(db: Database) -> None:
    user_id = await make_user(db)
    message_id = await deliver(db, user_id, ORIGINAL)

    draft = await start_reply(db=db, user_id=user_id, message_id=message_id, mode=ReplyMode.REPLY)

    assert (draft.to, draft.cc) == ("Björn Berg <bjorn@example.test>", "")
    assert draft.subject == "Re: Plans for März"
    assert draft.text == (
        "\n\nOn Mon, 4 Mar 2024 at 09:30, Björn Berg <bjorn@example.test> wrote:\n"
        "> Hi all,\n> meet on Friday?\n>> earlier quote\n"
    )
    assert draft.attachments == ()


async def test_reply_all_adds_to_and_cc_without_the_users_own_addresses(db: Database, secret_box: SecretBox) -> None:
    user_id = await make_user(db)
    await make_account(db, secret_box, user_id, "smtp.work.test", 25, email_address="alice@work.test")
    message_id = await deliver(db, user_id, ORIGINAL)

    draft = await start_reply(db=db, user_id=user_id, message_id=message_id, mode=ReplyMode.REPLY_ALL)

    assert draft.to == 'Björn Berg <bjorn@example.test>, "Doe, Carol" <carol@example.test>'
    assert draft.cc == "dave@example.test"


async def test_reply_prefers_reply_to_and_answering_ones_own_message_goes_to_its_recipients(db: Database) -> None:
    user_id = await make_user(db)
    listed = await deliver(
        db,
        user_id,
        b"From: List <list@example.test>\r\nReply-To: owner@example.test\r\nTo: x@example.test\r\n\r\nhi\r\n",
    )
    own = await deliver(
        db,
        user_id,
        b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nCc: carol@example.test\r\n"
        b"Subject: RE: x\r\n\r\nhi\r\n",
        SpecialUse.SENT,
    )

    assert (
        await start_reply(db=db, user_id=user_id, message_id=listed, mode=ReplyMode.REPLY)
    ).to == "owner@example.test"
    again = await start_reply(db=db, user_id=user_id, message_id=own, mode=ReplyMode.REPLY_ALL)
    assert (again.to, again.cc, again.subject) == ("bob@example.test", "carol@example.test", "RE: x")


async def test_forward_has_no_recipient_the_headers_and_the_attachments(db: Database) -> None:
    user_id = await make_user(db)
    message_id = await deliver(db, user_id, ORIGINAL)

    draft = await start_reply(db=db, user_id=user_id, message_id=message_id, mode=ReplyMode.FORWARD)

    assert (draft.to, draft.cc, draft.subject) == ("", "", "Fwd: Plans for März")
    assert "---------- Forwarded message ----------\nFrom: Björn Berg <bjorn@example.test>\n" in draft.text
    assert "Subject: Plans for März\n" in draft.text
    assert "Hi all,\nmeet on Friday?" in draft.text
    [offered] = draft.attachments
    assert (offered.index, offered.filename, offered.content_type, offered.size) == (
        0,
        "Agenda März.pdf",
        "application/pdf",
        9,
    )
    [kept] = await forwarded_attachments(db=db, user_id=user_id, message_id=message_id, keep={0})
    assert (kept.filename, kept.content) == ("Agenda März.pdf", b"%PDF-1.4\n")
    assert await forwarded_attachments(db=db, user_id=user_id, message_id=message_id, keep=set()) == ()


async def test_an_html_only_message_is_quoted_as_text(db: Database) -> None:
    user_id = await make_user(db)
    raw = (
        b"From: news@example.test\r\nSubject: News\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style><script>alert(1)</script></head><body><h1>Title</h1>"
        b"<p>Read <a href='https://example.test/a'>this</a>&nbsp;now.</p><ul><li>one</li><li>two</li></ul></body></html>"
    )
    message_id = await deliver(db, user_id, raw)
    draft = await start_reply(db=db, user_id=user_id, message_id=message_id, mode=ReplyMode.REPLY)
    assert draft.text.endswith("> Title\n>\n> Read this <https://example.test/a> now.\n>\n> - one\n> - two\n")
    assert "alert" not in draft.text


@pytest.mark.parametrize(
    "raw",
    [
        b"From: =?utf-8?q?broken\r\nSubject: =?x-unknown?q?abc?=\r\n"
        b"Content-Type: text/plain; charset=x-nonsense\r\n\r\nbody\xff\r\n",
        b"From: <<<>>>@@@\r\nTo: ,,,;;;\r\nDate: yesterday\r\n"
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all\r\n",
        b"\x01\x02\xff not a message",  # not \x00: its preview cannot be stored on PostgreSQL yet
        b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 100,
    ],
)
async def test_messages_the_parser_chokes_on_still_give_a_draft(db: Database, raw: bytes) -> None:
    user_id = await make_user(db)
    message_id = await deliver(db, user_id, raw)
    for mode in ReplyMode:
        draft = await start_reply(db=db, user_id=user_id, message_id=message_id, mode=mode)
        for value in (draft.to, draft.cc, draft.subject):
            assert not set(value) & {"\r", "\n", "\0"}


async def test_prefilled_headers_never_carry_line_breaks(db: Database) -> None:
    user_id = await make_user(db)
    raw = b"From: a@example.test\r\nSubject: =?utf-8?q?Hello=0D=0ABcc:_victim@example.test?=\r\n\r\nhi\r\n"
    message_id = await deliver(db, user_id, raw)
    draft = await start_reply(db=db, user_id=user_id, message_id=message_id, mode=ReplyMode.REPLY)
    assert draft.subject == "Re: Hello Bcc: victim@example.test"


async def test_someone_elses_message_is_not_found(db: Database) -> None:
    alice = await make_user(db)
    mallory = await make_user(db, email="mallory@example.test")
    message_id = await deliver(db, alice, ORIGINAL)
    with pytest.raises(NotFound):
        await start_reply(db=db, user_id=mallory, message_id=message_id, mode=ReplyMode.REPLY)
    with pytest.raises(NotFound):
        await forwarded_attachments(db=db, user_id=mallory, message_id=message_id, keep={0})


def test_prefixes_are_added_once() -> None:
    assert prefixed("Re: hello", ReplyMode.REPLY) == "Re: hello"
    assert prefixed("RE:hello", ReplyMode.REPLY_ALL) == "RE:hello"
    assert prefixed("hello", ReplyMode.REPLY) == "Re: hello"
    assert prefixed("", ReplyMode.REPLY) == "Re:"
    assert prefixed("Fw: hello", ReplyMode.FORWARD) == "Fw: hello"
    assert prefixed("Re: hello", ReplyMode.FORWARD) == "Fwd: Re: hello"


def test_html_to_text_keeps_the_words_only() -> None:
    assert html_to_text("<div>a<br>b</div><table><tr><td>c</td><td>d</td></tr></table>") == "a\nb\n\nc d"
    assert html_to_text("<p>x</p><!-- comment --><p>y &amp; z</p>") == "x\n\ny & z"
    assert parse(b"Subject: ok\r\n\r\nbody") is not None
