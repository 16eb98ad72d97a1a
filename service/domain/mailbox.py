"""What the faces see of the local mailbox."""

from __future__ import annotations

from dataclasses import dataclass

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
