"""Settings, Filters through the web face: New Filter, the list in order, Edit, Move up/down,
Turn off, Delete, mistakes explained on the form, CSRF on every form, and other users' filters."""

from __future__ import annotations

import re

import httpx

from service.persistence.database import Database
from service.usecases import filters
from service.usecases.users import find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, csrf_token, post_form, set_up_admin
from tests.settings_web import htmx_post, sign_in_as_other_user, text_of
from web.support.csrf import CSRF_HEADER

Fields = dict[str, str | list[str]]


async def post_rows(client: WebClient, path: str, fields: Fields) -> httpx.Response:
    """A form POST whose rows repeat field names (cond_field, cond_op ...), with the CSRF token."""
    return await client.post(path, data={"_csrf_token": await csrf_token(client), **fields})


def filter_fields(name: str, **extra: str | list[str]) -> Fields:
    fields: Fields = {
        "name": name,
        "enabled": "on",
        "match": "all",
        "cond_field": ["subject", "from"],
        "cond_header": ["", ""],
        "cond_op": ["contains", "contains"],
        "cond_value": [name.lower(), ""],  # the second row is left empty
        "action_kind": ["move_to", "mark_read", ""],
        "action_folder": [f"Lists/{name}", "", ""],
    }
    fields.update(extra)
    return fields


async def create(client: WebClient, name: str, **extra: str | list[str]) -> int:
    response = await post_rows(client, "/settings/filters/new", filter_fields(name, **extra))
    assert response.status_code == 303, text_of(response.text)
    match = re.fullmatch(r"/settings/filters#filter-(\d+)", response.headers["location"])
    assert match is not None
    return int(match.group(1))


def order(page: str) -> list[str]:
    return re.findall(r'<h3 class="conn-title" id="filter-\d+-title">([^<]+)</h3>', page)


