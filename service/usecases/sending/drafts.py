"""Drafts: what the user is writing, kept in the Drafts folder, opened again, removed once sent.

A draft is a local message in the user's Drafts folder, flagged \\Draft (RFC 3501
2.3.2), built by the same `compose()` as a message being sent, so its headers
are checked the same way. It may have no recipient yet, and it is stored
without the signature (sending adds it). Like a sent message's local copy, its
bytes start with the Bcc header, so Bcc survives.

One message being written is one draft. Its versions share a Message-ID, the
compose form's `draft_key` (RFC 5322 3.6.4 leaves a draft's identifier to the
client): saving deletes, in one write transaction, every message in Drafts
with that Message-ID (and the draft that was opened, by its row), then stores
the new version. Saves take the Drafts folder's row lock first (SQLite's
single writer does the same), so two saves of one form that race (an autosave
on leaving the page and the "Save draft" button) leave exactly one draft,
whatever their order. Sending removes the draft in the transaction that queues the
message (`remove_draft`, called by `send_message`).

A draft's attachments are offered again by `DraftAttachment.key` (a hash of the
content): a key still names the same file after an autosave stored a new
version with fewer files, where a position would not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from email.utils import make_msgid

from sqlalchemy import and_, delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.compose import Attachment, Draft, Sender, Thread, compose, message_ids, signature_block
from service.domain.values import SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.tables import Folder, Message, SmtpAccount
from service.persistence.types import utcnow
from service.usecases.replies.original import attachments, body_text, header_text, parse
from service.usecases.sending.senders import thread_of
from service.usecases.smtp_accounts import user_and_domain

NOT_A_DRAFT = "This message is not in Drafts."
MAX_KEY_LENGTH = 250


@dataclass(frozen=True, slots=True)
class DraftRef:
    """Which draft a form continues: the opened draft's row and the draft's Message-ID (either may be None)."""

    message_id: int | None = None
    key: str | None = None

    def usable_key(self) -> str | None:
        """The key when it is one well-formed Message-ID ("<...>"), else None (a new one is made)."""
        key = (self.key or "").strip()
        return key if key and len(key) <= MAX_KEY_LENGTH and message_ids(key) == (key,) else None


@dataclass(frozen=True, slots=True)
class DraftAttachment:
    """A file of a stored draft, offered to keep by `key`."""

    key: str
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class SavedDraft:
    message_id: int
    key: str
    saved_at: datetime
    attachments: tuple[DraftAttachment, ...]


@dataclass(frozen=True, slots=True)
class OpenedDraft:
    """A draft as the compose form shows it again."""

    message_id: int
    key: str | None
    from_address: str
    to: str
    cc: str
    bcc: str
    subject: str
    text: str
    attachments: tuple[DraftAttachment, ...]
    reply_to: int | None  # the user's message it answers (found by In-Reply-To), for threading


def attachment_key(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:20]


def _offered(found: Collection[Attachment]) -> tuple[DraftAttachment, ...]:
    return tuple(DraftAttachment(attachment_key(a.content), a.filename, a.content_type, len(a.content)) for a in found)


async def _drafts_folder(session: AsyncSession, user_id: int) -> int:
    folder = (await mailstore.ensure_special_folders(session, user_id))[SpecialUse.DRAFTS]
    assert folder.id is not None
    return folder.id


async def remove_draft(session: AsyncSession, user_id: int, ref: DraftRef) -> int:
    """Delete the draft `ref` names (its row and every version with its key) from the user's Drafts,
    in the caller's transaction; returns how many messages went."""
    conditions = []
    key = ref.usable_key()
    if ref.message_id is not None:
        # SQLite may give a deleted row's id to the next message: with a key, the row goes only if it
        # is this draft (its Message-ID) or has none (a draft made elsewhere, opened with "Edit draft").
        same = col(Message.id) == ref.message_id
        if key is not None:
            same = and_(same, or_(col(Message.message_id_header).is_(None), col(Message.message_id_header) == key))
        conditions.append(same)
    if key is not None:
        conditions.append(col(Message.message_id_header) == key)
    if not conditions:
        return 0
    folder_id = await _drafts_folder(session, user_id)
    # Saves of one draft one after the other: on PostgreSQL (READ COMMITTED) two saves would each miss
    # the other's new version; holding the Drafts folder's row makes the second see the first's.
    await session.exec(select(Folder.id).where(Folder.id == folder_id).with_for_update())
    result = await session.exec(
        delete(Message)
        .where(col(Message.user_id) == user_id, col(Message.folder_id) == folder_id, or_(*conditions))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


async def _sender(session: AsyncSession, user_id: int, from_account_id: int | None) -> tuple[Sender, int]:
    """Who the draft is from (the chosen account, else the user's own address; no signature) and the size limit."""
    user, domain = await user_and_domain(session, user_id)
    if from_account_id is not None:
        account = await session.get(SmtpAccount, from_account_id)
        if account is not None and account.user_id == user_id:
            return Sender(account.email_address, account.display_name), domain.max_message_bytes
    return Sender(user.email, user.display_name), domain.max_message_bytes


async def save_draft(
    *,
    db: Database,
    user_id: int,
    from_account_id: int | None,
    draft: Draft,
    replaces: DraftRef | None = None,
    reply_to_message_id: int | None = None,
    now: datetime | None = None,
) -> SavedDraft:
    """Store `draft` in Drafts as the latest version of `replaces` (see the module's text).

    Raises InvalidInput for a header that could not be sent either, or a draft over the domain's size limit."""
    now = now or utcnow()
    replaces = replaces or DraftRef()
    async with db.read() as session:
        sender, limit = await _sender(session, user_id, from_account_id)
        thread: Thread | None = None
        if reply_to_message_id is not None:
            try:
                thread = await thread_of(session, user_id, reply_to_message_id)
            except NotFound:  # the message answered was deleted meanwhile: keep the draft anyway
                thread = None
    composed = compose(
        draft, sender=sender, now=now, thread=thread, message_id=replaces.usable_key(), require_recipients=False
    )
    if len(composed.stored) > limit:
        raise InvalidInput("The draft is larger than your administrator allows for a message; remove an attachment.")
    async with db.write() as session:
        await remove_draft(session, user_id, DraftRef(replaces.message_id, composed.message_id))
        stored = await mailstore.deliver(
            session,
            user_id=user_id,
            folder_id=await _drafts_folder(session, user_id),
            raw=composed.stored,
            seen=True,
            draft=True,
            received_at=now,
        )
        assert stored.id is not None
        return SavedDraft(stored.id, composed.message_id, now, _offered(draft.attachments))


async def _current(session: AsyncSession, user_id: int, ref: DraftRef) -> Message | None:
    """The stored version of a draft: by key first (an autosave may have replaced the opened row), else by row."""
    folder_id = await _drafts_folder(session, user_id)
    query = select(Message).where(Message.user_id == user_id, Message.folder_id == folder_id)
    key = ref.usable_key()
    if key is not None:
        found = (
            await session.exec(query.where(Message.message_id_header == key).order_by(col(Message.id).desc()))
        ).first()
        if found is not None:
            return found
    if ref.message_id is None:
        return None
    return (await session.exec(query.where(Message.id == ref.message_id))).first()


async def _stored_attachments(db: Database, user_id: int, ref: DraftRef) -> list[Attachment]:
    async with db.read() as session:
        message = await _current(session, user_id, ref)
        if message is None or message.id is None:
            return []
        raw = await mailstore.read_raw(session, user_id=user_id, message_id=message.id)
    parsed = parse(raw)
    return attachments(parsed) if parsed is not None else []


async def offered_attachments(*, db: Database, user_id: int, ref: DraftRef) -> tuple[DraftAttachment, ...]:
    """The files of the stored draft a form continues, to offer again (after a mistake, say)."""
    if ref.message_id is None and ref.usable_key() is None:
        return ()
    return _offered(await _stored_attachments(db, user_id, ref))


async def draft_attachments(
    *, db: Database, user_id: int, ref: DraftRef, keep: Collection[str]
) -> tuple[Attachment, ...]:
    """The stored draft's attachments the user kept (by `DraftAttachment.key`); () when the draft is gone."""
    if not keep:
        return ()
    return tuple(a for a in await _stored_attachments(db, user_id, ref) if attachment_key(a.content) in keep)


def new_draft_key(address: str) -> str:
    """A Message-ID for a draft not saved yet, handed to the compose form before anything is typed."""
    domain = address.rsplit("@", 1)[-1].strip() or "localhost"
    return make_msgid(domain=domain if message_ids(f"<x@{domain}>") else "localhost")


def without_signature(text: str, signature: str) -> str:
    """The body without the signature block `compose()` appended (a message cancelled from the Outbox
    carries it), so sending the draft again does not add a second one."""
    block = signature_block(signature)
    tail = f"\n{block}"
    body = text.rstrip()
    if block and body.endswith(tail):
        return body[: -len(tail)].rstrip() + "\n"
    return text


async def open_draft(*, db: Database, user_id: int, message_id: int) -> OpenedDraft:
    """A message of the user's Drafts as the compose form's values (NotFound for anything else)."""
    async with db.read() as session:
        folder_id = await _drafts_folder(session, user_id)
        row = await session.get(Message, message_id)
        if row is None or row.user_id != user_id or row.folder_id != folder_id:
            raise NotFound(NOT_A_DRAFT)
        raw = await mailstore.read_raw(session, user_id=user_id, message_id=message_id)
        reply_to = None
        if row.in_reply_to:
            reply_to = (
                await session.exec(
                    select(Message.id)
                    .join(Folder, col(Folder.id) == Message.folder_id)
                    .where(
                        Message.user_id == user_id,
                        Message.message_id_header == row.in_reply_to,
                        col(Folder.special_use).is_distinct_from(SpecialUse.DRAFTS),
                        col(Folder.special_use).is_distinct_from(SpecialUse.OUTBOX),
                    )
                    .order_by(col(Message.id))
                )
            ).first()
        signatures = {
            address.lower(): signature
            for address, signature in (
                await session.exec(
                    select(SmtpAccount.email_address, SmtpAccount.signature_text).where(SmtpAccount.user_id == user_id)
                )
            ).all()
        }
    message = parse(raw)
    if message is None:
        return OpenedDraft(message_id, row.message_id_header, "", "", "", "", row.subject, "", (), reply_to)
    from_address = header_text(message, "From")
    sender_address = from_address.rsplit("<", 1)[-1].rstrip(">").strip().lower()
    found = attachments(message)
    keys = message_ids(row.message_id_header)
    return OpenedDraft(
        message_id=message_id,
        key=keys[0] if keys else None,
        from_address=sender_address,
        to=header_text(message, "To"),
        cc=header_text(message, "Cc"),
        bcc=header_text(message, "Bcc"),
        subject=header_text(message, "Subject"),
        text=without_signature(body_text(message), signatures.get(sender_address, "")),
        attachments=_offered(found),
        reply_to=reply_to,
    )
