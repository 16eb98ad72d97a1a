"""Remote IMAP folders as LIST (RFC 3501 6.3.8) describes them: their names with "/" as the
hierarchy delimiter, their RFC 6154 special-use attribute, and whether they can be selected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.domain.values import SpecialUse

# RFC 6154 attributes of LIST, and the local folder each maps to in "root" transfer.
SPECIAL_USE_FLAGS: dict[bytes, SpecialUse | None] = {
    b"\\Sent": SpecialUse.SENT,
    b"\\Drafts": SpecialUse.DRAFTS,
    b"\\Trash": SpecialUse.TRASH,
    b"\\Junk": SpecialUse.JUNK,
    b"\\Archive": None,  # no local special folder: lands in "Archive" at the root
}
NOT_SELECTABLE = {b"\\noselect", b"\\nonexistent"}


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    """A selectable remote folder. `path` uses "/"; `name` is what SELECT needs;
    `personal_prefix` is the server's personal namespace prefix in "/" form ("INBOX/" on
    Cyrus and Courier, else "")."""

    name: str
    path: str
    special_use: bytes | None
    personal_prefix: str = ""


def special_use_of(flags: Sequence[Any]) -> bytes | None:
    for flag in flags:
        if isinstance(flag, bytes):
            for known in SPECIAL_USE_FLAGS:
                if flag.lower() == known.lower():
                    return known
    return None


def slash_path(name: str, delimiter: bytes | str | None) -> str:
    """The remote name with its own delimiter replaced by "/" ("/" inside a level becomes "_")."""
    if isinstance(delimiter, bytes):
        delimiter = delimiter.decode("ascii", "replace")
    if not delimiter or delimiter == "/":
        return name
    return "/".join(part.replace("/", "_") for part in name.split(delimiter))
