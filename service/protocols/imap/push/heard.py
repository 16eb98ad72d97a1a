"""What the server said without being asked (untagged responses, RFC 3501 section 7): its
capabilities, the hierarchy delimiter, INBOX's UIDVALIDITY (RFC 3501 7.1, from EXAMINE) and
whether new mail arrived.

News is growth only: `* n EXISTS` for the selected INBOX when n exceeds the last size (EXPUNGE
lowers it, RFC 3501 7.4.1), and, under NOTIFY (RFC 5465 section 5), `* STATUS name (...)` for
another folder when its MESSAGES or UIDNEXT grew, or the folder was not heard of before. A BYE
(RFC 3501 7.1.5) raises ServerUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ServerUnavailable
from service.protocols.imap.push import parse


@dataclass(frozen=True, slots=True)
class PushNews:
    """New mail was announced. `folders`: remote folder names ("/"-delimited, decoded from modified
    UTF-7, as service/protocols/imap/folders.py's slash_path gives them) that announced it; empty
    when unknown."""

    folders: frozenset[str]


class Heard:
    """The untagged responses of one connection, as state."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.capabilities: frozenset[str] = frozenset()
        self.delimiter: str | None = None
        self.exists: int | None = None  # the selected INBOX's size, once EXAMINE told it
        self.uidvalidity: int | None = None  # the selected INBOX's, from EXAMINE's [UIDVALIDITY n]
        self.status: dict[str, tuple[int | None, int | None]] = {}  # folder: (MESSAGES, UIDNEXT)
        self.news: set[str] | None = None

    def take_news(self) -> PushNews:
        news, self.news = self.news or set(), None
        return PushNews(frozenset(news))

    def forget(self, folder: str) -> None:
        """News of `folder` is covered (its new mail was fetched): no longer news."""
        if self.news is not None:
            self.news.discard(folder)
            if not self.news:
                self.news = None

    def note(self, parts: list[bytes]) -> None:
        """Take in one untagged response: capabilities, the delimiter, news, or the server's BYE."""
        found = parse.tokens(parts)
        if len(found) < 2 or found[0] != b"*":
            return
        word = parse.text_of(found[1]).upper()
        if word == b"BYE":
            raise ServerUnavailable(f"{self.host} closed the connection ({text_of_response(parts)[6:] or 'BYE'}).")
        if word == b"CAPABILITY":
            self.capabilities = frozenset(parse.text_of(t).decode("ascii", "replace").upper() for t in found[2:])
        elif word == b"OK" and len(found) > 3 and parse.text_of(found[2]).upper() == b"[UIDVALIDITY":
            value = parse.text_of(found[3]).rstrip(b"]")
            if value.isdigit():
                self.uidvalidity = int(value)
        elif word in (b"OK", b"PREAUTH") and len(found) > 2 and parse.text_of(found[2]).upper() == b"[CAPABILITY":
            names = []
            for token in found[3:]:
                name = parse.text_of(token)
                names.append(name.rstrip(b"]").decode("ascii", "replace").upper())
                if name.endswith(b"]"):
                    break
            self.capabilities = frozenset(names)
        elif word == b"LIST":
            inside = parse.parenthesised(found, 2)
            after = found[2 + len(inside) + 2 :][:1]  # past "(" attributes ")"
            if after and isinstance(after[0], parse.String):
                self.delimiter = after[0].value.decode("ascii", "replace")
        elif word == b"STATUS" and len(found) > 3:
            self._status_news(parse.mailbox_name(found[2], self.delimiter), parse.parenthesised(found, 3))
        elif len(found) > 2 and isinstance(found[1], bytes) and found[1].isdigit():
            self._counted(int(found[1]), parse.text_of(found[2]).upper())

    def _counted(self, number: int, word: bytes) -> None:
        if word == b"EXISTS":
            if self.exists is not None and number > self.exists:
                self._announce("INBOX")
            self.exists = number
        elif word == b"EXPUNGE" and self.exists:
            self.exists -= 1

    def _status_news(self, folder: str, items: list[parse.Token]) -> None:
        counts = parse.status_counts(items)
        messages, uidnext = counts.get(b"MESSAGES"), counts.get(b"UIDNEXT")
        before = self.status.get(folder)
        grew = before is None or _grew(before[0], messages) or _grew(before[1], uidnext)
        if before is not None:
            messages = messages if messages is not None else before[0]
            uidnext = uidnext if uidnext is not None else before[1]
        self.status[folder] = (messages, uidnext)
        if grew and (messages is not None or uidnext is not None):
            self._announce(folder)

    def _announce(self, folder: str) -> None:
        if self.news is None:
            self.news = set()
        self.news.add(folder)


def _grew(before: int | None, now: int | None) -> bool:
    return before is not None and now is not None and now > before


def text_of_response(parts: list[bytes]) -> str:
    """A response's text (literals left out), short enough for an error message."""
    return b"".join(parts[::2]).decode("utf-8", "replace").strip()[:200]
