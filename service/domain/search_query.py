"""The search box's query language, parsed into a value; and that value as full-text syntax.

    budget "quarterly report" from:alice to:bob subject:invoice has:attachment is:unread
    in:Inbox in:"Old ISP/Archive" after:2024-01-01 before:2024-07-01

Every term must match (AND). Words and "phrases" are looked for in the subject, sender,
recipients (To and Cc), body text and attachment names; `from:`, `to:` and `subject:`
narrow one term to one field (`from:"Anna Müller"` is a phrase in the sender). The other
operators are filters: `has:attachment`, `is:unread` (and `is:read`, `is:flagged`),
`in:FOLDER` (the folder's path, case-insensitive; quoted when it has spaces; the last one
counts), `after:DATE` (on or after that day) and `before:DATE` (before that day), dates
YYYY-MM-DD in UTC. Anything else, an unknown `x:` or a bad date included, is words.

The user's text never becomes query syntax. Parsing is one pass over at most
`MAX_QUERY_CHARS` characters (the rest is ignored) keeping at most `MAX_TERMS` terms;
control characters and unpaired surrogates become spaces; an unclosed quote runs to
the end. Each term then reaches SQLite FTS5 as a double-quoted string (quotes doubled,
which FTS5 reads as a phrase of the tokens inside, so `*`, `^`, `-`, `NEAR`, `AND`,
`OR`, `NOT`, `:` and parentheses are plain text) and PostgreSQL as quoted lexemes made of
letters and digits only (`search_text.plain_words`), and both as bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from enum import StrEnum

from service.domain.search_text import plain_words

MAX_QUERY_CHARS = 1000
MAX_TERMS = 32
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


class Field(StrEnum):
    """The index's columns a term can be narrowed to (their names in the FTS5 table)."""

    SUBJECT = "subject"
    SENDER = "sender"
    RECIPIENTS = "recipients"


# PostgreSQL: one weight per field in the document (migration 0009); body and names are D.
PG_WEIGHTS = {Field.SUBJECT: "A", Field.SENDER: "B", Field.RECIPIENTS: "C"}
_FIELDS = {"from": Field.SENDER, "to": Field.RECIPIENTS, "subject": Field.SUBJECT}
_FILTERS = frozenset({"has", "is", "in", "before", "after"})


@dataclass(frozen=True, slots=True)
class Term:
    """Text that must occur: anywhere, or in one field. A phrase's words must be adjacent."""

    text: str
    field: Field | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    terms: tuple[Term, ...] = ()
    has_attachment: bool = False
    unread: bool | None = None
    flagged: bool = False
    folder: str | None = None
    after: datetime | None = None
    before: datetime | None = None

    @property
    def is_empty(self) -> bool:
        """Nothing to look for: an empty box finds nothing rather than everything."""
        return self == SearchQuery()


def _clean(text: str) -> str:
    return _CONTROL.sub(" ", text[:MAX_QUERY_CHARS])


def _day(value: str) -> datetime | None:
    match = _DATE.fullmatch(value)
    if match is None:
        return None
    try:
        day = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _tokens(text: str) -> list[tuple[str | None, str, bool]]:
    """(operator or None, value, quoted) in order; one pass, no backtracking."""
    found: list[tuple[str | None, str, bool]] = []
    i, end = 0, len(text)
    while i < end:
        if text[i].isspace():
            i += 1
            continue
        if text[i] == '"':
            close = text.find('"', i + 1)
            close = end if close < 0 else close
            found.append((None, text[i + 1 : close], True))
            i = close + 1
            continue
        j = i
        while j < end and not text[j].isspace() and text[j] not in ':"':
            j += 1
        key = text[i:j].casefold()
        if j < end and text[j] == ":" and (key in _FIELDS or key in _FILTERS):
            j += 1
            if j < end and text[j] == '"':
                close = text.find('"', j + 1)
                close = end if close < 0 else close
                found.append((key, text[j + 1 : close], True))
                i = close + 1
                continue
            k = j
            while k < end and not text[k].isspace():
                k += 1
            found.append((key, text[j:k], False))
            i = k
            continue
        while j < end and not text[j].isspace():
            j += 1
        found.append((None, text[i:j], False))
        i = j
    return found


def parse(text: str) -> SearchQuery:
    """The query a user typed, as a value. Never raises; see the module's text for the rules."""
    query = SearchQuery()
    terms: list[Term] = []
    for key, value, quoted in _tokens(_clean(text)):
        lowered = value.casefold()
        if key in _FIELDS:
            terms.append(Term(value, _FIELDS[key]))
        elif key == "has" and lowered in ("attachment", "attachments"):
            query = replace(query, has_attachment=True)
        elif key == "is" and lowered in ("unread", "read"):
            query = replace(query, unread=lowered == "unread")
        elif key == "is" and lowered in ("flagged", "starred"):
            query = replace(query, flagged=True)
        elif key == "in" and value.strip(" /"):
            query = replace(query, folder=value.strip(" /"))
        elif key == "after" and (day := _day(value)) is not None:
            query = replace(query, after=day)
        elif key == "before" and (day := _day(value)) is not None:
            query = replace(query, before=day)
        elif key is None:
            terms.append(Term(value))
        elif value.strip(" /"):  # a filter's value it cannot use is words; no value is nothing
            terms.append(Term(f"{key}:{value}" if not quoted else f'{key}:"{value}"'))
    kept = tuple(t for t in terms if plain_words(t.text))[:MAX_TERMS]
    return replace(query, terms=kept)


def fts5_match(query: SearchQuery) -> str | None:
    """The terms as an FTS5 MATCH expression, or None when there are none.

    Each term is one FTS5 string ("..." with inner quotes doubled): FTS5 tokenizes a
    string's content with the table's tokenizer and matches the tokens as a phrase, so
    nothing inside can be an operator. A field becomes a column filter (`sender : "..."`).
    """
    parts = []
    for term in query.terms:
        string = '"' + term.text.replace('"', '""') + '"'
        parts.append(f"{term.field.value} : {string}" if term.field else string)
    return " AND ".join(parts) or None


def pg_tsquery(query: SearchQuery, *, relaxed: bool = False) -> str | None:
    """The terms as `to_tsquery('simple', ...)` input, or None when there are none.

    Each term is reduced to lowercase, accent-free letters and digits (`plain_words`, as the
    indexed document was), each word quoted as a lexeme, a term's words joined with `<->`
    (adjacent, in order) and restricted to its field's weight; terms are joined with `&`.
    `relaxed`: every word anywhere (`&`, no weights), which the GIN index answers without
    reading a single document: a superset of the matches, cheap to count.
    """
    parts = []
    for term in query.terms:
        weight = f":{PG_WEIGHTS[term.field]}" if term.field and not relaxed else ""
        words = plain_words(term.text).split()
        lexemes = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" + weight for w in words]
        if lexemes:
            parts.append("(" + (" & " if relaxed else " <-> ").join(lexemes) + ")")
    return " & ".join(parts) or None
