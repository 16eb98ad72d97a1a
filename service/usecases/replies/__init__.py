"""Reply, reply all and forward: the draft the compose page starts from, built from a stored message.

- Reply goes to the original's Reply-To, else its From; reply all adds its To
  and Cc, leaving out the user's own addresses (their sign-in address and every
  SMTP account's). Answering one's own message (from Sent) goes to its
  recipients again. The subject gets "Re: " once; the text quotes the original
  under an "On <date>, <sender> wrote:" line, each line behind "> ".
- Forward starts with no recipient, "Fwd: " once, the original's headers and
  text, and offers the original's attachments; `forwarded_attachments` returns
  the ones the user kept, read again from the stored bytes when the form is sent.
  A message that cannot be parsed at all is offered whole, as original-message.eml.

`original` reads the message (defensively); this module loads it and the user's
own addresses, in one short read transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlmodel import select

from service.domain.compose import Attachment
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.tables import SmtpAccount, User
from service.usecases.replies.original import ReplyMode, attachments, header_text, parse, prefixed, quoted, recipients

__all__ = ["OriginalAttachment", "ReplyDraft", "ReplyMode", "forwarded_attachments", "start_reply"]

UNREADABLE = "[The original message could not be read; it is attached as original-message.eml.]"


@dataclass(frozen=True, slots=True)
class OriginalAttachment:
    """An attachment of the message being forwarded, offered to keep (by `index`)."""

    index: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ReplyDraft:
    """What the compose form starts with. Address fields are comma-separated "Name <addr>" lists."""

    mode: ReplyMode
    message_id: int
    to: str
    cc: str
    subject: str
    text: str
    attachments: tuple[OriginalAttachment, ...] = ()


async def _load(db: Database, user_id: int, message_id: int) -> tuple[bytes, set[str]]:
    async with db.read() as session:
        raw = await mailstore.read_raw(session, user_id=user_id, message_id=message_id)
        email = (await session.exec(select(User.email).where(User.id == user_id))).first()
        accounts = (await session.exec(select(SmtpAccount.email_address).where(SmtpAccount.user_id == user_id))).all()
    return raw, {address.lower() for address in (email, *accounts) if address}


def _original_attachments(raw: bytes) -> list[Attachment] | None:
    """The attachments to offer, or None when the message cannot be read (then it is offered whole)."""
    message = parse(raw)
    if message is None:
        return None
    try:
        return attachments(message)
    except Exception:  # a structure the walk cannot follow: forward the original itself
        return None


def _whole(raw: bytes) -> Attachment:
    return Attachment(filename="original-message.eml", content=raw, content_type="application/octet-stream")


async def start_reply(*, db: Database, user_id: int, message_id: int, mode: ReplyMode) -> ReplyDraft:
    """The draft for answering or forwarding one of the user's messages (NotFound for anyone else's)."""
    raw, own = await _load(db, user_id, message_id)
    message = parse(raw)
    offered: tuple[OriginalAttachment, ...] = ()
    if mode is ReplyMode.FORWARD:
        found = _original_attachments(raw)
        offered = tuple(
            OriginalAttachment(i, a.filename, a.content_type, len(a.content))
            for i, a in enumerate(found if found is not None else [_whole(raw)])
        )
    if message is None:
        text = f"\n\n{UNREADABLE}\n" if mode is ReplyMode.FORWARD else ""
        return ReplyDraft(mode, message_id, "", "", prefixed("", mode), text, offered)
    to, cc = recipients(message, mode, own)
    subject = prefixed(header_text(message, "Subject"), mode)
    return ReplyDraft(mode, message_id, to, cc, subject, quoted(message, mode), offered)


async def forwarded_attachments(
    *, db: Database, user_id: int, message_id: int, keep: Collection[int]
) -> tuple[Attachment, ...]:
    """The original's attachments the user kept (by `OriginalAttachment.index`), read from the stored bytes."""
    if not keep:
        return ()
    raw, _own = await _load(db, user_id, message_id)
    found = _original_attachments(raw)
    return tuple(a for index, a in enumerate(found if found is not None else [_whole(raw)]) if index in keep)
