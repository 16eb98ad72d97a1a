"""OAuth2 sign-in on the settings pages (issue 15): "Sign in with Google", "Sign in with Microsoft"
and each configured provider on "New Retrieval Task" and "New SMTP Account", "Reconnect" on a row,
and the callback the provider sends the browser back to.

- POST /settings/retrieval/oauth and /settings/smtp/oauth (the provider buttons' own small form):
  `begin_oauth` creates the pending task or account with the provider's server, port and
  security, and the browser goes (303) to the provider's consent page.
- POST /settings/retrieval/{id}/reconnect and /settings/smtp/{id}/reconnect: `reconnect_oauth`,
  then the consent page again.
- GET /oauth/callback (RFC 6749 4.1.2): `complete_authorization` with the returning browser's
  session binding (support.oauth_binding); the sign-in's one sentence, success or not, is shown
  on Connectivity (a browser that is not signed in, say one a CLI user opened, gets it on a
  small page of its own). A replayed, expired or foreign state, or a refusal at the provider,
  saves nothing.

The pages' Content-Security-Policy allows `form-action` only to this site; the pages with these
buttons add the providers' authorization origins (the authorize URL's, else the issuer's), since
browsers check form-action on the redirect that follows a form too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, Parameter, QueryParameter

from service.config import Settings
from service.domain.oauth import AuthKind, OAuthProvider, TargetKind, usable_providers
from service.domain.users import UserView
from service.domain.values import Protocol
from service.errors import OAuthSignInError, TributaryError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.oauth import complete_authorization
from service.usecases.oauth_targets import OAuthStart, begin_oauth, oauth_offered, reconnect_oauth, sign_in_states
from web.controllers.settings.common import CONNECTIVITY, AnyRequest, back, choice
from web.controllers.settings.present import Message
from web.controllers.settings.retrieval_form import initial_posted, patterns_posted
from web.support.middleware import CONTENT_SECURITY_POLICY
from web.support.oauth_binding import session_binding
from web.support.rendering import page, status_for

log = logging.getLogger(__name__)

CALLBACK = "/oauth/callback"
_QUERY_MAX = 4096  # a state or code is far shorter; anything longer is not from a provider


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """A provider button: the provider's name (posted) and label ("Sign in with <label>")."""

    name: str
    label: str


def providers(settings: Settings) -> dict[str, OAuthProvider]:
    """The configured providers; one whose configuration is invalid is left out (Administration says why)."""
    return usable_providers(settings, os.environ)[0]


def offered(settings: Settings) -> list[ProviderChoice]:
    """The provider buttons, Google and Microsoft first (when configured), then the others."""
    return [ProviderChoice(p.name, p.label) for p in providers(settings).values()]


async def offered_to(db: Database, settings: Settings, user_id: int) -> list[ProviderChoice]:
    """The provider buttons for this user: none while their domain has OAuth2 sign-in turned off."""
    return offered(settings) if await oauth_offered(db=db, user_id=user_id) else []


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def csp_allowing_providers(settings: Settings) -> dict[str, str]:
    """Headers for a page whose forms lead to a provider's consent page (see the module docstring)."""
    origins = sorted(
        {o for p in providers(settings).values() if (o := _origin(p.authorize_url) or _origin(p.issuer)) is not None}
    )
    if not origins:
        return {}
    policy = CONTENT_SECURITY_POLICY.replace("form-action 'self'", "form-action 'self' " + " ".join(origins))
    return {"Content-Security-Policy": policy}


def with_provider_csp(response: Response[Any], settings: Settings) -> Response[Any]:
    response.headers.update(csp_allowing_providers(settings))
    return response


async def signs_in_with_provider(db: Database, kind: TargetKind, user_id: int, target_id: int) -> bool:
    """Whether the user's task or account signs in with a provider (its Edit form then asks no password)."""
    found = (await sign_in_states(db=db, kind=kind.value, user_id=user_id)).get(target_id)
    return found is not None and found.auth == AuthKind.OAUTH2.value


def to_provider(url: str) -> Response[Any]:
    """303 See Other to the provider's consent page."""
    return Response(content=b"", status_code=303, headers={"Location": url})


@dataclass
class TaskOAuthForm:
    """The provider buttons' form on New Retrieval Task: the mailbox type and the provider chosen."""

    provider: str = ""
    protocol: str = Protocol.IMAP.value
    # What to import, copied from the task form below the buttons (task-oauth.js) as it would post them.
    initial: str = "all"
    initial_since: str = ""
    include_folders: str = ""
    exclude_folders: str = ""


@dataclass
class SmtpOAuthForm:
    """The provider buttons' form on New SMTP Account."""

    provider: str = ""


