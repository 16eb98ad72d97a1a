"""/api/v1/filters: Settings, Filters as JSON (service.usecases.filters).

GET    /filters              list, in the order they run
POST   /filters              create, last in the order (201)
GET    /filters/{id}         one
PUT    /filters/{id}         replace name, switches, conditions and actions (its place stays)
DELETE /filters/{id}         delete (204)
POST   /filters/{id}/move    {"up": true} or {"up": false}: swap with the neighbour
"""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule
from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases import filters
from web.controllers.api.contract import reads, writes
from web.controllers.api.schemas import IdParam


class ConditionIO(msgspec.Struct):
    """`field` `op` `value`; `header` names the header when `field` is "header". Size values are KB
    unless they end in B, KB or MB; "matches" is a regular expression."""

    field: FilterField
    op: FilterOp
    value: str
    header: str = ""


class ActionIO(msgspec.Struct):
    """`folder` is the path for "move_to" ("A/B" nests; created on delivery)."""

    kind: ActionKind
    folder: str = ""


class FilterIn(msgspec.Struct):
    name: str
    conditions: list[ConditionIO]
    actions: list[ActionIO]
    match_all: bool = True
    enabled: bool = True

    def rule(self) -> FilterRule:
        return FilterRule(
            name=self.name,
            conditions=tuple(Condition(c.field, c.op, c.value, c.header) for c in self.conditions),
            actions=tuple(Action(a.kind, a.folder) for a in self.actions),
            match_all=self.match_all,
            enabled=self.enabled,
        )


class FilterOut(msgspec.Struct):
    id: int
    position: int
    name: str
    enabled: bool
    match_all: bool
    conditions: list[ConditionIO]
    actions: list[ActionIO]

    @classmethod
    def from_rule(cls, rule: FilterRule) -> FilterOut:
        assert rule.id is not None
        return cls(
            id=rule.id,
            position=rule.position,
            name=rule.name,
            enabled=rule.enabled,
            match_all=rule.match_all,
            conditions=[ConditionIO(c.field, c.op, c.value, c.header) for c in rule.conditions],
            actions=[ActionIO(a.kind, a.folder) for a in rule.actions],
        )


class MoveFilterIn(msgspec.Struct):
    up: bool


class FiltersController(Controller):
    path = "/filters"
    tags = ["Filters"]

    @get("/", **reads())
    async def list_filters(self, db: NamedDependency[Database], user: NamedDependency[UserView]) -> list[FilterOut]:
        return [FilterOut.from_rule(rule) for rule in await filters.list_rules(db=db, user_id=user.id)]

    @post("/", **writes(400, body=True))
    async def create_filter(
        self, data: JSONBody[FilterIn], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> FilterOut:
        return FilterOut.from_rule(await filters.create_rule(db=db, user_id=user.id, rule=data.rule()))

    @get("/{rule_id:int}", **reads(400, 404))
    async def get_filter(
        self, rule_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> FilterOut:
        return FilterOut.from_rule(await filters.get_rule(db=db, user_id=user.id, rule_id=rule_id))

    @put("/{rule_id:int}", **writes(400, 404, body=True))
    async def update_filter(
        self,
        rule_id: FromPath[IdParam],
        data: JSONBody[FilterIn],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> FilterOut:
        saved = await filters.update_rule(db=db, user_id=user.id, rule_id=rule_id, rule=data.rule())
        return FilterOut.from_rule(saved)

    @delete("/{rule_id:int}", **writes(400, 404))
    async def delete_filter(
        self, rule_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> None:
        await filters.delete_rule(db=db, user_id=user.id, rule_id=rule_id)

    @post("/{rule_id:int}/move", status_code=200, **writes(400, 404, body=True))
    async def move_filter(
        self,
        rule_id: FromPath[IdParam],
        data: JSONBody[MoveFilterIn],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> list[FilterOut]:
        """Returns every filter in its new order."""
        await filters.move_rule(db=db, user_id=user.id, rule_id=rule_id, up=data.up)
        return [FilterOut.from_rule(rule) for rule in await filters.list_rules(db=db, user_id=user.id)]
