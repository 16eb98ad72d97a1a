"""Content filters: the rule values (conditions, actions, order) and their checks.

A user's rules run in order on each message arriving in the Inbox from a task
with "Apply spam and content filtering" on (service.domain.filter_matching
applies them). A rule matches when all (or any) of its conditions hold; its
actions then apply: move to a folder (the first move wins), mark read, flag,
delete (nothing else matters after it), stop (later rules are not tried).

"matches" is a regular expression, searched case-insensitively. Python's `re`
backtracks and cannot be interrupted, and rules run inside the commit's
transaction, so patterns are bounded when saved: at most MAX_PATTERN
characters, no nested repetition (the catastrophic (a+)+ shape), at most one
unbounded repetition (*, +, {n,} or a large {m,n}). With the length limits of
the searched texts (filter_matching) the worst case is quadratic in one short
line: milliseconds a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from service.domain.values import SPECIAL_FOLDER_NAMES, SpecialUse
from service.errors import InvalidInput

MAX_PATTERN = 200
MAX_REPEATS = 1
MAX_VALUE = 500
MAX_CONDITIONS = 20
MAX_ACTIONS = 10
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 3.6.8 field-name: printable ASCII but ":"
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")
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


def check_pattern(pattern: str) -> None:
    if len(pattern) > MAX_PATTERN:
        raise InvalidInput(f"A pattern may be at most {MAX_PATTERN} characters long.")
    if _NESTED_REPEAT.search(pattern) or _unbounded_repeats(pattern) > MAX_REPEATS:
        raise InvalidInput(
            f'The pattern "{pattern}" repeats too much, which can take very long to match: use *, + or {{n,}} '
            "once at most, and never around a group that repeats (like (a+)+). A pattern matches anywhere in "
            "the text, so a leading or trailing .* is never needed."
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidInput(f'The pattern "{pattern}" is not a valid regular expression: {exc}.') from exc


def _unbounded_repeats(pattern: str) -> int:
    """How many *, + and {n,} a pattern has outside character classes (escapes skipped)."""
    count, index, in_class = 0, 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += 2 if pattern.startswith("]", index + 1) or pattern.startswith("^]", index + 1) else 0
        elif char in "*+":
            count += 1
        elif char == "{":
            bounds = re.match(r"\{(\d*),(\d*)\}", pattern[index:])
            count += bool(bounds and (not bounds.group(2) or int(bounds.group(2)) > 20))
        index += 1
    return count


def check_rule(rule: FilterRule) -> FilterRule:
    """The rule as it will be stored (values trimmed), or InvalidInput saying what to correct."""
    name = " ".join(rule.name.split())
    if not name:
        raise InvalidInput("Give the filter a name.")
    if len(name) > 200:
        raise InvalidInput("A filter name may be at most 200 characters long.")
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
    if len(value) > MAX_VALUE or any(c in value for c in "\r\n\0"):
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
