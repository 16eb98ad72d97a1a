"""User patterns run on RE2, in a worker thread, before the write transaction: patterns that
make a backtracking engine take forever ((a|a)*c on 25 "a" doubled with each further one) are
accepted and match long texts; what RE2 cannot compile is refused in one sentence; text that
is not UTF-8 never breaks matching; the event loop keeps running while a batch is filtered."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.filter_matching import evaluate, evaluate_all
from service.domain.filters import (
    MAX_PATTERN,
    Action,
    ActionKind,
    Condition,
    FilterField,
    FilterOp,
    FilterRule,
    Verdict,
    check_rule,
)
from service.domain.values import Protocol
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import filters
from service.usecases.retrieval import filtering
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import make_env
from tests.test_spam_retrieval import subjects_by_folder

F, Op = FilterField, FilterOp
CATASTROPHIC = [("(a|a)*c", "c"), (r"(\w|\d)*!", "!"), (r"(.|\s)*x", "x")]


def matching(value: str, field: FilterField = F.SUBJECT) -> FilterRule:
    condition = Condition(field, Op.MATCHES, value)
    return check_rule(FilterRule(name="p", conditions=(condition,), actions=(Action(ActionKind.FLAG),)))


@pytest.mark.parametrize(("pattern", "end"), CATASTROPHIC)
def test_patterns_that_backtrack_forever_are_accepted_and_match_a_10000_character_subject(
    pattern: str, end: str
) -> None:
    rules = [matching(pattern)]
    assert not evaluate(rules, sample("a" * 10_000)).flagged  # re: 2**10000 steps
    assert evaluate(rules, sample("a" * 10_000 + end)).flagged
    assert evaluate(rules, sample("A" * 25 + end.upper())).flagged  # case-insensitive


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(re|fwd): \1", r"invalid escape sequence: \1"),
        (r"invoice(?=\d)", "invalid perl operator: (?="),
        (r"(?<!un)subscribe", "invalid perl operator: (?<"),
        (r"end\Z", r"invalid escape sequence: \Z"),
        ("a++", "bad repetition operator: ++"),
        ("(unclosed", "missing )"),
    ],
)
def test_a_pattern_re2_cannot_compile_is_refused_in_one_sentence(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        matching(pattern)
    sentence = refused.value.message
    assert sentence.startswith(f'The pattern "{pattern}" cannot be used: RE2, the engine filters match with, reports')
    assert reason in sentence
    assert "no backreferences such as \\1 and no lookarounds" in sentence
    assert "(?m)" not in sentence  # the multi-line flag Tributary adds is not the user's


def test_pattern_length_and_size_limits() -> None:
    longest = "(a|a)*" * 33 + "cc"
    assert len(longest) == MAX_PATTERN
    assert evaluate([matching(longest)], sample("a" * 500 + "cc")).flagged
    with pytest.raises(InvalidInput, match=f"at most {MAX_PATTERN} characters"):
        matching(longest + "c")
    with pytest.raises(InvalidInput, match="too complex to match quickly"):
        matching(r"[\w\d]{900}")  # short, but thousands of RE2 instructions


def test_an_empty_pattern_is_refused_and_empty_text_still_matches_patterns() -> None:
    for empty in ("", "   "):
        with pytest.raises(InvalidInput, match="needs a value"):
            matching(empty)
    assert evaluate([matching("^$")], sample("")).flagged
    assert not evaluate([matching(".")], sample("")).flagged
    assert evaluate([matching("^$", F.BODY)], sample("x", body="")).flagged


def test_text_that_is_not_utf8_is_matched_where_it_reads_and_never_raises() -> None:
    def message(charset: str, body: bytes, subject: bytes = b"Hello") -> bytes:
        return (
            b"From: a@example.test\r\nSubject: " + subject + b"\r\n"
            b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n" + body
        )

    latin1 = message("iso-8859-1", b"Caf\xe9 cr\xe8me")
    assert evaluate([matching(r"CAFÉ\s+crème", F.BODY)], latin1).flagged
    broken_utf8 = message("utf-8", b"price: 10\xff\xfe EUR \xc3\x28")
    assert evaluate([matching(r"^price: 10..\sEUR", F.BODY)], broken_utf8).flagged  # each bad byte is U+FFFD
    assert evaluate([matching(r"EUR .\(", F.BODY)], broken_utf8).flagged
    unknown = message("x-no-such-charset", b"plain \x80 text")
    assert evaluate([matching("plain . text", F.BODY)], unknown).flagged
    surrogates = message("unicode-escape", b"left \\ud800 right")  # decodes to a lone surrogate
    assert evaluate([matching("left .+ right", F.BODY)], surrogates).flagged
    eight_bit_subject = message("utf-8", b"body", subject=b"Gr\xc3\xbc\xc3\x9fe \xff\x00 end")
    assert evaluate([matching(r"gr.+ end$")], eight_bit_subject).flagged
    assert evaluate([matching("x", F.BODY)], b"\xff\xfe\x00") == Verdict()


def test_a_pattern_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidInput, match="one line"):
        matching("a\ud800")


async def test_rules_run_in_a_worker_thread_before_the_write_transaction(
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    dovecot: DovecotServer,
    mail_user: MailUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = await make_env(db, settings, secret_box, dovecot, mail_user)
    for pattern, end in CATASTROPHIC:
        condition = Condition(F.SUBJECT, Op.MATCHES, pattern)
        rule = FilterRule(name=end, conditions=(condition,), actions=(Action(ActionKind.MOVE, "Caught"),))
        await filters.create_rule(db=db, user_id=env.user_id, rule=rule)
    body = ("a" * 998 + "\r\n") * 60
    for end in ("c", "!", "x", ""):
        for _ in range(5):
            env.dovecot.deliver(env.mailbox.email, sample("a" * 10_000 + end, body=body))

    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    writes_open = 0
    seen: list[tuple[bool, int, int]] = []  # (on the loop's thread, messages, write transactions open)
    real_write = db.write

    @contextlib.asynccontextmanager
    async def counted_write() -> AsyncIterator[AsyncSession]:
        nonlocal writes_open
        writes_open += 1
        try:
            async with real_write() as session:
                yield session
        finally:
            writes_open -= 1

    def spy(rules: Sequence[FilterRule], raws: Sequence[bytes | None]) -> list[Verdict]:
        ticked = threading.Event()
        loop.call_soon_threadsafe(ticked.set)  # runs only if the loop is free while we work
        assert ticked.wait(10), "the event loop was blocked while the rules ran"
        seen.append((threading.get_ident() == loop_thread, len(raws), writes_open))
        return evaluate_all(rules, raws)

    monkeypatch.setattr(db, "write", counted_write)
    monkeypatch.setattr(filtering, "evaluate_all", spy)
    task_id = await env.add_task(Protocol.POP3, apply_filters=True)
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (20, [])
    assert seen
    assert all(not on_loop and open_ == 0 for on_loop, _, open_ in seen)
    assert sum(count for _, count, _ in seen) == 20
    folders = await subjects_by_folder(env)
    assert (len(folders["Caught"]), len(folders["Inbox"])) == (15, 5)
