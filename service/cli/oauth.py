"""What `retrieval add|reconnect` and `smtp add|reconnect` share for OAuth2 sign-in (issue 15).

A CLI-started sign-in is bound to no browser session: whoever opens the printed
`authorize_url` and consents completes it at {TRIBUTARY_PUBLIC_URL}/oauth/callback
(the state in the URL binds it to the task or account, single use, 10 minutes).
"""

from __future__ import annotations

from typing import Any

from service.cli.common import Services, emit
from service.usecases import users
from service.usecases.oauth_targets import (
    OAuthStart,
    OAuthStarted,
    begin_oauth,
    reconnect_oauth,
    sign_in_states,
)


async def begin_for(services: Services, user_email: str, start: OAuthStart) -> OAuthStarted:
    owner = await users.find_user(db=services.db, email=user_email)
    return await begin_oauth(
        db=services.db,
        settings=services.settings,
        secret_box=services.secret_box,
        user_id=owner.id,
        start=start,
        session_binding=None,
    )


async def reconnect_for(services: Services, kind: str, target_id: int) -> OAuthStarted:
    return await reconnect_oauth(
        db=services.db,
        settings=services.settings,
        secret_box=services.secret_box,
        user_id=None,  # the operator: any task or account, started as its owner
        kind=kind,
        target_id=target_id,
        session_binding=None,
    )


def emit_started(started: OAuthStarted, *, as_json: bool) -> None:
    """{"id", "status", "authorize_url"} with --json, else the URL with what to do with it."""
    shown = {"id": started.id, "status": started.status, "authorize_url": started.authorize_url}
    text = (
        f"{started.id}: open this address in a browser and sign in to finish (valid for 10 minutes):\n"
        f"{started.authorize_url}"
    )
    emit(shown, as_json=as_json, text=text)


async def with_sign_in(services: Services, kind: str, user_id: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each listed task or account with "auth" ("password" | "oauth2") and "status" ("pending" | "ok" | "reconnect")."""
    states = await sign_in_states(db=services.db, kind=kind, user_id=user_id)
    for row in rows:
        state = states.get(row["id"])
        row["auth"] = state.auth if state else "password"
        row["status"] = state.status if state else "ok"
    return rows
