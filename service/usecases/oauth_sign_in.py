"""Signing in to a mail server with an OAuth2 access token (issue 15): the one retry rule, shared by
retrieval runs, Test Connection and sending.

`with_token` gets the task's or account's access token
(service.usecases.oauth.access_token_for: refreshed shortly before expiry) and
signs in with it; when the server refuses it (TokenRejected: the provider
revoked or expired it before our clock says so) it forces one refresh and
retries once. A fresh token the server refuses too is a real refusal: the
caller marks the target for Reconnect (`mark_refused`).

What reaches the caller: NeedsReconnect (the provider refused the refresh;
the target is already in "reconnect"), TokenRejected (refused twice),
ServerUnavailable (the token endpoint is unreachable: an ordinary transient
failure, retried with backoff, never "needs action").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.config import Settings
from service.domain.oauth import CredentialStatus
from service.errors import TokenRejected
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask, SmtpAccount
from service.persistence.types import utcnow

T = TypeVar("T")
log = logging.getLogger(__name__)


async def with_token(
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    kind: str,
    target_id: int,
    sign_in: Callable[[str], Awaitable[T]],
) -> T:
    """`sign_in(token)`; after a TokenRejected, once more with a token refreshed for the purpose."""
    from service.usecases.oauth import access_token_for  # httpx and authlib: only for a target that uses OAuth2

    async def token(force_refresh: bool) -> str:
        return await access_token_for(
            db=db, settings=settings, secret_box=secret_box, kind=kind, target_id=target_id, force_refresh=force_refresh
        )

    try:
        return await sign_in(await token(False))
    except TokenRejected:
        log.info("%s %s: the server refused the access token; refreshing it once", kind, target_id)
    return await sign_in(await token(True))


def mark_refused(row: RetrievalTask | SmtpAccount, message: str) -> None:
    """A freshly refreshed token was refused too: the user must reconnect (stops automatic runs and
    makes outbox entries wait), in the caller's transaction."""
    row.oauth_status = CredentialStatus.RECONNECT
    row.needs_action = True
    row.last_error = message
    row.failing_since = row.failing_since or utcnow()
