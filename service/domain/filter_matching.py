"""Applying content filters to a message's bytes, and the spam verdict of upstream headers.

Messages are read defensively (DESIGN.md section 7: the stdlib parser raises on
real mail): the header block is parsed alone (RFC 5322 2.1, compat32 policy,
RFC 2047 encoded words decoded), the body only when a rule asks for it, and
only its first BODY_SCAN_BYTES. A part the parser chokes on is simply not
matched; the message is stored anyway.

Patterns are RE2 programs (service.domain.filters.compile_pattern), compiled
once per batch (`RuleSet`) and searched in time linear in the text: each text
is searched whole in multi-line mode (CRLF and CR read as line ends), its first
MATCH_BYTES of UTF-8 at most. Texts are made valid Unicode first: a character
the header parser could not read is U+FFFD, which `.` matches like any other,
and a lone surrogate (from an odd charset codec) never reaches RE2, which takes
only UTF-8. This is CPU work for a worker thread (service.usecases.retrieval.
filtering runs `evaluate_all` in one), never for the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from functools import cached_property

import re2

from service.domain.filters import (
    ActionKind,
    Condition,
    FilterField,
    FilterOp,
    FilterRule,
    Verdict,
    compile_pattern,
    size_bytes,
)
from service.domain.message_index import header_block
from service.errors import InvalidInput

BODY_SCAN_BYTES = 256 * 1024
BODY_TEXT_CHARS = 64 * 1024
MATCH_BYTES = 64 * 1024
_FAILURES = (Exception, RecursionError)
_SPAM_FLAG = re.compile(rb"(?im)^x-spam-flag:[ \t]*yes\b")
_SPAM_STATUS = re.compile(rb"(?im)^x-spam-status:[ \t]*yes\b")


def is_spam_by_headers(raw: bytes) -> bool:
    """Upstream filters said spam: X-Spam-Flag: YES or X-Spam-Status: Yes, ... (SpamAssassin's
    headers, which most providers copy). Only the header block is read."""
    block = header_block(raw)
    return bool(_SPAM_FLAG.search(block) or _SPAM_STATUS.search(block))


class _Mail:
    """A message as the rules see it, parsed lazily and never raising."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @cached_property
    def headers(self) -> Message:
        try:
            return BytesParser(policy=policy.compat32).parsebytes(header_block(self.raw), headersonly=True)
        except _FAILURES:
            return Message()

    def header_values(self, name: str) -> list[str]:
        try:
            values = self.headers.get_all(name) or []
        except _FAILURES:
            return []
        texts = []
        for value in values:
            try:
                text = str(make_header(decode_header(value)))
            except _FAILURES:
                text = str(value)
            texts.append(" ".join(valid_text(text).split()))
        return texts

    def addresses(self, *names: str) -> list[str]:
        values = [v for name in names for v in self.header_values(name)]
        try:
            return [addr for _, addr in getaddresses(values) if addr]
        except _FAILURES:
            return []

    @cached_property
    def body(self) -> str:
        """The text parts (first BODY_SCAN_BYTES of the message), up to BODY_TEXT_CHARS characters."""
        head = len(header_block(self.raw))
        try:
            message = BytesParser(policy=policy.compat32).parsebytes(self.raw[:BODY_SCAN_BYTES])
            texts = []
            for part in message.walk():
                if part.get_content_maintype() != "text" or part.get_filename():
                    continue
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    texts.append(payload.decode(part.get_content_charset() or "utf-8", errors="replace"))
            text = "\n".join(texts)
        except _FAILURES:
            text = self.raw[head:BODY_SCAN_BYTES].decode("utf-8", errors="replace")
        return valid_text(text[:BODY_TEXT_CHARS])


def valid_text(text: str) -> str:
    """`text` as valid Unicode: surrogate escapes of raw bytes read as UTF-8 where they are UTF-8,
    every other unreadable piece as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "replace")
    return text


def _searchable(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")[:MATCH_BYTES]


class RuleSet:
    """Enabled rules with their patterns compiled once, for every message of a batch. A pattern
    RE2 refuses (one saved before patterns were checked with RE2) never matches."""

    def __init__(self, rules: Iterable[FilterRule]) -> None:
        self.rules = [rule for rule in rules if rule.enabled and rule.conditions]
        self.patterns: dict[str, re2._Regexp[str] | None] = {}
        for rule in self.rules:
            for condition in rule.conditions:
                if condition.op is FilterOp.MATCHES and condition.value not in self.patterns:
                    try:
                        self.patterns[condition.value] = compile_pattern(condition.value)
                    except InvalidInput:
                        self.patterns[condition.value] = None

    def _test(self, op: FilterOp, value: str, texts: Sequence[str]) -> bool:
        if op is FilterOp.MATCHES:
            pattern = self.patterns.get(value)
            return pattern is not None and any(pattern.search(_searchable(text)) for text in texts)
        wanted = value.casefold()
        if op is FilterOp.IS:
            return any(text.strip().casefold() == wanted for text in texts)
        return any(wanted in text.casefold() for text in texts)

    def _holds(self, condition: Condition, mail: _Mail) -> bool:
        kind, op, value = condition.field, condition.op, condition.value
        if kind is FilterField.SIZE:
            try:
                return len(mail.raw) > size_bytes(value)
            except InvalidInput:
                return False
        if kind is FilterField.BODY:
            return self._test(op, value, [mail.body])
        if kind is FilterField.SUBJECT:
            return self._test(op, value, mail.header_values("Subject"))
        if kind is FilterField.HEADER:
            return self._test(op, value, mail.header_values(condition.header))
        names = ("From",) if kind is FilterField.FROM else ("To", "Cc")
        texts = [v for name in names for v in mail.header_values(name)]
        if op is FilterOp.IS:  # "From is a@b" means the address, whatever the display name
            texts += mail.addresses(*names)
        return self._test(op, value, texts)

    def evaluate(self, raw: bytes) -> Verdict:
        """Apply the rules in order to one message (see the module docstring)."""
        mail = _Mail(raw)
        folder: str | None = None
        seen = flagged = False
        matched: list[str] = []
        for rule in self.rules:
            results = (self._holds(condition, mail) for condition in rule.conditions)
            if not (all(results) if rule.match_all else any(results)):
                continue
            matched.append(rule.name)
            kinds = {action.kind for action in rule.actions}
            if ActionKind.DELETE in kinds:
                return Verdict(deleted=True, matched=tuple(matched))
            for action in rule.actions:
                if action.kind is ActionKind.MOVE and folder is None:
                    folder = action.folder
            seen = seen or ActionKind.MARK_READ in kinds
            flagged = flagged or ActionKind.FLAG in kinds
            if ActionKind.STOP in kinds:
                break
        return Verdict(folder=folder, seen=seen, flagged=flagged, matched=tuple(matched))


def evaluate(rules: Sequence[FilterRule], raw: bytes) -> Verdict:
    """Apply enabled rules in order to one message."""
    return RuleSet(rules).evaluate(raw)


def evaluate_all(rules: Sequence[FilterRule], raws: Sequence[bytes | None]) -> list[Verdict]:
    """The verdict of each message of a batch (None: not to be filtered, an empty Verdict), the
    patterns compiled once. CPU-bound: call it in a worker thread."""
    rule_set = RuleSet(rules)
    if not rule_set.rules:
        return [Verdict() for _ in raws]
    return [Verdict() if raw is None else rule_set.evaluate(raw) for raw in raws]
