"""Request and response shapes of the JSON API (msgspec Structs, so OpenAPI describes them).

They are not the table models and not the domain views: each `from_view` copies
what a client may see. Passwords are write-only: request shapes take them, no
response shape has a field for one (only `has_password`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar.params import Parameter

from service.domain.connection_test import ConnectionReport
from service.domain.mailbox import FolderView, MessageSummary
from service.domain.outbox import OutboxStatus, SendResult, SentCopyStatus
from service.domain.retrieval import RunResult
from service.domain.values import LogLevel, LogSource, SpecialUse

# The largest id a row can have: id columns are INTEGER, 32 bits on PostgreSQL. A larger id is invalid
# input (400) on every database, never a query PostgreSQL refuses (a server error).
MAX_ID = 2**31 - 1
MAX_NUMBER = 2**31 - 1  # the largest number a setting column holds
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
Number = Annotated[int, msgspec.Meta(ge=-MAX_NUMBER, le=MAX_NUMBER)]
IdParam = Annotated[int, Parameter(ge=1, le=MAX_ID)]
OptionalIdParam = Annotated[int | None, Parameter(ge=1, le=MAX_ID)]


class ErrorBody(msgspec.Struct):
    """Every error: one sentence the user can act on."""

    error: str


class StepOut(msgspec.Struct):
    name: str
    ok: bool
    duration_ms: float
    detail: str
    hint: str


class FolderOutOfTest(msgspec.Struct):
    """A remote IMAP folder Test Connection found, and its message count (null: the server would not say)."""

    path: str
    messages: int | None


class ConnectionReportOut(msgspec.Struct):
    """Test Connection: each step with its outcome; `ok` when every step passed. For an IMAP retrieval
    task, `folders` lists the remote folders with their message counts (to choose include_folders from)."""

    ok: bool
    steps: list[StepOut]
    folders: list[FolderOutOfTest] = msgspec.field(default_factory=list)

    @classmethod
    def from_report(cls, report: ConnectionReport) -> ConnectionReportOut:
        steps = [StepOut(s.name, s.ok, s.duration_ms, s.detail, s.hint) for s in report.steps]
        folders = [FolderOutOfTest(f.path, f.messages) for f in report.folders]
        return cls(ok=report.ok, steps=steps, folders=folders)


class RunOut(msgspec.Struct):
    """Retrieve Messages Now: what the run (or the one already in progress) brought."""

    imported: int
    skipped: int
    errors: list[str]
    already_running: bool

    @classmethod
    def from_result(cls, result: RunResult) -> RunOut:
        return cls(result.imported, result.skipped, list(result.errors), result.already_running)


class FolderOut(msgspec.Struct):
    id: int
    name: str
    path: str
    parent_id: int | None
    special_use: SpecialUse | None
    total: int
    unread: int

    @classmethod
    def from_view(cls, f: FolderView) -> FolderOut:
        return cls(f.id, f.name, f.path, f.parent_id, f.special_use, f.total, f.unread)


class MessageSummaryOut(msgspec.Struct):
    id: int
    folder: str
    subject: str
    from_address: str
    date: datetime | None
    size: int
    seen: bool
    flagged: bool
    has_attachments: bool

    @classmethod
    def from_view(cls, m: MessageSummary) -> MessageSummaryOut:
        return cls(m.id, m.folder, m.subject, m.from_address, m.date, m.size, m.seen, m.flagged, m.has_attachments)


class MessagePageOut(msgspec.Struct):
    """A page of a folder, newest first. Pass `older` as ?before= (or `newer` as ?after=) for the next page."""

    folder: FolderOut
    messages: list[MessageSummaryOut]
    older: str | None
    newer: str | None


class AttachmentOut(msgspec.Struct):
    part_id: str
    filename: str
    content_type: str
    size: int
    url: str


class MessageOut(msgspec.Struct):
    """A message as the reader sees it. `html` is sanitised (remote images blocked); one of html/text is set."""

    id: int
    folder: FolderOut
    seen: bool
    flagged: bool
    size: int
    subject: str
    sender: str
    to: str
    cc: str
    reply_to: str
    date: datetime | None
    text: str | None
    html: str | None
    remote_images: int
    attachments: list[AttachmentOut]
    problem: str | None
    raw_url: str


class FlagsIn(msgspec.Struct):
    seen: bool


class MoveIn(msgspec.Struct):
    folder_id: Id


class CountOut(msgspec.Struct):
    """How many messages an action changed."""

    changed: int


class DeleteOut(msgspec.Struct):
    """A delete moves to Trash; deleting in Trash removes for good."""

    trashed: int
    deleted: int


class AttachmentIn(msgspec.Struct):
    filename: str
    content_base64: str
    content_type: str = "application/octet-stream"


class SendIn(msgspec.Struct):
    """A new message. `from_account_id` null: the company relay, as the user's own address."""

    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []
    subject: str = ""
    text: str = ""
    from_account_id: Id | None = None
    in_reply_to_message_id: Id | None = None
    attachments: list[AttachmentIn] = []


class SendOut(msgspec.Struct):
    """What became of the message after the first attempt (or a retry)."""

    outbox_id: int
    status: OutboxStatus
    refused: dict[str, str]
    detail: str
    next_attempt_at: datetime | None

    @classmethod
    def from_result(cls, r: SendResult) -> SendOut:
        return cls(r.outbox_id, r.status, dict(r.refused), r.detail, r.next_attempt_at)


class OutboxOut(msgspec.Struct):
    id: int
    status: OutboxStatus
    subject: str
    from_address: str
    pending: list[str]
    accepted: list[str]
    refused: dict[str, str]
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str | None
    last_error: str | None
    created_at: datetime
    message_id: int | None
    sent_copy: SentCopyStatus | None = None  # the copy in the remote Sent folder (issue 18), once sent
    sent_copy_detail: str | None = None


class LogOut(msgspec.Struct):
    id: int
    created_at: datetime
    source: LogSource
    level: LogLevel
    text: str
    smtp_account_id: int | None
    retrieval_task_id: int | None
    account: str | None


class LogPageOut(msgspec.Struct):
    """Newest first; pass `next_before` as ?before= for older entries."""

    entries: list[LogOut]
    next_before: int | None
