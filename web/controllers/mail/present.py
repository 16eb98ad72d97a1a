"""Presentation helpers for the mail pages: sizes, dates, sender names, the folder tree,
and the short status line shown after an action ("3 messages moved to Trash.").

Dates are shown in UTC: the server does not know the reader's zone, and the
pages run no script that could convert them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.domain.mailbox import FolderView, MessageSummary
from service.domain.values import SpecialUse

_NAME_AND_ADDRESS = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<address>[^<>]*)>\s*$')
NOTICES = {
    "read": "{n} marked as read.",
    "unread": "{n} marked as unread.",
    "moved": "{n} moved to {folder}.",
    "trashed": "{n} moved to Trash.",
    "deleted": "{n} deleted for good.",
    "none": "Choose at least one message first.",
    "nofolder": "Choose the folder to move the messages to.",
}


@dataclass(frozen=True, slots=True)
class ListRow:
    """One line of the message list, ready to print."""

    id: int
    sender: str
    sender_full: str
    subject: str
    unread: bool
    flagged: bool
    has_attachments: bool
    date_iso: str
    date_short: str
    date_long: str
    size: str


def human_size(size: int) -> str:
    """1023 B, 1.5 KB, 12 MB: binary multiples, one decimal below ten."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def short_date(when: datetime | None, now: datetime) -> str:
    """Today: the time; this year: day and month; else the full date."""
    if when is None:
        return ""
    if when.date() == now.date():
        return when.strftime("%H:%M")
    if when.year == now.year:
        return f"{when.day} {when.strftime('%b')}"
    return f"{when.day} {when.strftime('%b %Y')}"


def long_date(when: datetime | None) -> str:
    return f"{when.strftime('%a')}, {when.day} {when.strftime('%b %Y %H:%M')} UTC" if when else ""


def sender_name(from_header: str) -> str:
    """The display name of a From header for the list, else its address (display only, never trusted)."""
    match = _NAME_AND_ADDRESS.match(from_header)
    if match:
        return match.group("name").strip() or match.group("address").strip()
    return from_header.strip()


def list_rows(messages: Iterable[MessageSummary], now: datetime) -> list[ListRow]:
    return [
        ListRow(
            id=m.id,
            sender=sender_name(m.from_address) or "(unknown sender)",
            sender_full=m.from_address,
            subject=m.subject or "(no subject)",
            unread=not m.seen,
            flagged=m.flagged,
            has_attachments=m.has_attachments,
            date_iso=m.date.isoformat() if m.date else "",
            date_short=short_date(m.date, now),
            date_long=long_date(m.date),
            size=human_size(m.size),
        )
        for m in messages
    ]


def folder_children(folders: Sequence[FolderView]) -> dict[int | None, list[FolderView]]:
    """The tree for the template: each folder's children in display order; roots under None."""
    known = {f.id for f in folders}
    children: dict[int | None, list[FolderView]] = {}
    for folder in folders:
        children.setdefault(folder.parent_id if folder.parent_id in known else None, []).append(folder)
    return children


def move_targets(folders: Sequence[FolderView], current_id: int) -> list[FolderView]:
    """The folders a message in `current_id` can move to: any other one but the Outbox."""
    return [f for f in folders if f.id != current_id and f.special_use is not SpecialUse.OUTBOX]


def notice_text(
    code: str | None, count: int | None, *, folder_id: int | None = None, folders: Sequence[FolderView] = ()
) -> str | None:
    """The status line after an action: its code and count come back in the list's URL."""
    template = NOTICES.get(code or "")
    if template is None:
        return None
    n = count or 0
    folder = next((f.path for f in folders if f.id == folder_id), "another folder")
    return template.format(n=f"{n} message" if n == 1 else f"{n} messages", folder=folder)
