"""Settings, Filters: the user's content filters in order, New Filter, Edit, Delete, Move up/down
and turning a filter on or off. Every change is a plain form POST with its CSRF token, answered
by a redirect to the list with a flash message; another user's filter answers 404.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from service.domain.filters import FilterRule
from service.domain.users import UserView
from service.errors import InvalidInput
from service.persistence.database import Database
from service.usecases import filters
from web.controllers.settings import present
from web.controllers.settings.common import AnyRequest, flash, is_htmx, pop_flash
from web.controllers.settings.filters_form import ACTION_CHOICES, FIELD_CHOICES, OP_CHOICES, FilterForm
from web.support.rendering import page, see_other

LIST = "/settings/filters"
NEW = "/settings/filters/new"


def _back(request: AnyRequest, text: str, rule_id: int | None = None) -> Response[Any]:
    flash(request, present.Message("ok", text))
    path = LIST + (f"#filter-{rule_id}" if rule_id is not None else "")
    if is_htmx(request):  # Delete asks for confirmation through htmx: a full-page redirect
        return Response(content=b"", status_code=200, headers={"HX-Redirect": path})
    return see_other(path)


async def _form_page(
    db: Database,
    user: UserView,
    form: FilterForm,
    *,
    rule_id: int | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response[Any]:
    return page(
        "settings/filter_form.html",
        viewer=user,
        status_code=status_code,
        nav="settings",
        heading="New Filter" if rule_id is None else "Edit Filter",
        action=NEW if rule_id is None else f"{LIST}/{rule_id}/edit",
        form=form.padded(),
        error=error,
        fields=FIELD_CHOICES,
        ops=OP_CHOICES,
        action_kinds=ACTION_CHOICES,
        folders=await filters.folder_choices(db=db, user_id=user.id),
    )


@get(LIST, name="settings-filters")
async def filters_page(request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]) -> Template:
    rules = await filters.list_rules(db=db, user_id=user.id)
    return page(
        "settings/filters.html",
        viewer=user,
        nav="settings",
        section="filters",
        flash=pop_flash(request),
        rules=rules,
        last=len(rules) - 1,
    )


@get(NEW, name="filter-new")
async def new_filter(db: NamedDependency[Database], user: NamedDependency[UserView]) -> Response[Any]:
    return await _form_page(db, user, FilterForm.blank())


async def _save(
    request: AnyRequest, db: Database, user: UserView, rule_id: int | None
) -> tuple[FilterRule | None, Response[Any] | None]:
    form = await FilterForm.posted(request)
    rule, problem = form.rule()
    try:
        if rule is None:
            raise InvalidInput(problem or "Some fields need your attention.")
        if rule_id is None:
            return await filters.create_rule(db=db, user_id=user.id, rule=rule), None
        return await filters.update_rule(db=db, user_id=user.id, rule_id=rule_id, rule=rule), None
    except InvalidInput as exc:
        return None, await _form_page(db, user, form, rule_id=rule_id, error=exc.message, status_code=400)


@post(NEW)
async def create_filter(
    request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    saved, refused = await _save(request, db, user, None)
    if refused is not None or saved is None:
        assert refused is not None
        return refused
    return _back(request, f"Saved the filter {saved.name}.", saved.id)


@get(LIST + "/{rule_id:int}/edit", name="filter-edit")
async def edit_filter(
    rule_id: FromPath[int], db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    rule = await filters.get_rule(db=db, user_id=user.id, rule_id=rule_id)
    return await _form_page(db, user, FilterForm.of(rule), rule_id=rule_id)


@post(LIST + "/{rule_id:int}/edit")
async def save_filter(
    rule_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    await filters.get_rule(db=db, user_id=user.id, rule_id=rule_id)  # NotFound before reading the form
    saved, refused = await _save(request, db, user, rule_id)
    if refused is not None or saved is None:
        assert refused is not None
        return refused
    return _back(request, f"Saved the filter {saved.name}.", saved.id)


@post(LIST + "/{rule_id:int}/delete", name="filter-delete")
async def delete_filter(
    rule_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    gone = await filters.delete_rule(db=db, user_id=user.id, rule_id=rule_id)
    return _back(request, f"Deleted the filter {gone.name}.")


async def _move(request: AnyRequest, db: Database, user: UserView, rule_id: int, *, up: bool) -> Response[Any]:
    moved = await filters.move_rule(db=db, user_id=user.id, rule_id=rule_id, up=up)
    return _back(request, f"Moved the filter {moved.name} {'up' if up else 'down'}.", rule_id)


async def _switch(request: AnyRequest, db: Database, user: UserView, rule_id: int, *, on: bool) -> Response[Any]:
    rule = await filters.set_enabled(db=db, user_id=user.id, rule_id=rule_id, enabled=on)
    return _back(request, f"Turned the filter {rule.name} {'on' if on else 'off'}.", rule_id)


@post(LIST + "/{rule_id:int}/up", name="filter-up")
async def move_up(
    rule_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    return await _move(request, db, user, rule_id, up=True)


@post(LIST + "/{rule_id:int}/down", name="filter-down")
async def move_down(
    rule_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    return await _move(request, db, user, rule_id, up=False)


@post(LIST + "/{rule_id:int}/enable", name="filter-enable")
async def turn_on(
    rule_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    return await _switch(request, db, user, rule_id, on=True)


@post(LIST + "/{rule_id:int}/disable", name="filter-disable")
async def turn_off(
    rule_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    return await _switch(request, db, user, rule_id, on=False)


ROUTES = [
    filters_page,
    new_filter,
    create_filter,
    edit_filter,
    save_filter,
    delete_filter,
    move_up,
    move_down,
    turn_on,
    turn_off,
]
