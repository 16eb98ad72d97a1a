"""What an OAuth2 sign-in is for: a retrieval task or an SMTP account, loaded by kind and id,
and the outbound policy of its owner's domain."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.oauth import OAuthProvider, TargetKind, usable_providers
from service.domain.outbound import OutboundPolicy
from service.errors import FeatureDisabled, InvalidInput, NotFound
from service.persistence.tables import Domain, RetrievalTask, SmtpAccount, User
from service.usecases.domains import outbound_policy

Target = RetrievalTask | SmtpAccount
log = logging.getLogger(__name__)
_logged: set[str] = set()  # configuration problems already logged by this process


def target_kind(kind: str) -> TargetKind:
    """ "retrieval" or "smtp", else InvalidInput."""
    try:
        return TargetKind(kind)
    except ValueError:
        raise InvalidInput("A sign-in is for a retrieval task or an SMTP account.") from None


async def load_target(session: AsyncSession, kind: TargetKind, target_id: int, user_id: int | None) -> Target:
    """The task or account, if it exists and (unless user_id is None) belongs to this user."""
    row: Target | None
    if kind is TargetKind.RETRIEVAL:
        row = await session.get(RetrievalTask, target_id)
    else:
        row = await session.get(SmtpAccount, target_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        what = "retrieval task" if kind is TargetKind.RETRIEVAL else "SMTP account"
        raise NotFound(f"This {what} does not exist.")
    return row


def sign_in_name(row: Target) -> str:
    """The mailbox the target signs in as (the SASL user of XOAUTH2 / OAUTHBEARER), "" if not known yet."""
    if isinstance(row, RetrievalTask):
        return row.username
    return row.username or row.email_address


async def policy_for_user(session: AsyncSession, settings: Settings, user_id: int) -> OutboundPolicy:
    """The outbound policy of the user's domain (TRIBUTARY_OUTBOUND_ALLOW plus its allowed hosts)."""
    domain = (await session.exec(select(Domain).join(User).where(User.id == user_id))).one()
    return outbound_policy(settings, domain)


def provider_named(settings: Settings, environ: Mapping[str, str] | None, name: str | None) -> OAuthProvider:
    """The configured provider `name`; FeatureDisabled when the administrator no longer offers it (or
    its TRIBUTARY_OAUTH_<NAME>_* variables are invalid: logged once; the others are still offered)."""
    providers, problems = usable_providers(settings, os.environ if environ is None else environ)
    for problem in problems:
        if problem not in _logged:
            _logged.add(problem)
            log.warning("an OAuth2 provider is not offered: %s", problem)
    provider = providers.get(name or "")
    if provider is None:
        raise FeatureDisabled(
            f"Sign-in with {name or 'this provider'} is not offered on this server any more; ask your administrator."
        )
    return provider