async def _start(
    request: AnyRequest,
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    user: UserView,
    start: OAuthStart,
    back_to: str,
) -> Response[Any]:
    try:
        started = await begin_oauth(
            db=db,
            settings=settings,
            secret_box=secret_box,
            user_id=user.id,
            start=start,
            session_binding=session_binding(request),
        )
    except TributaryError as exc:
        return page(
            "settings/oauth_problem.html",
            viewer=user,
            nav="settings",
            status_code=status_for(exc),
            message=exc.message,
            back_to=back_to,
        )
    return to_provider(started.authorize_url)


@post("/settings/retrieval/oauth", name="retrieval-oauth")
async def start_task(
    data: Annotated[TaskOAuthForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    """A provider button on New Retrieval Task: the pending task, then the provider's consent page."""
    start = OAuthStart(
        kind=TargetKind.RETRIEVAL.value,
        provider=data.provider,
        protocol=choice(Protocol, data.protocol, Protocol.IMAP),
        initial=initial_posted(data.initial, data.initial_since),
        include_folders=patterns_posted(data.include_folders),
        exclude_folders=patterns_posted(data.exclude_folders),
    )
    return await _start(
        request,
        db=db,
        settings=settings,
        secret_box=secret_box,
        user=user,
        start=start,
        back_to="/settings/retrieval/new",
    )


@post("/settings/smtp/oauth", name="smtp-oauth")
async def start_smtp(
    data: Annotated[SmtpOAuthForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    """A provider button on New SMTP Account: the pending account, then the provider's consent page."""
    start = OAuthStart(kind=TargetKind.SMTP.value, provider=data.provider)
    return await _start(
        request, db=db, settings=settings, secret_box=secret_box, user=user, start=start, back_to="/settings/smtp/new"
    )


async def _reconnect(
    request: AnyRequest,
    kind: TargetKind,
    target_id: int,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    user: UserView,
) -> Response[Any]:
    anchor = f"{'task' if kind is TargetKind.RETRIEVAL else 'smtp'}-{target_id}"
    try:
        started = await reconnect_oauth(
            db=db,
            settings=settings,
            secret_box=secret_box,
            user_id=user.id,
            kind=kind.value,
            target_id=target_id,
            session_binding=session_binding(request),
        )
    except OAuthSignInError as exc:
        return back(request, Message("error", exc.message), anchor=anchor)
    except TributaryError as exc:
        if status_for(exc) == 404:
            raise
        return back(request, Message("error", exc.message), anchor=anchor)
    return to_provider(started.authorize_url)


@post("/settings/retrieval/{task_id:int}/reconnect", name="retrieval-reconnect")
async def reconnect_task(
    task_id: FromPath[int],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    return await _reconnect(request, TargetKind.RETRIEVAL, task_id, db, settings, secret_box, user)


@post("/settings/smtp/{account_id:int}/reconnect", name="smtp-reconnect")
async def reconnect_smtp(
    account_id: FromPath[int],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    return await _reconnect(request, TargetKind.SMTP, account_id, db, settings, secret_box, user)


def _done_sentence(kind: TargetKind, email: str) -> str:
    if kind is TargetKind.RETRIEVAL:
        return f"Signed in as {email}: the retrieval task is ready."
    return f"Signed in as {email}: the SMTP account is ready to send."


QueryText = Annotated[str | None, Parameter(max_length=_QUERY_MAX)]


@get(CALLBACK, name="oauth-callback")
async def callback(
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
    viewer: NamedDependency[UserView | None],
    oauth_state: Annotated[str | None, QueryParameter(name="state", max_length=_QUERY_MAX)] = None,
    code: QueryText = None,
    error: QueryText = None,
) -> Response[Any]:
    """The provider's redirect back (RFC 6749 4.1.2 and 4.1.2.1): `code` and `state`, or `error` and `state`."""
    anchor = ""
    try:
        done = await complete_authorization(
            db=db,
            settings=settings,
            secret_box=secret_box,
            state=oauth_state,
            code=code,
            error=error,
            session_binding=session_binding(request),
        )
        message = Message("ok", _done_sentence(done.kind, done.email))
        anchor = f"{'task' if done.kind is TargetKind.RETRIEVAL else 'smtp'}-{done.target_id}"
    except OAuthSignInError as exc:
        message = Message("error", exc.message)
        if exc.kind is not None and exc.target_id is not None:
            anchor = f"{'task' if exc.kind == TargetKind.RETRIEVAL.value else 'smtp'}-{exc.target_id}"
    if viewer is None:  # e.g. the browser of a CLI user: no settings page to go back to
        return page(
            "settings/oauth_done.html",
            viewer=None,
            status_code=200 if message.kind == "ok" else 400,
            message=message,
        )
    return back(request, message, anchor=anchor)


ROUTES = [start_task, start_smtp, reconnect_task, reconnect_smtp, callback]

__all__ = [
    "CONNECTIVITY",
    "ROUTES",
    "ProviderChoice",
    "csp_allowing_providers",
    "offered",
    "offered_to",
    "with_provider_csp",
]
