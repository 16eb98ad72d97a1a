"""The "Filter" form (Settings, Filters): what it posts, how it is read into a FilterRule, and
how a saved rule fills it for "Edit".

Conditions and actions are rows of same-named fields (cond_field, cond_header, cond_op,
cond_value; action_kind, action_folder), read in order; a row left empty is ignored. The
domain's check_rule says what is wrong, in words for the form's error line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Request

from service.domain.filters import (
    ACTION_LABELS,
    FIELD_LABELS,
    MAX_ACTIONS,
    MAX_CONDITIONS,
    OP_LABELS,
    Action,
    ActionKind,
    Condition,
    FilterField,
    FilterOp,
    FilterRule,
)

CONDITION_ROWS = 4
ACTION_ROWS = 3
FIELD_CHOICES = [(f.value, label) for f, label in FIELD_LABELS.items()]
OP_CHOICES = [(o.value, label) for o, label in OP_LABELS.items()]
ACTION_CHOICES = [("", "(no action)")] + [(a.value, label) for a, label in ACTION_LABELS.items()]


@dataclass
class ConditionRow:
    field: str = FilterField.FROM.value
    header: str = ""
    op: str = FilterOp.CONTAINS.value
    value: str = ""


@dataclass
class ActionRow:
    kind: str = ""
    folder: str = ""


@dataclass
class FilterForm:
    """Every field as typed; rows padded with blank ones so there is room to add more."""

    name: str = ""
    enabled: bool = True
    match: str = "all"
    conditions: list[ConditionRow] = field(default_factory=list)
    actions: list[ActionRow] = field(default_factory=list)

    def padded(self) -> FilterForm:
        spare_conditions = max(CONDITION_ROWS - len(self.conditions), 1)
        spare_actions = max(ACTION_ROWS - len(self.actions), 1)
        return FilterForm(
            name=self.name,
            enabled=self.enabled,
            match=self.match,
            conditions=[*self.conditions, *(ConditionRow() for _ in range(spare_conditions))][:MAX_CONDITIONS],
            actions=[*self.actions, *(ActionRow() for _ in range(spare_actions))][:MAX_ACTIONS],
        )

    @classmethod
    def blank(cls) -> FilterForm:
        return cls(actions=[ActionRow(ActionKind.MOVE.value)]).padded()

    @classmethod
    def of(cls, rule: FilterRule) -> FilterForm:
        return cls(
            name=rule.name,
            enabled=rule.enabled,
            match="all" if rule.match_all else "any",
            conditions=[ConditionRow(c.field.value, c.header, c.op.value, c.value) for c in rule.conditions],
            actions=[ActionRow(a.kind.value, a.folder) for a in rule.actions],
        ).padded()

    @classmethod
    async def posted(cls, request: Request[Any, Any, Any]) -> FilterForm:
        form = await request.form()

        def texts(name: str) -> list[str]:
            return [value if isinstance(value, str) else "" for value in form.getall(name, [])]

        columns = [texts(name) for name in ("cond_field", "cond_header", "cond_op", "cond_value")]
        rows = max((len(column) for column in columns), default=0)
        conditions = [ConditionRow(*(column[i] if i < len(column) else "" for column in columns)) for i in range(rows)]
        kinds, folders = texts("action_kind"), texts("action_folder")
        actions = [ActionRow(kind, folders[i] if i < len(folders) else "") for i, kind in enumerate(kinds)]
        name = form.get("name", "")
        return cls(
            name=name if isinstance(name, str) else "",
            enabled=form.get("enabled", "") not in ("", "off"),
            match="any" if form.get("match") == "any" else "all",
            conditions=[row for row in conditions if row.value.strip() or row.header.strip()][: MAX_CONDITIONS + 1],
            actions=[row for row in actions if row.kind][: MAX_ACTIONS + 1],
        )

    def rule(self) -> tuple[FilterRule | None, str | None]:
        """The rule to save, or the reason the form cannot be read as one."""
        conditions = []
        for condition in self.conditions:
            try:
                conditions.append(
                    Condition(FilterField(condition.field), FilterOp(condition.op), condition.value, condition.header)
                )
            except ValueError:
                return None, "Choose what each condition looks at and how it compares."
        actions = []
        for row in self.actions:
            try:
                actions.append(Action(ActionKind(row.kind), row.folder))
            except ValueError:
                return None, "Choose an action from the list."
        rule = FilterRule(
            name=self.name,
            conditions=tuple(conditions),
            actions=tuple(actions),
            match_all=self.match != "any",
            enabled=self.enabled,
        )
        return rule, None
