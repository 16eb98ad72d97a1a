r"""Content filters: the rule values (conditions, actions, order) and their checks.

A user's rules run in order on each message arriving in the Inbox from a task
with "Apply spam and content filtering" on (service.domain.filter_matching
applies them). A rule matches when all (or any) of its conditions hold; its
actions then apply: move to a folder (the first move wins), mark read, flag,
delete (nothing else matters after it), stop (later rules are not tried).

"matches" is a regular expression in RE2 syntax (https://github.com/google/re2/wiki/Syntax),
searched case-insensitively, each line on its own (^ and $ are the line's ends). RE2 matches
in time linear in the text, so no pattern a user saves can make a message take seconds, however
it nests its repetitions ((a|a)*c, (.|\s)*x): Python's `re` backtracks and would. What RE2
cannot do is refused when the rule is saved, in one sentence: backreferences (\1), lookarounds
((?=...), (?<!...)), possessive repeats, \Z (RE2 spells it \z). \d, \w and \b are ASCII-only
in RE2; \pL and friends give Unicode classes. A pattern is at most MAX_PATTERN characters, and
its compiled program at most MAX_PROGRAM instructions within PATTERN_MEMORY bytes (RE2's
max_mem): beyond that RE2 leaves its fast DFA and the constant of the linear time grows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import re2

from service.domain.values import SPECIAL_FOLDER_NAMES, SpecialUse
from service.errors import InvalidInput

MAX_PATTERN = 200
MAX_PROGRAM = 2000
PATTERN_MEMORY = 2 * 1024 * 1024
MAX_VALUE = 500
MAX_CONDITIONS = 20
MAX_ACTIONS = 10
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 3.6.8 field-name: printable ASCII but ":"
_SIZE = re.compile(r"(?i)\s*(\d{1,9})\s*(b|k|kb|m|mb)?\s*")


class FilterField(StrEnum):
    FROM = "from"
    TO_CC = "to_cc"
    SUBJECT = "subject"
    HEADER = "header"
    BODY = "body"
    SIZE = "size"


class FilterOp(StrEnum):
    CONTAINS = "contains"
    IS = "is"
    MATCHES = "matches"
    OVER = "over"


class ActionKind(StrEnum):
    MOVE = "move_to"
    MARK_READ = "mark_read"
    FLAG = "flag"
    DELETE = "delete"
    STOP = "stop"


FIELD_LABELS = {
    FilterField.FROM: "From",
    FilterField.TO_CC: "To or Cc",
    FilterField.SUBJECT: "Subject",
    FilterField.HEADER: "Header",
    FilterField.BODY: "Body",
    FilterField.SIZE: "Size",
}
OP_LABELS = {
    FilterOp.CONTAINS: "contains",
    FilterOp.IS: "is",
    FilterOp.MATCHES: "matches the pattern",
    FilterOp.OVER: "is over",
}
ACTION_LABELS = {
    ActionKind.MOVE: "Move to folder",
    ActionKind.MARK_READ: "Mark as read",
    ActionKind.FLAG: "Flag",
    ActionKind.DELETE: "Delete",
    ActionKind.STOP: "Stop processing more filters",
}


@dataclass(frozen=True, slots=True)
class Condition:
    """`field` `op` `value`; `header` names the header when `field` is HEADER; size values are KB
    unless they say B, KB or MB."""

    field: FilterField
    op: FilterOp
    value: str
    header: str = ""

    def describe(self) -> str:
        subject = self.header if self.field is FilterField.HEADER else FIELD_LABELS[self.field]
        return f'{subject} {OP_LABELS[self.op]} "{self.value}"'


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    folder: str = ""

    def describe(self) -> str:
        return f"Move to {self.folder}" if self.kind is ActionKind.MOVE else ACTION_LABELS[self.kind]


@dataclass(frozen=True, slots=True)
class FilterRule:
    name: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    match_all: bool = True
    enabled: bool = True
    id: int | None = None
    position: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules decided: a folder path (None: stay in the Inbox), flags, or deletion."""

    folder: str | None = None
    seen: bool = False
    flagged: bool = False
    deleted: bool = False
    matched: tuple[str, ...] = field(default=())


def size_bytes(value: str) -> int:
    """A size as typed ("500", "500 KB", "2MB", "100 B") in bytes; a bare number is KB."""
    match = _SIZE.fullmatch(value)
    if match is None:
        raise InvalidInput(f'"{value}" is not a size: write a number of KB, or add B, KB or MB.')
    unit = (match.group(2) or "k").lower()[0]
    return int(match.group(1)) * {"b": 1, "k": 1024, "m": 1024 * 1024}[unit]


