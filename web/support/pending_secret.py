"""A password typed into a form that came back with a mistake, kept for the next submit.

Passwords are never sent back to the browser, so a form error (a typo in the port) used to
cost the user the password: they had to type it again. Instead, when a New/Edit form of an
SMTP account or a retrieval task is shown again after a mistake, the password it was posted
with is kept in the server-side session (encrypted with the SecretBox, like stored remote
passwords, so the session file never holds it in clear), under a key bound to that form
(`form_key("smtp", None)` for "New SMTP Account", `form_key("retrieval", 7)` for editing
task 7), for `KEEP_SECONDS`. The form then shows an empty password input with the
placeholder `KEPT_PLACEHOLDER`; submitted empty, it means "use the kept one" (`resolve`).
A successful save `forget`s it; an expired one is ignored and dropped.

The session is replaced at sign-in and deleted at sign-out, so a kept password never
outlives the user's session, and another user never sees it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar, cast

from litestar.connection import ASGIConnection

from service.persistence.secrets import SecretBox, SecretKeyError

SESSION_KEY = "pending_secrets"
KEEP_SECONDS = 10 * 60
MAX_KEPT = 4  # forms with a kept password at once; the oldest goes first
KEPT_PLACEHOLDER = "(kept from your last try)"
KEPT_HINT = "Leave empty to use the password you typed last time, or type another."

AnyConnection = ASGIConnection[Any, Any, Any, Any]
clock: Callable[[], float] = time.time  # tests may replace it


def form_key(kind: str, record_id: int | None) -> str:
    """The key of one form: its kind ("smtp", "retrieval") and "new" or the record's id."""
    return f"{kind}:{'new' if record_id is None else record_id}"


def _entries(connection: AnyConnection) -> dict[str, dict[str, Any]]:
    """The unexpired kept passwords (key -> {"token", "until"}), oldest first."""
    stored = connection.session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return {}
    now = clock()
    return {
        key: entry
        for key, entry in stored.items()
        if isinstance(entry, dict) and isinstance(entry.get("token"), str) and float(entry.get("until", 0)) > now
    }


def _save(connection: AnyConnection, entries: dict[str, dict[str, Any]]) -> None:
    session = dict(connection.session)
    if entries:
        session[SESSION_KEY] = entries
    else:
        session.pop(SESSION_KEY, None)
    connection.set_session(session)


def keep(connection: AnyConnection, box: SecretBox, key: str, password: str) -> bool:
    """Keep the password this form was posted with (nothing for an empty one); True when one is kept."""
    if not password:
        return is_kept(connection, key)
    entries = _entries(connection)
    entries.pop(key, None)
    entries[key] = {"token": box.encrypt(password), "until": clock() + KEEP_SECONDS}
    while len(entries) > MAX_KEPT:
        entries.pop(next(iter(entries)))
    _save(connection, entries)
    return True


def is_kept(connection: AnyConnection, key: str) -> bool:
    return key in _entries(connection)


def resolve(connection: AnyConnection, box: SecretBox, key: str, typed: str) -> str:
    """The password to use: the one typed, or, when the field was left empty, the kept one ("" if none)."""
    if typed:
        return typed
    entry = _entries(connection).get(key)
    if entry is None:
        return ""
    try:
        return box.decrypt(str(entry["token"]))
    except SecretKeyError:  # the key was rotated away meanwhile: as if nothing was kept
        return ""


def forget(connection: AnyConnection, key: str) -> None:
    """Drop this form's kept password (after a successful save), and any that expired."""
    stored = connection.session.get(SESSION_KEY)
    if stored is None:
        return
    entries = _entries(connection)
    entries.pop(key, None)
    _save(connection, entries)


FormT = TypeVar("FormT")


def restore(connection: AnyConnection, box: SecretBox, key: str, form: FormT) -> FormT:
    """The posted form (a dataclass with a `password` field), its empty password replaced by the kept one."""
    typed = str(getattr(form, "password", ""))
    return cast(FormT, replace(cast(Any, form), password=resolve(connection, box, key, typed)))


def kept(connection: AnyConnection, box: SecretBox, key: str, form: object) -> dict[str, Any]:
    """The form goes back to the browser after a mistake: keep its password, and return what the
    template needs to say so (`password_kept`, `kept_placeholder`, `kept_hint`)."""
    return template_context(keep(connection, box, key, str(getattr(form, "password", ""))))


def template_context(is_kept: bool) -> dict[str, Any]:
    return {"password_kept": is_kept, "kept_placeholder": KEPT_PLACEHOLDER, "kept_hint": KEPT_HINT}
