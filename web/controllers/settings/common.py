"""What the settings controllers share: telling htmx requests apart, flash messages that
survive the redirect after a plain form POST, and reading numbers and switches from forms.

Flash messages live in the server-side session under "flash" and are shown (once) by the
Connectivity page; htmx requests get their result in the fragment instead.
"""

from __future__ import annotations

from collections.abc import Awaitable
from enum import StrEnum
from typing import Any, TypeVar, cast

from litestar import Request, Response
from litestar.datastructures import State

from service.domain.connection_test import ConnectionReport
from service.domain.users import UserView
from service.scheduler import Scheduler
from service.usecases.rate_limit import TooManyAttempts
from web.controllers.settings.present import Message
from web.support.rendering import page, see_other

AnyRequest = Request[Any, Any, Any]
E = TypeVar("E", bound=StrEnum)
CONNECTIVITY = "/settings/connectivity"
_FLASH = "flash"


def is_htmx(request: AnyRequest) -> bool:
    return request.headers.get("hx-request") == "true"


def scheduler(state: State) -> Scheduler:
    return cast(Scheduler, state.scheduler)


def flash(request: AnyRequest, message: Message) -> None:
    request.set_session({**request.session, _FLASH: {"kind": message.kind, "text": message.text}})


def pop_flash(request: AnyRequest) -> Message | None:
    session = dict(request.session)
    stored = session.pop(_FLASH, None)
    if not isinstance(stored, dict):
        return None
    request.set_session(session)
    return Message(str(stored.get("kind", "info")), str(stored.get("text", "")))


def back(request: AnyRequest, message: Message, *, anchor: str = "") -> Response[Any]:
    """After an action: flash its result and go back to Connectivity (htmx: a full-page redirect)."""
    flash(request, message)
    path = CONNECTIVITY + (f"#{anchor}" if anchor else "")
    if is_htmx(request):
        return Response(content=b"", status_code=200, headers={"HX-Redirect": path})
    return see_other(path)


async def connection_test(
    request: AnyRequest, user: UserView, run: Awaitable[ConnectionReport]
) -> ConnectionReport | Response[Any]:
    """Run a Test Connection for a page. Past the rate limit, htmx gets the sentence where the steps
    go (200: htmx swaps only successful answers); a plain form gets the error page (429)."""
    try:
        return await run
    except TooManyAttempts as exc:
        if is_htmx(request):
            return page("settings/_steps.html", viewer=user, problems=[exc.message])
        raise


def limit_reached(user: UserView, *, noun: str, section: str, anchor: str, message: str) -> Response[Any]:
    """New `noun` opened at the limit: say so now, not after the whole form is filled in; the link
    goes back to the Connectivity card `section` (its title's id `anchor`)."""
    return page(
        "settings/limit_reached.html",
        viewer=user,
        nav="settings",
        heading=f"New {noun}",
        section=section,
        anchor=anchor,
        message=message,
    )


def checked(value: str) -> bool:
    """An HTML checkbox: present (any value but "") means on."""
    return value not in ("", "off", "false", "0")


def number(value: str, errors: dict[str, str], name: str, message: str) -> int | None:
    """A whole number from a form field, None when empty; a mistake goes into `errors[name]`."""
    text = value.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        errors[name] = message
        return None


def choice(kind: type[E], value: str, default: E) -> E:
    """The enum member whose value was posted, or the default for anything else."""
    try:
        return kind(value)
    except ValueError:
        return default


def account_form_page(
    *,
    template: str,
    noun: str,
    base_path: str,
    record_id: int | None,
    user: UserView,
    form: Any,
    errors: dict[str, str] | None,
    error: str | None,
    status_code: int,
    **extra: Any,
) -> Response[Any]:
    """The New/Edit form of an SMTP account or a retrieval task (`noun`), under `base_path`
    ("/settings/smtp" or "/settings/retrieval"); the password is never rendered back."""
    action = f"{base_path}/new" if record_id is None else f"{base_path}/{record_id}/edit"
    return page(
        template,
        viewer=user,
        status_code=status_code,
        nav="settings",
        heading=f"New {noun}" if record_id is None else f"Edit {noun}",
        action=action,
        test_action=f"{base_path}/test" if record_id is None else f"{action}/test",
        editing=record_id is not None,
        password_hint="Leave empty to keep the stored password."
        if record_id is not None
        else "Stored encrypted and never shown again.",
        form=form.without_password(),
        errors=errors or {},
        error=error or ("Some fields need your attention." if errors else None),
        **extra,
    )