def check_folder_path(path: str) -> str:
    """A folder path for "Move to folder": "/" between levels, no control characters, not the Outbox."""
    parts = [part.strip() for part in path.split("/") if part.strip()]
    cleaned = "/".join(parts)
    if not cleaned:
        raise InvalidInput('"Move to folder" needs a folder.')
    if len(cleaned) > 1000 or any(ord(c) < 32 or ord(c) == 127 for c in cleaned):
        raise InvalidInput(f'"{cleaned[:60]}" cannot be a folder name.')
    special = {name.casefold(): name for name in SPECIAL_FOLDER_NAMES.values()}
    cleaned = special.get(cleaned.casefold(), cleaned)
    if cleaned == SPECIAL_FOLDER_NAMES[SpecialUse.OUTBOX]:
        raise InvalidInput("Filters cannot move messages into the Outbox.")
    return cleaned


def _pattern_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.never_nl = True  # lines are searched on their own: nothing matches across a line break
    options.max_mem = PATTERN_MEMORY
    options.never_capture = True  # a yes or no is all filters ask: groups would cost time, not help
    options.log_errors = False  # the reason goes to the user, not to stderr
    return options


def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """A user's pattern compiled by RE2 in multi-line mode (^ and $ at each line's ends), or
    InvalidInput saying in one sentence why it cannot be used."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidInput(f"A pattern may be at most {MAX_PATTERN} characters long.")
    if not _is_text(pattern):
        raise InvalidInput("A pattern must be text (it holds a character that is not).")
    try:
        compiled = re2.compile("(?m)" + pattern, _pattern_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise InvalidInput(
            f'The pattern "{pattern}" cannot be used: RE2, the engine filters match with, reports '
            f'"{reason.replace("(?m)", "")}" (it has no backreferences such as \\1 and no lookarounds '
            "such as (?=...) or (?<!...))."
        ) from exc
    if compiled.programsize > MAX_PROGRAM:
        raise InvalidInput(
            f'The pattern "{pattern}" is too complex to match quickly: use fewer or smaller {{n}} repeats, '
            "or a narrower class than \\pL."
        )
    return compiled


def check_pattern(pattern: str) -> None:
    """Refuse a pattern filters cannot use (see the module docstring), with the reason."""
    compile_pattern(pattern)


def _is_text(value: str) -> bool:
    """False for a string with lone surrogates (a JSON "\\ud800"): no database and no UTF-8 takes it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_rule(rule: FilterRule) -> FilterRule:
    """The rule as it will be stored (values trimmed), or InvalidInput saying what to correct."""
    name = " ".join(rule.name.split())
    if not name:
        raise InvalidInput("Give the filter a name.")
    if len(name) > 200:
        raise InvalidInput("A filter name may be at most 200 characters long.")
    if not _is_text(name) or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):  # PostgreSQL refuses NUL
        raise InvalidInput("A filter name cannot contain control characters.")
    if not rule.conditions:
        raise InvalidInput("A filter needs at least one condition.")
    if not rule.actions:
        raise InvalidInput("A filter needs at least one action.")
    if len(rule.conditions) > MAX_CONDITIONS or len(rule.actions) > MAX_ACTIONS:
        raise InvalidInput(f"A filter may have at most {MAX_CONDITIONS} conditions and {MAX_ACTIONS} actions.")
    return FilterRule(
        name=name,
        conditions=tuple(_check_condition(c) for c in rule.conditions),
        actions=tuple(_check_action(a) for a in rule.actions),
        match_all=rule.match_all,
        enabled=rule.enabled,
        id=rule.id,
        position=rule.position,
    )


def _check_condition(condition: Condition) -> Condition:
    value = condition.value.strip()
    header = condition.header.strip()
    if condition.field is FilterField.SIZE:
        if condition.op is not FilterOp.OVER:
            raise InvalidInput('Size can only be compared with "is over".')
        size_bytes(value)
        return Condition(condition.field, condition.op, value)
    if condition.op is FilterOp.OVER:
        raise InvalidInput('"is over" only applies to Size.')
    if not value:
        raise InvalidInput(f"The condition on {FIELD_LABELS[condition.field]} needs a value.")
    if len(value) > MAX_VALUE or any(c in value for c in "\r\n\0") or not _is_text(value + header):
        raise InvalidInput(f"A condition value must be one line of at most {MAX_VALUE} characters.")
    if condition.field is FilterField.HEADER:
        if not _HEADER_NAME.fullmatch(header):
            raise InvalidInput(f'"{header}" is not a header name (for example List-Id or X-Mailer).')
    else:
        header = ""
    if condition.op is FilterOp.MATCHES:
        check_pattern(value)
    return Condition(condition.field, condition.op, value, header)


def _check_action(action: Action) -> Action:
    if action.kind is ActionKind.MOVE:
        return Action(action.kind, check_folder_path(action.folder))
    return Action(action.kind)