async def test_filters_are_created_listed_reordered_switched_and_deleted(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    settings = await web_client.get("/settings/connectivity")
    assert '<a href="/settings/filters">Filters</a>' in settings.text
    empty = await web_client.get("/settings/filters")
    assert empty.status_code == 200
    assert "No filters yet." in text_of(empty.text)
    form = await web_client.get("/settings/filters/new")
    assert form.status_code == 200
    for label in ("Looks at", "Comparison", "Value", "Header name", "Action 1", "Folder"):
        assert label in form.text
    assert "Inbox" in form.text
    assert '<option value="Outbox">' not in form.text

    news = await create(web_client, "News")
    boss = await create(
        web_client,
        "Boss",
        cond_field=["from"],
        cond_op=["is"],
        cond_value=["boss@example.test"],
        action_kind=["flag", "stop"],
        action_folder=["", ""],
    )
    listed = await web_client.get("/settings/filters")
    shown = text_of(listed.text)
    assert "Saved the filter Boss." in shown
    assert order(listed.text) == ["News", "Boss"]
    assert 'If all of: Subject contains "news" → Move to Lists/News, Mark as read' in shown
    assert 'From is "boss@example.test" → Flag, Stop processing more filters' in shown

    assert (await post_form(web_client, f"/settings/filters/{boss}/up", {})).status_code == 303
    assert order((await web_client.get("/settings/filters")).text) == ["Boss", "News"]
    await post_form(web_client, f"/settings/filters/{boss}/down", {})
    assert order((await web_client.get("/settings/filters")).text) == ["News", "Boss"]

    await post_form(web_client, f"/settings/filters/{news}/disable", {})
    admin = await find_user(db=db, email=ADMIN_EMAIL)
    assert [r.enabled for r in await filters.list_rules(db=db, user_id=admin.id)] == [False, True]

    edit = await web_client.get(f"/settings/filters/{news}/edit")
    assert 'value="Lists/News"' in edit.text
    saved = await post_rows(web_client, f"/settings/filters/{news}/edit", filter_fields("Newsletters", match="any"))
    assert saved.status_code == 303
    [first, _] = await filters.list_rules(db=db, user_id=admin.id)
    assert (first.name, first.match_all, first.enabled, first.actions[0].folder) == (
        "Newsletters",
        False,
        True,
        "Lists/Newsletters",
    )

    deleted = await htmx_post(web_client, f"/settings/filters/{news}/delete")
    assert deleted.headers["HX-Redirect"] == "/settings/filters"
    page = await web_client.get("/settings/filters")
    assert "Deleted the filter Newsletters." in text_of(page.text)
    assert order(page.text) == ["Boss"]


async def test_mistakes_are_explained_on_the_form(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    for fields, message in [
        (
            filter_fields("Bad", cond_op=["matches", "contains"], cond_value=["(a)\\1", ""]),
            "RE2, the engine filters match with, reports",
        ),
        (filter_fields(""), "Give the filter a name."),
        (filter_fields("NoCond", cond_value=["", ""]), "A filter needs at least one condition."),
        (filter_fields("NoFolder", action_folder=["", "", ""]), '"Move to folder" needs a folder.'),
        (filter_fields("Odd", cond_field=["nonsense", "from"]), "Choose what each condition looks at"),
    ]:
        response = await post_rows(web_client, "/settings/filters/new", fields)
        assert response.status_code == 400
        assert message in text_of(response.text)
    assert 'value="Odd"' in response.text  # what was typed stays


async def test_every_filter_form_needs_its_csrf_token(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    rule_id = await create(web_client, "News")
    for path in [
        "/settings/filters/new",
        f"/settings/filters/{rule_id}/edit",
        f"/settings/filters/{rule_id}/up",
        f"/settings/filters/{rule_id}/disable",
        f"/settings/filters/{rule_id}/delete",
    ]:
        response = await web_client.post(path, data=filter_fields("Forged"))
        assert response.status_code == 403, path
    assert order((await web_client.get("/settings/filters")).text) == ["News"]


async def test_another_users_filters_are_not_found(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    rule_id = await create(web_client, "News")
    await sign_in_as_other_user(web_client, db)
    assert order((await web_client.get("/settings/filters")).text) == []
    assert (await web_client.get(f"/settings/filters/{rule_id}/edit")).status_code == 404
    for action in ("delete", "up", "disable"):
        assert (await post_form(web_client, f"/settings/filters/{rule_id}/{action}", {})).status_code == 404
    assert (await post_rows(web_client, f"/settings/filters/{rule_id}/edit", filter_fields("Mine"))).status_code == 404


async def test_the_json_api_manages_filters_too(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    headers = {CSRF_HEADER: await csrf_token(web_client)}
    body = {
        "name": "Lists",
        "conditions": [{"field": "header", "header": "List-Id", "op": "contains", "value": "example"}],
        "actions": [{"kind": "move_to", "folder": "lists"}, {"kind": "stop"}],
    }
    created = await web_client.post("/api/v1/filters", json=body, headers=headers)
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["actions"][0] == {"kind": "move_to", "folder": "lists"}
    second = (await web_client.post("/api/v1/filters", json={**body, "name": "Two"}, headers=headers)).json()
    moved = await web_client.post(f"/api/v1/filters/{second['id']}/move", json={"up": True}, headers=headers)
    assert [f["name"] for f in moved.json()] == ["Two", "Lists"]
    bad = {**body, "conditions": [{"field": "subject", "op": "matches", "value": "(x)(?=y)"}]}
    refused = await web_client.put(f"/api/v1/filters/{first['id']}", json=bad, headers=headers)
    assert refused.status_code == 400
    assert "no lookarounds such as (?=...)" in refused.json()["error"]
    nested = {**body, "conditions": [{"field": "subject", "op": "matches", "value": "(x+)+y"}]}
    accepted = await web_client.put(f"/api/v1/filters/{first['id']}", json=nested, headers=headers)
    assert accepted.status_code == 200, accepted.text  # RE2 runs it in linear time
    forged = await web_client.delete(f"/api/v1/filters/{first['id']}")
    assert forged.status_code == 403
    assert (await web_client.delete(f"/api/v1/filters/{first['id']}", headers=headers)).status_code == 204
    assert [f["name"] for f in (await web_client.get("/api/v1/filters")).json()] == ["Two"]
