"""Content filter rules on their own: conditions, actions, order, validation, and messages a
parser chokes on (matched where they read, never an exception)."""

from __future__ import annotations

import pytest

from service.domain.filter_matching import evaluate, is_spam_by_headers
from service.domain.filters import (
    Action,
    ActionKind,
    Condition,
    FilterField,
    FilterOp,
    FilterRule,
    Verdict,
    check_rule,
)
from service.errors import InvalidInput
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample

F, Op, A = FilterField, FilterOp, ActionKind


def rule(*conditions: Condition, actions: tuple[Action, ...] = (Action(A.FLAG),), match_all: bool = True) -> FilterRule:
    return check_rule(FilterRule(name="r", conditions=conditions, actions=actions, match_all=match_all))


def when(field: FilterField, op: FilterOp, value: str, header: str = "") -> Condition:
    return Condition(field, op, value, header)


MESSAGE = (
    b"From: =?utf-8?q?J=C3=B6rg_Boss?= <Boss@Example.TEST>\r\n"
    b"To: reader@example.test\r\n"
    b"Cc: Team <team@lists.example.test>\r\n"
    b"Subject: =?utf-8?b?V2Vla2x5IG5ld3NsZXR0ZXI=?=\r\n"
    b"List-Id: Weekly <weekly.lists.example.test>\r\n"
    b"Content-Type: multipart/alternative; boundary=b\r\n"
    b"\r\n"
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=C3=BC=C3=9Fe, the invoice is attached.\r\n"
    b"--b--\r\n"
)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (when(F.FROM, Op.CONTAINS, "jörg"), True),
        (when(F.FROM, Op.IS, "boss@example.test"), True),  # the address, whatever the display name
        (when(F.FROM, Op.IS, "example.test"), False),
        (when(F.TO_CC, Op.CONTAINS, "lists.example"), True),
        (when(F.TO_CC, Op.IS, "team@lists.example.test"), True),
        (when(F.SUBJECT, Op.IS, "weekly NEWSLETTER"), True),
        (when(F.SUBJECT, Op.MATCHES, r"^weekly\s+news"), True),
        (when(F.SUBJECT, Op.CONTAINS, "invoice"), False),
        (when(F.HEADER, Op.CONTAINS, "weekly.lists", header="list-id"), True),
        (when(F.HEADER, Op.CONTAINS, "x", header="X-Absent"), False),
        (when(F.BODY, Op.CONTAINS, "grüße, THE INVOICE"), True),
        (when(F.SIZE, Op.OVER, "1"), False),
        (when(F.SIZE, Op.OVER, "100 B"), True),
    ],
)
def test_each_condition(condition: Condition, expected: bool) -> None:
    assert evaluate([rule(condition)], MESSAGE).flagged is expected


def test_all_or_any_and_the_order_of_rules() -> None:
    boss = when(F.FROM, Op.CONTAINS, "boss")
    nobody = when(F.FROM, Op.CONTAINS, "nobody")
    assert not evaluate([rule(boss, nobody)], MESSAGE).flagged
    assert evaluate([rule(boss, nobody, match_all=False)], MESSAGE).flagged

    first = rule(boss, actions=(Action(A.MOVE, "Work"), Action(A.MARK_READ)))
    second = rule(boss, actions=(Action(A.MOVE, "Later"), Action(A.FLAG)))
    assert evaluate([first, second], MESSAGE) == Verdict(
        folder="Work", seen=True, flagged=True, matched=("r", "r")
    )  # the first move wins, flags add up
    stop = rule(boss, actions=(Action(A.MARK_READ), Action(A.STOP)))
    assert evaluate([stop, second], MESSAGE) == Verdict(seen=True, matched=("r",))
    delete = rule(boss, actions=(Action(A.DELETE),))
    assert evaluate([first, delete, second], MESSAGE).deleted
    disabled = FilterRule(name="off", conditions=(boss,), actions=(Action(A.DELETE),), enabled=False)
    assert not evaluate([disabled], MESSAGE).deleted


