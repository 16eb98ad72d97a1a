"""What a local folder may be called: the rules `usecases.folders` checks before creating or renaming.

A folder's `name` is one level; its `path` joins the names from the root with "/", so "/"
cannot be part of a name (choose the parent instead). Names are stored in NFC, so the same
word typed on two keyboards is one name. Siblings may not share a name up to case and
compatibility forms (`sibling_key`: "Reports", "reports" and the same word in full-width letters clash), as
on IMAP servers that fold case, so a folder is never two rows a person cannot tell apart.

Refused: an empty name, "." and "..", control characters (C0, C1, DEL), line and paragraph
separators (U+2028, U+2029), the bidirectional overrides that make a name read backwards,
lone surrogates, and anything longer than the column (255) or whose path would pass 1,000.
"""

from __future__ import annotations

import unicodedata

from service.errors import InvalidInput

MAX_NAME = 255  # Folder.name
MAX_PATH = 1000  # Folder.path
SEPARATOR = "/"
ARCHIVE = "Archive"
"""The top-level folder the mail pages' Archive button (and the `e` shortcut) moves messages to, made on
first use: no special-use folder, but treated as one once it exists."""

_REFUSED_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


class FolderNameInvalid(InvalidInput):
    """The folder name breaks one of the rules; the sentence says which."""


def check_folder_name(name: str) -> str:
    """The name as it will be stored (trimmed, NFC), or FolderNameInvalid saying what is wrong."""
    cleaned = unicodedata.normalize("NFC", name.strip(" \t"))
    if not cleaned:
        raise FolderNameInvalid("A folder needs a name.")
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES or c in _BIDI_CONTROLS for c in cleaned):
        raise FolderNameInvalid("A folder name cannot contain line breaks or other control characters.")
    if SEPARATOR in cleaned:
        raise FolderNameInvalid('A folder name cannot contain "/"; to put a folder inside another, choose its parent.')
    if cleaned in (".", ".."):
        raise FolderNameInvalid(f'"{cleaned}" cannot be a folder name.')
    if len(cleaned) > MAX_NAME:
        raise FolderNameInvalid(f"A folder name can be at most {MAX_NAME} characters long.")
    return cleaned


def sibling_key(name: str) -> str:
    """What two sibling names are compared by: compatibility forms and case folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def join_path(parent_path: str | None, name: str) -> str:
    return f"{parent_path}{SEPARATOR}{name}" if parent_path else name


def is_within(path: str, ancestor: str) -> bool:
    """Whether `path` is `ancestor` itself or below it."""
    return path == ancestor or path.startswith(ancestor + SEPARATOR)


def rebased(path: str, old_prefix: str, new_prefix: str) -> str:
    """`path` (within `old_prefix`) with that prefix replaced: where a child goes when its ancestor moves."""
    return new_prefix + path[len(old_prefix) :]
