"""What the faces see of the local mailbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain.values import SpecialUse


@dataclass(frozen=True, slots=True)
class FolderView:
    id: int
    name: str
    path: str
    parent_id: int | None
    special_use: SpecialUse | None
    total: int
    unread: int

    @property
    def depth(self) -> int:
        return self.path.count("/")


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A row of the message list."""

    id: int
    folder: str
    subject: str
    from_address: str
    date: datetime | None
    message_id: str | None
    size: int
    seen: bool
    flagged: bool
    has_attachments: bool
