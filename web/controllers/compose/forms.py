"""The compose form: what it holds, reading it from a request, and checking each field.

The form is multipart (attachments). A browser sends an empty file part when no
file was chosen; such parts are skipped. Checks here only attribute mistakes to
their field (addresses with email-validator; line breaks and other controls in
header fields, also once RFC 2047 decoded, via service.domain.compose); sending
checks everything again. Uploaded file names are cleaned, not refused.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from service.domain.compose import Attachment, Draft, check_header_text, parse_mailboxes, split_addresses
from service.domain.headers import header_text
from service.errors import InvalidInput
from service.usecases.replies import OriginalAttachment, ReplyDraft, ReplyMode
from service.usecases.sending.drafts import DraftAttachment, DraftRef, OpenedDraft

ADDRESS_FIELDS = (("to", "To address"), ("cc", "Cc address"), ("bcc", "Bcc address"))
CHOOSE_SENDER = "Choose an address in Send From."
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass
class ComposeValues:
    """What the form shows: typed values, the message answered or forwarded, the forwarded attachments."""

    mode: ReplyMode | None = None  # what the form is: a new message, a reply, reply all or a forward
    send_from: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    reply_to: int | None = None  # the message answered: In-Reply-To and References
    forward_of: int | None = None  # the message forwarded: its attachments
    offered: tuple[OriginalAttachment, ...] = ()
    kept: frozenset[int] = frozenset()
    uploads: int = 0  # files the user had chosen (a browser cannot be given them back)
    draft_id: int | None = None  # the stored draft this form continues (Edit draft, Save draft)
    draft_key: str = ""  # the Message-ID every version of this draft shares (service.usecases.sending.drafts)
    draft_offered: tuple[DraftAttachment, ...] = ()  # the stored draft's files
    draft_kept: frozenset[str] = frozenset()

    @classmethod
    def from_draft(cls, draft: ReplyDraft) -> ComposeValues:
        forwarding = draft.mode is ReplyMode.FORWARD
        return cls(
            mode=draft.mode,
            to=draft.to,
            cc=draft.cc,
            subject=draft.subject,
            body=draft.text,
            reply_to=None if forwarding else draft.message_id,
            forward_of=draft.message_id if forwarding else None,
            offered=draft.attachments,
            kept=frozenset(a.index for a in draft.attachments),
        )

    @classmethod
    def from_saved_draft(cls, draft: OpenedDraft, send_from: str) -> ComposeValues:
        return cls(
            send_from=send_from,
            to=draft.to,
            cc=draft.cc,
            bcc=draft.bcc,
            subject=draft.subject,
            body=draft.text,
            reply_to=draft.reply_to,
            draft_id=draft.message_id,
            draft_key=draft.key or "",
            draft_offered=draft.attachments,
            draft_kept=frozenset(a.key for a in draft.attachments),
        )

    def draft_ref(self) -> DraftRef:
        return DraftRef(self.draft_id, self.draft_key or None)

    def draft_account_id(self) -> int | None:
        """The Send From account a draft records (its address); None: the user's own address."""
        return int(self.send_from) if self.send_from.isdigit() else None

    def account_id(self) -> int | None:
        """The chosen Send From entry: an SMTP account's id, or None for the company relay."""
        if self.send_from == "relay":
            return None
        if self.send_from.isdigit():
            return int(self.send_from)
        raise InvalidInput(CHOOSE_SENDER)

    def draft(self, attachments: tuple[Attachment, ...]) -> Draft:
        return Draft(
            to=(self.to,),
            cc=(self.cc,),
            bcc=(self.bcc,),
            subject=self.subject,
            text=self.body,
            attachments=attachments,
        )


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _mode(form: Any) -> ReplyMode | None:
    try:
        return ReplyMode(_text(form, "mode"))
    except ValueError:
        return None


def _message_id(form: Any, name: str) -> int | None:
    value = _text(form, name).strip()
    return int(value) if value.isdigit() else None


def _attachment(upload: UploadFile, content: bytes) -> Attachment:
    """A file as sent: its name without any path and control characters, a plausible content type."""
    name = header_text(re.split(r"[/\\]", upload.filename)[-1]) or "attachment"
    content_type = (upload.content_type or "").split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.match(content_type) or content_type == "application/octet-stream":
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Attachment(filename=name[:200], content=content, content_type=content_type)


async def read_form(request: Request[Any, Any, Any]) -> tuple[ComposeValues, tuple[Attachment, ...]]:
    """The posted form and the uploaded files."""
    form = await request.form()
    uploads = [f for f in form.getall("attachments", []) if isinstance(f, UploadFile) and f.filename]
    attachments = tuple([_attachment(upload, await upload.read()) for upload in uploads])
    kept = frozenset(int(v) for v in form.getall("keep_attachment", []) if isinstance(v, str) and v.isdigit())
    draft_kept = frozenset(v for v in form.getall("keep_draft_attachment", []) if isinstance(v, str) and v.isalnum())
    values = ComposeValues(
        mode=_mode(form),
        send_from=_text(form, "send_from"),
        to=_text(form, "to"),
        cc=_text(form, "cc"),
        bcc=_text(form, "bcc"),
        subject=_text(form, "subject"),
        body=_text(form, "body").replace("\r\n", "\n"),
        reply_to=_message_id(form, "reply_to"),
        forward_of=_message_id(form, "forward_of"),
        kept=kept,
        uploads=len(attachments),
        draft_id=_message_id(form, "draft_id"),
        draft_key=_text(form, "draft_key").strip()[:250],
        draft_kept=draft_kept,
    )
    return values, attachments


def field_errors(values: ComposeValues) -> dict[str, str]:
    """Mistakes by field name ("send_from", "to", "cc", "bcc", "subject"); empty when the form looks right.
    Whether the chosen sender may send is for sending to say (in the administrator's words, if it comes to that)."""
    errors: dict[str, str] = {}
    try:
        values.account_id()
    except InvalidInput as exc:
        errors["send_from"] = exc.message
    for name, what in ADDRESS_FIELDS:
        try:
            parse_mailboxes((getattr(values, name),), what)
        except InvalidInput as exc:
            errors[name] = exc.message
    if not any(split_addresses(getattr(values, name)) for name, _ in ADDRESS_FIELDS) and "to" not in errors:
        errors["to"] = "Add at least one recipient."
    try:
        check_header_text(values.subject, "subject")
    except InvalidInput as exc:
        errors["subject"] = exc.message
    return errors
