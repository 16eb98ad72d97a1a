"""Signed-in sessions: server-side, in a file store shared by every web process.

The browser holds only a random id (cookie `tributary_session`, HttpOnly,
SameSite=Lax; behind HTTPS Secure and named `__Host-tributary_session`, so a
sibling origin can neither set nor overwrite it); the data (the user's id) lives in the store
under settings.data_dir / "sessions". Litestar's stock backend trusts whatever
id the browser sends, so this one adds three rules:

- an id is reused only if the store knows it; an unknown id (one a visitor
  made up, or one that expired or was signed out) is replaced by a fresh one;
- `sign_in` rotates the id: the old one is deleted from the store and a new one
  is issued, so an id seen before sign-in (session fixation) is worthless after;
- the session keeps, beside the user's id, the stamp of their password hash at sign-in
  (`STAMP_KEY`, see service.domain.users.session_stamp_of); support.dependencies ends a
  session whose stamp is no longer the user's, so changing or resetting a password ends
  every other session, and `restamp` keeps (under a new id) the one it was changed from;
- an empty session is never stored, so anonymous visitors leave no files, and
  `sign_out` deletes the stored session and expires the cookie.

Sign-in and sign-out also change the CSRF token (support.csrf binds it to the
session id, and replaces the anonymous visitor's nonce when `session_changed`).

Every response that carries a session writes it back with a fresh expiry, so
`max_age` is an idle timeout (settings.session_idle_minutes).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, Scope, ScopeSession

from service.domain.users import Authenticated

SESSION_STORE = "sessions"
SESSION_COOKIE = "tributary_session"
USER_ID_KEY = "user_id"
STAMP_KEY = "password_stamp"

# Requests a page makes by itself (the open mail page's pulse, every few seconds) read the
# session but neither renew nor rewrite it: an open tab must not keep an idle session alive.
BACKGROUND_PATHS = frozenset({"/mail/pulse"})

_LOADED_ID = "tributary.session.loaded_id"
_NEW_ID = "tributary.session.new_id"
_ROTATE = "tributary.session.rotate"
_CHANGED = "tributary.session.changed"


def session_cookie_name(*, secure: bool) -> str:
    return f"__Host-{SESSION_COOKIE}" if secure else SESSION_COOKIE


def _state(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
    return connection.scope.setdefault("state", {})


class RotatingSessionBackend(ServerSideSessionBackend):
    """A server-side session backend that never adopts a client-chosen id and rotates at sign-in."""

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        if session_id:
            store = self.config.get_store_from_app(connection.scope["app"])
            background = connection.scope["path"] in BACKGROUND_PATHS
            data = await (store.get(session_id) if background else self.get(session_id, store=store))
            if data is not None:
                _state(connection)[_LOADED_ID] = session_id
                return self.deserialize_data(data)
        return {}

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        state = _state(connection)
        loaded: str | None = state.get(_LOADED_ID)
        if loaded and not state.get(_ROTATE):
            return loaded
        if (new_id := state.get(_NEW_ID)) is None:
            new_id = state[_NEW_ID] = self.generate_session_id()
        return str(new_id)

    def _cookie(self, value: str, max_age: int) -> str:
        config = self.config
        return Cookie(
            key=config.key,
            value=value,
            path=config.path,
            domain=config.domain,
            max_age=max_age,
            secure=config.secure,
            httponly=config.httponly,
            samesite=config.samesite,
        ).to_header(header="")

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        store = self.config.get_store_from_app(connection.scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        state = _state(connection)
        if connection.scope["path"] in BACKGROUND_PATHS and not state.get(_CHANGED):
            return  # the idle clock runs on (see BACKGROUND_PATHS)
        loaded: str | None = state.get(_LOADED_ID)
        empty = scope_session is Empty or not scope_session  # cleared, or nothing worth storing
        if loaded and (empty or state.get(_ROTATE)):
            await self.delete(loaded, store=store)
        if empty:  # store nothing, and make the browser forget any id it holds
            if connection.cookies.get(self.config.key):
                headers.add("Set-Cookie", self._cookie("", max_age=0))
            return
        session_id = self.get_session_id(connection)
        await self.set(session_id, self.serialize_data(scope_session, connection.scope), store=store)
        headers.add("Set-Cookie", self._cookie(session_id, max_age=self.config.max_age))


class RotatingSessionConfig(ServerSideSessionConfig):
    """ServerSideSessionConfig whose middleware uses `RotatingSessionBackend`."""

    _backend_class = RotatingSessionBackend


def session_config(*, secure: bool, idle_minutes: int) -> RotatingSessionConfig:
    return RotatingSessionConfig(
        key=session_cookie_name(secure=secure),
        store=SESSION_STORE,
        max_age=idle_minutes * 60,
        renew_on_access=True,
        secure=secure,
        httponly=True,
        samesite="lax",
        exclude=["^/static/", "^/health$", "^/metrics$"],
    )


def sign_in(connection: ASGIConnection[Any, Any, Any, Any], user: Authenticated) -> None:
    """Start a signed-in session under a new id; whatever the session held before is dropped."""
    _state(connection)[_ROTATE] = _state(connection)[_CHANGED] = True
    connection.set_session({USER_ID_KEY: user.id, STAMP_KEY: user.session_stamp})


def restamp(connection: ASGIConnection[Any, Any, Any, Any], stamp: str) -> None:
    """After the user changed their password here: keep this session (and what it holds) with the new
    stamp, under a new id and CSRF token, as at sign-in."""
    _state(connection)[_ROTATE] = _state(connection)[_CHANGED] = True
    connection.set_session({**connection.session, STAMP_KEY: stamp})


def session_stamp(connection: ASGIConnection[Any, Any, Any, Any]) -> object:
    """The password stamp this session was started with (None in a session from before stamps)."""
    return connection.session.get(STAMP_KEY)


def sign_out(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """End the session: its stored data is deleted and the browser's cookie expired."""
    _state(connection)[_CHANGED] = True
    connection.clear_session()


def session_user_id(connection: ASGIConnection[Any, Any, Any, Any]) -> int | None:
    value = connection.session.get(USER_ID_KEY)
    return value if isinstance(value, int) else None


def signed_in_user_id(scope: Scope) -> int | None:
    """The user id in this request's loaded session, read from the scope (None: anonymous, whatever else the
    session holds), for middleware that runs before a Request is made."""
    session = scope.get("session")
    value = session.get(USER_ID_KEY) if isinstance(session, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def loaded_session_id(scope: Scope) -> str | None:
    """The id of the stored session this request came with (None: anonymous, or an id the store does not know)."""
    value = scope.get("state", {}).get(_LOADED_ID)
    return value if isinstance(value, str) else None


def session_changed(scope: Scope) -> bool:
    """True once this request signed in or out."""
    return bool(scope.get("state", {}).get(_CHANGED))
