"""What a retrieval task imports (issue 18, "What to import"): the one place these rules live.

Initial import. A task's first complete run brings "All messages" (`all`), "Only messages
from now on" (`new`: what is on the server then is recorded as seen, nothing is downloaded),
or "Messages since DATE" (`since:YYYY-MM-DD`: IMAP by SEARCH SINCE, RFC 3501 6.4.4, i.e. the
internal date; POP3 by each message's Date header, TOP n 0, RFC 1939 section 7). Whatever
arrives later is always imported, and so is a folder first met after that run (a folder
created on the server, or one the user includes later): the choice is about the mail that was
already there when the task started. The text form ("all", "new", "since:2024-03-01") is
the same in the CLI (`--initial`), the API and `retrieval list --json` (`"initial"`).

Folder selection (IMAP). `include` and `exclude` are lists of patterns over a folder's path
("/" between levels, modified UTF-7 already decoded, RFC 3501 5.1.3), where `*` stands for
any run of characters, "/" included, and everything else is literal. A folder is imported
when no include pattern is given or one matches, and no exclude pattern matches. Matching
ignores case (INBOX is case-insensitive anyway, and nobody means "sent" to miss "Sent").
The matcher never backtracks: the pattern's literal pieces are found in order, leftmost
first, which is all a `*`-only pattern needs (linear in the name per piece), so neither a
`*` storm nor a huge name can stall a run. The form's ticks map onto the same lists: with
"only these folders" the ticked folders are the include list (a folder created later is not
imported); otherwise the unticked ones are the exclude list (a folder created later is).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from service.errors import InvalidInput

MAX_PATTERNS = 200
MAX_PATTERN_LENGTH = 1000  # a remote folder path is stored in at most 1000 characters
_SINCE = re.compile(r"since:([0-9]{4})-([0-9]{2})-([0-9]{2})")
_STARS = re.compile(r"\*{2,}")
EARLIEST = date(1900, 1, 1)


class InitialKind(StrEnum):
    ALL = "all"
    NEW = "new"
    SINCE = "since"


INITIAL_LABELS = {
    InitialKind.ALL: "All messages",
    InitialKind.NEW: "Only messages from now on",
    InitialKind.SINCE: "Messages since",
}


@dataclass(frozen=True, slots=True)
class InitialImport:
    """The initial import choice; `since` is set exactly when kind is SINCE."""

    kind: InitialKind = InitialKind.ALL
    since: date | None = None

    @classmethod
    def parse(cls, text: str) -> InitialImport:
        """ "all", "new" or "since:YYYY-MM-DD" (a real date from 1900 on); InvalidInput otherwise."""
        clean = isinstance(text, str) and not any(unicodedata.category(c) == "Cc" for c in text)
        value = text.strip(" ").lower() if clean else ""  # CR, LF, NUL, tabs: never a choice
        if value in (InitialKind.ALL, InitialKind.NEW):
            return cls(InitialKind(value))
        found = _SINCE.fullmatch(value)
        if found is None:
            raise InvalidInput(
                'The initial import must be "all", "new" or "since:YYYY-MM-DD" (for example since:2024-03-01).'
            )
        try:
            day = date(*(int(part) for part in found.groups()))
        except ValueError:
            raise InvalidInput(f"{value[6:]} is not a date: use YYYY-MM-DD, for example 2024-03-01.") from None
        if day < EARLIEST:
            raise InvalidInput("The date to import messages since must be in 1900 or later.")
        return cls(InitialKind.SINCE, day)

    def __str__(self) -> str:
        return f"since:{self.since.isoformat()}" if self.since is not None else self.kind.value

    def label(self) -> str:
        """In the form's words: "All messages", "Only messages from now on", "Messages since 2024-03-01"."""
        text = INITIAL_LABELS[self.kind]
        return f"{text} {self.since.isoformat()}" if self.since is not None else text


def check_initial(text: str) -> str:
    """The stored (normal) form of an initial import choice; InvalidInput when it is not one."""
    return str(InitialImport.parse(text))


def _pattern_problem(pattern: str) -> str | None:
    if not pattern.strip():
        return "A folder pattern cannot be empty."
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"A folder pattern can be at most {MAX_PATTERN_LENGTH} characters long."
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in pattern):  # U+2028/9 break lines too
        return "A folder pattern cannot contain line breaks or control characters."
    return None


def check_patterns(patterns: Iterable[str], what: str = "folder") -> list[str]:
    """The patterns as stored: stripped, runs of `*` made one, duplicates dropped (first kept).
    InvalidInput for an empty one, one with control characters (CR, LF, NUL...), one over
    MAX_PATTERN_LENGTH, or more than MAX_PATTERNS of them."""
    if isinstance(patterns, str):
        raise InvalidInput(f"Give the {what} patterns as a list.")
    kept: list[str] = []
    for raw in patterns:
        if not isinstance(raw, str):
            raise InvalidInput(f"Each {what} pattern must be text.")
        problem = _pattern_problem(raw)
        if problem is not None:
            raise InvalidInput(problem)
        pattern = _STARS.sub("*", raw.strip())
        if pattern not in kept:
            kept.append(pattern)
        if len(kept) > MAX_PATTERNS:
            raise InvalidInput(f"Give at most {MAX_PATTERNS} {what} patterns.")
    return kept


def wildcard_match(pattern: str, name: str) -> bool:
    """Whether `name` matches `pattern`, where `*` is any run of characters (case ignored).

    The pieces between stars are found in order, each leftmost after the previous one: with
    only `*` as a wildcard, leftmost is never worse, so there is nothing to backtrack."""
    pieces = pattern.casefold().split("*")
    text = name.casefold()
    if len(pieces) == 1:
        return text == pieces[0]
    first, last, middle = pieces[0], pieces[-1], pieces[1:-1]
    if not text.startswith(first) or len(text) < len(first) + len(last):
        return False
    position = len(first)
    end = len(text) - len(last)
    for piece in middle:
        if not piece:
            continue
        found = text.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return text.endswith(last) and position <= end


@dataclass(frozen=True, slots=True)
class FolderSelection:
    """Which remote folders a task imports (see the module docstring)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, include: Sequence[str], exclude: Sequence[str]) -> FolderSelection:
        return cls(tuple(check_patterns(include)), tuple(check_patterns(exclude)))

    @classmethod
    def from_ticks(cls, listed: Sequence[str], ticked: Sequence[str], *, only_these: bool) -> FolderSelection:
        """The selection the form's folder list describes: the ticked folders alone ("only
        these folders"), or every folder but the unticked ones (new folders come too)."""
        chosen = set(ticked)
        if only_these:
            include = [path for path in listed if path in chosen]
            if not include:
                raise InvalidInput('Tick at least one folder to import, or turn off "Only these folders".')
            return cls.of(include, [])
        return cls.of([], [path for path in listed if path not in chosen])

    @property
    def only_these(self) -> bool:
        return bool(self.include)

    def includes(self, path: str) -> bool:
        if self.include and not any(wildcard_match(p, path) for p in self.include):
            return False
        return not any(wildcard_match(p, path) for p in self.exclude)
