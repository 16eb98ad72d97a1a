"""A user's content filters (Settings, Filters): list, create, edit, delete, enable and reorder.

Rules are checked with service.domain.filters before they are stored, so retrieval
only ever reads valid rules; every query is scoped by user id, and another user's
rule looks like a missing one (NotFound). `enabled_rules` reads them for retrieval's
screening of a batch, in the caller's (short, read) transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule, check_rule
from service.domain.values import SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.tables import FilterRuleRow, Folder
from service.persistence.types import utcnow

MAX_RULES = 200
_MISSING = "This filter does not exist."


def _conditions_json(conditions: Sequence[Condition]) -> str:
    return json.dumps(
        [{"field": c.field.value, "op": c.op.value, "value": c.value, "header": c.header} for c in conditions]
    )


def _actions_json(actions: Sequence[Action]) -> str:
    return json.dumps([{"kind": a.kind.value, "folder": a.folder} for a in actions])


def _decode(text: str) -> list[dict[str, Any]]:
    try:
        items = json.loads(text)
    except ValueError:
        return []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def to_rule(row: FilterRuleRow) -> FilterRule:
    """The domain value of a stored rule; entries that no longer read are dropped (never matched)."""
    conditions = []
    for item in _decode(row.conditions):
        try:
            conditions.append(
                Condition(
                    FilterField(item["field"]), FilterOp(item["op"]), str(item["value"]), str(item.get("header", ""))
                )
            )
        except (KeyError, ValueError):
            continue
    actions = []
    for item in _decode(row.actions):
        try:
            actions.append(Action(ActionKind(item["kind"]), str(item.get("folder", ""))))
        except (KeyError, ValueError):
            continue
    return FilterRule(
        name=row.name,
        conditions=tuple(conditions),
        actions=tuple(actions),
        match_all=row.match_all,
        enabled=row.enabled,
        id=row.id,
        position=row.position,
    )


async def _rows(session: AsyncSession, user_id: int) -> list[FilterRuleRow]:
    query = (
        select(FilterRuleRow)
        .where(FilterRuleRow.user_id == user_id)
        .order_by(col(FilterRuleRow.position), col(FilterRuleRow.id))
    )
    return list((await session.exec(query)).all())


async def _row(session: AsyncSession, user_id: int, rule_id: int) -> FilterRuleRow:
    row = (
        await session.exec(select(FilterRuleRow).where(FilterRuleRow.id == rule_id, FilterRuleRow.user_id == user_id))
    ).first()
    if row is None:
        raise NotFound(_MISSING)
    return row


async def enabled_rules(session: AsyncSession, user_id: int) -> list[FilterRule]:
    """The user's enabled rules in order, in the caller's transaction (one query)."""
    query = (
        select(FilterRuleRow)
        .where(FilterRuleRow.user_id == user_id, col(FilterRuleRow.enabled).is_(True))
        .order_by(col(FilterRuleRow.position), col(FilterRuleRow.id))
    )
    return [to_rule(row) for row in (await session.exec(query)).all()]


async def list_rules(*, db: Database, user_id: int) -> list[FilterRule]:
    async with db.read() as session:
        return [to_rule(row) for row in await _rows(session, user_id)]


async def get_rule(*, db: Database, user_id: int, rule_id: int) -> FilterRule:
    async with db.read() as session:
        return to_rule(await _row(session, user_id, rule_id))


async def create_rule(*, db: Database, user_id: int, rule: FilterRule) -> FilterRule:
    """A new rule, last in the order (InvalidInput says what to correct)."""
    checked = check_rule(rule)
    async with db.write() as session:
        rows = await _rows(session, user_id)
        if len(rows) >= MAX_RULES:
            raise InvalidInput(f"You have {MAX_RULES} filters, the most there can be. Delete one first.")
        row = FilterRuleRow(
            user_id=user_id,
            position=(rows[-1].position + 1) if rows else 0,
            name=checked.name,
            enabled=checked.enabled,
            match_all=checked.match_all,
            conditions=_conditions_json(checked.conditions),
            actions=_actions_json(checked.actions),
        )
        session.add(row)
        await session.flush()
        return to_rule(row)


async def update_rule(*, db: Database, user_id: int, rule_id: int, rule: FilterRule) -> FilterRule:
    """Replace a rule's name, switches, conditions and actions; its place in the order stays."""
    checked = check_rule(rule)
    async with db.write() as session:
        row = await _row(session, user_id, rule_id)
        row.name = checked.name
        row.enabled = checked.enabled
        row.match_all = checked.match_all
        row.conditions = _conditions_json(checked.conditions)
        row.actions = _actions_json(checked.actions)
        row.updated_at = utcnow()
        session.add(row)
        await session.flush()
        return to_rule(row)


async def set_enabled(*, db: Database, user_id: int, rule_id: int, enabled: bool) -> FilterRule:
    async with db.write() as session:
        row = await _row(session, user_id, rule_id)
        row.enabled = enabled
        row.updated_at = utcnow()
        session.add(row)
        await session.flush()
        return to_rule(row)


async def delete_rule(*, db: Database, user_id: int, rule_id: int) -> FilterRule:
    """Delete a rule; returns what it was (for the confirmation)."""
    async with db.write() as session:
        row = await _row(session, user_id, rule_id)
        gone = to_rule(row)
        await session.delete(row)
        return gone


async def move_rule(*, db: Database, user_id: int, rule_id: int, up: bool) -> FilterRule:
    """Swap a rule with the one before it (`up`) or after it; at either end nothing changes.
    Positions are renumbered 0..n-1 on the way."""
    async with db.write() as session:
        rows = await _rows(session, user_id)
        index = next((i for i, row in enumerate(rows) if row.id == rule_id), None)
        if index is None:
            raise NotFound(_MISSING)
        other = index - 1 if up else index + 1
        if 0 <= other < len(rows):
            rows[index], rows[other] = rows[other], rows[index]
        for position, row in enumerate(rows):
            if row.position != position:
                row.position = position
                session.add(row)
        await session.flush()
        return to_rule(rows[other] if 0 <= other < len(rows) else rows[index])


async def folder_choices(*, db: Database, user_id: int) -> list[str]:
    """The user's folder paths for "Move to folder" (the Outbox is no destination)."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Folder.path, Folder.special_use).where(Folder.user_id == user_id).order_by(col(Folder.path))
            )
        ).all()
    return [path for path, use in rows if use is not SpecialUse.OUTBOX]
