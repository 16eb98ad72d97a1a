"""The search query language: operators parsed as written, and no user text ever becomes
FTS5 or tsquery syntax (checked against a real SQLite FTS5 table built as migration 0009 does)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.domain.search_query import (
    MAX_TERMS,
    Field,
    SearchQuery,
    Term,
    fts5_match,
    parse,
    pg_tsquery,
)
from service.domain.search_text import plain_words

FTS5_TABLE = (
    "CREATE VIRTUAL TABLE message_search USING fts5(subject, sender, recipients, body, attachments,"
    " tokenize = 'unicode61 remove_diacritics 2')"
)
# Characters that mean something to FTS5, tsquery, SQL or the parser itself.
_PIECES = [
    '"', "'", "*", "^", "-", "+", "(", ")", ":", "{", "}", "NEAR", "AND", "OR", "NOT", "\\", ";", "--",
    "\x00", "\udcff", " ", "from:", "to:", "subject:", "in:", "is:", "has:", "before:", "after:", "x:",
    "é", "café", "a", "b", "<->", "&", "|", "!", "2024-01-01", "\t", "\n", "'':A",
]  # fmt: skip
_HOSTILE = st.lists(st.sampled_from(_PIECES), max_size=20).map("".join) | st.text(max_size=60)
_LEXEME = r"'[^'\\\s]+'(?::[ABC])?"
_RELAXED = re.compile(r"\('[^'\\\s]+'(?: & '[^'\\\s]+')*\)(?: & \('[^'\\\s]+'(?: & '[^'\\\s]+')*\))*")
_TSQUERY = re.compile(rf"\({_LEXEME}(?: <-> {_LEXEME})*\)(?: & \({_LEXEME}(?: <-> {_LEXEME})*\))*")


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.execute(FTS5_TABLE)
    connection.execute(
        "INSERT INTO message_search (rowid, subject, sender, recipients, body, attachments) VALUES"
        " (1, 'Quarterly report', 'Anna Müller <anna@example.test>', 'bob@example.test', 'NEAR the café', 'a.pdf')"
    )
    yield connection
    connection.close()


def test_operators() -> None:
    query = parse(
        'budget "quarterly report" from:anna to:"Bob Smith" subject:Invoice has:attachment is:unread'
        ' in:"Old ISP/Archive" after:2024-01-02 before:2024/07/01'
    )
    assert query.terms == (
        Term("budget"),
        Term("quarterly report"),
        Term("anna", Field.SENDER),
        Term("Bob Smith", Field.RECIPIENTS),
        Term("Invoice", Field.SUBJECT),
    )
    assert query.has_attachment
    assert query.unread is True
    assert not query.flagged
    assert query.folder == "Old ISP/Archive"
    assert query.after == datetime(2024, 1, 2, tzinfo=UTC)
    assert query.before == datetime(2024, 7, 1, tzinfo=UTC)
    assert parse("is:read IS:Flagged In:Inbox").unread is False
    assert parse("is:read IS:Flagged In:Inbox").flagged
    assert parse("In:Inbox/").folder == "Inbox"


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("x:y", (Term("x:y"),)),  # unknown operators are words
        ("has:wings", (Term("has:wings"),)),
        ("after:2024-02-30", (Term("after:2024-02-30"),)),  # no such day
        ('"unclosed phrase', (Term("unclosed phrase"),)),
        ('from:"unclosed', (Term("unclosed", Field.SENDER),)),
        ("***  ---  ()", ()),  # nothing to look for
        ("a\x00b", (Term("a"), Term("b"))),  # NUL is a space
        ("subject:", ()),
    ],
)
def test_edge_cases(text: str, terms: tuple[Term, ...]) -> None:
    assert parse(text).terms == terms


def test_nothing_to_look_for_is_empty() -> None:
    assert parse("").is_empty
    assert parse('  "" ** ').is_empty
    assert parse("in:").is_empty
    assert not parse("is:unread").is_empty
    assert fts5_match(parse("is:unread")) is None
    assert pg_tsquery(parse("is:unread")) is None


def test_expressions() -> None:
    query = parse('from:"a@b.c" say "NEAR(x" -*')
    assert fts5_match(query) == 'sender : "a@b.c" AND "say" AND "NEAR(x"'
    assert pg_tsquery(query) == "('a':B <-> 'b':B <-> 'c':B) & ('say') & ('near' <-> 'x')"
    assert fts5_match(parse('say hi"there*')) == '"say" AND "hi""there*"'  # inner quotes doubled


def test_huge_input_is_cut_short_quickly() -> None:
    started = time.perf_counter()
    query = parse("word " * 200_000 + '"' * 100_000)
    assert time.perf_counter() - started < 2
    assert len(query.terms) <= MAX_TERMS


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(text=_HOSTILE)
@example(text='"')
@example(text='"" AND *')
@example(text="\udcff\x00")
@example(text="NEAR(a b, 2)")
@example(text="from:'; DROP TABLE message; --")
def test_no_input_becomes_syntax(fts: sqlite3.Connection, text: str) -> None:
    query = parse(text)
    assert isinstance(query, SearchQuery)
    for term in query.terms:
        assert plain_words(term.text)
        assert not re.search("[\x00-\x1f\ud800-\udfff]", term.text)
    expression = fts5_match(query)
    if expression is not None:
        fts.execute("SELECT rowid FROM message_search WHERE message_search MATCH ?", (expression,)).fetchall()
        # Every term is exactly one FTS5 string: quotes come in pairs once the doubled ones go.
        assert expression.replace('""', "").count('"') == 2 * len(query.terms)
    tsquery = pg_tsquery(query)
    if tsquery is not None:
        assert _TSQUERY.fullmatch(tsquery), tsquery
        relaxed = pg_tsquery(query, relaxed=True)
        assert relaxed is not None
        assert _RELAXED.fullmatch(relaxed), relaxed


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(words=st.lists(st.sampled_from(["quarterly", "REPORT", "cafe", "Café", "anna", "müller", "near"]), min_size=1))
def test_words_that_are_there_are_found(fts: sqlite3.Connection, words: list[str]) -> None:
    expression = fts5_match(parse(" ".join(words)))
    assert expression is not None
    assert fts.execute("SELECT rowid FROM message_search WHERE message_search MATCH ?", (expression,)).fetchall() == [
        (1,)
    ]