def test_broken_messages_are_matched_where_they_read_and_never_raise() -> None:
    rules = [
        rule(when(F.BODY, Op.CONTAINS, "binary")),
        rule(when(F.FROM, Op.MATCHES, "<{3}@+"), actions=(Action(A.MARK_READ),)),
        rule(when(F.HEADER, Op.IS, "x", header="From"), actions=(Action(A.MOVE, "X"),)),
    ]
    verdict = evaluate(rules, MALFORMED)
    assert verdict.flagged
    assert verdict.seen
    assert verdict.folder is None
    assert evaluate([rule(when(F.SUBJECT, Op.CONTAINS, "köln"))], EIGHT_BIT) == Verdict()  # no charset: no guess
    assert evaluate([rule(when(F.FROM, Op.CONTAINS, "joerg@"))], EIGHT_BIT).flagged
    assert evaluate([rule(when(F.BODY, Op.CONTAINS, "x"))], b"") == Verdict()


def test_spam_headers_from_upstream() -> None:
    assert is_spam_by_headers(b"X-Spam-Flag: YES\r\nSubject: x\r\n\r\nbody")
    assert is_spam_by_headers(b"Subject: x\r\nx-spam-status: yes, score=9.1\r\n required=5.0\r\n\r\nbody")
    assert not is_spam_by_headers(b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=0.1\r\n\r\nbody")
    assert not is_spam_by_headers(sample("ham", body="X-Spam-Flag: YES in the body does not count\r\n"))


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (when(F.SUBJECT, Op.CONTAINS, " "), "needs a value"),
        (when(F.SUBJECT, Op.MATCHES, "("), "cannot be used: RE2"),
        (when(F.SUBJECT, Op.MATCHES, "x" * 201), "at most 200"),
        (when(F.HEADER, Op.CONTAINS, "x", header="Bad:Name"), "not a header name"),
        (when(F.SIZE, Op.CONTAINS, "5"), '"is over"'),
        (when(F.SIZE, Op.OVER, "lots"), "not a size"),
        (when(F.SUBJECT, Op.OVER, "5"), "only applies to Size"),
        (when(F.FROM, Op.IS, "a\r\nBcc: x"), "one line"),
    ],
)
def test_invalid_conditions_are_refused_with_a_reason(condition: Condition, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        rule(condition)


def test_rule_shape_is_checked_and_folders_normalised() -> None:
    boss = when(F.FROM, Op.CONTAINS, "boss")
    with pytest.raises(InvalidInput, match="name"):
        check_rule(FilterRule(name="  ", conditions=(boss,), actions=(Action(A.FLAG),)))
    with pytest.raises(InvalidInput, match="at least one condition"):
        check_rule(FilterRule(name="n", conditions=(), actions=(Action(A.FLAG),)))
    with pytest.raises(InvalidInput, match="at least one action"):
        check_rule(FilterRule(name="n", conditions=(boss,), actions=()))
    with pytest.raises(InvalidInput, match="Outbox"):
        rule(boss, actions=(Action(A.MOVE, "outbox"),))
    with pytest.raises(InvalidInput, match="needs a folder"):
        rule(boss, actions=(Action(A.MOVE, " / "),))
    checked = rule(boss, actions=(Action(A.MOVE, " junk "), Action(A.MOVE, "/Lists//News/")))
    assert [a.folder for a in checked.actions] == ["Junk", "Lists/News"]


def test_a_pattern_searches_a_large_body_line_by_line() -> None:
    huge = sample("big", body=("a" * 5_000 + "\r\n") * 1_000)
    assert not evaluate([rule(when(F.BODY, Op.MATCHES, r"a.*b"))], huge).flagged
    assert evaluate([rule(when(F.BODY, Op.MATCHES, r"^a+$"))], huge).flagged
    assert not evaluate([rule(when(F.BODY, Op.MATCHES, r"a\sa"))], huge).flagged  # never across a line end
    assert evaluate([rule(when(F.SUBJECT, Op.MATCHES, r"[*+]{1}b\*\+"))], sample("x *b*+")).flagged
