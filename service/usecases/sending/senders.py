"""Send From: the addresses a user may send as, the default one, and the one a reply should use.

The choices are the user's active SMTP accounts (while the domain allows SMTP
accounts; an OAuth2 account only once its sign-in completed) and, when the
domain has a company relay, the user's own address through it. The default is
the user's chosen default From, else the first active account, else the relay.
A reply defaults to the choice whose address the original was delivered to:
its Delivered-To, To or Cc header, or the username of the retrieval task that
brought it in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email import policy
from email.parser import BytesParser

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.compose import Sender, Thread, message_ids, signature_block
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.smtp_accounts import FromChoice
from service.domain.values import Security, default_port
from service.errors import FeatureDisabled, InvalidInput, NotFound
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, Message, RetrievalTask, SmtpAccount
from service.protocols.smtp import SmtpEndpoint
from service.usecases.domains import oauth_disabled_message, outbound_policy
from service.usecases.smtp_accounts import NO_ACCOUNT, disabled_message, user_and_domain

RELAY_TIMEOUT_SECONDS = 30
# Address-like tokens in a header: enough to compare with the user's own addresses,
# without trusting an address parser with a decision (see DESIGN.md section 7).
_ADDRESS_TOKEN = re.compile(r"[^\s<>,;:\"'()\[\]]+@[^\s<>,;:\"'()\[\]]+")
_DELIVERY_HEADERS = ("Delivered-To", "To", "Cc")


@dataclass(frozen=True, slots=True)
class Route:
    """How a new message leaves: through an account (id) or the relay, and as whom."""

    account_id: int | None
    sender: Sender
    max_message_bytes: int


async def _choices(session: AsyncSession, user_id: int) -> list[FromChoice]:
    user, domain = await user_and_domain(session, user_id)
    choices: list[FromChoice] = []
    if domain.smtp_accounts_enabled:
        accounts = (
            await session.exec(select(SmtpAccount).where(SmtpAccount.user_id == user_id, SmtpAccount.is_active))
        ).all()
        # An OAuth2 account whose first sign-in is not finished has no address to send as yet.
        accounts = [a for a in accounts if a.oauth_status is not CredentialStatus.PENDING]
        if not domain.oauth_enabled:  # the administrator turned OAuth2 sign-in off: those cannot send
            accounts = [a for a in accounts if a.auth is not AuthKind.OAUTH2]
        choices = [FromChoice(a.id, a.email_address, a.display_name) for a in sorted(accounts, key=lambda a: a.id or 0)]
    if domain.relay_host:
        choices.append(FromChoice(None, user.email, user.display_name))
    if not choices:
        return choices
    preferred = user.default_from_account_id
    chosen = next((c for c in choices if preferred is not None and c.account_id == preferred), choices[0])
    return [replace(choice, is_default=choice is chosen) for choice in choices]


async def send_from_choices(*, db: Database, user_id: int) -> list[FromChoice]:
    """The Send From dropdown, exactly one entry marked default (empty when the user cannot send)."""
    async with db.read() as session:
        return await _choices(session, user_id)


async def signatures(*, db: Database, user_id: int) -> dict[str, str]:
    """The signature block each Send From entry adds under the body, by the entry's key (the
    compose page shows the chosen one read-only); the relay and accounts without one: none."""
    async with db.read() as session:
        rows = (
            await session.exec(select(SmtpAccount.id, SmtpAccount.signature_text).where(SmtpAccount.user_id == user_id))
        ).all()
    return {str(account_id): block for account_id, text in rows if (block := signature_block(text))}


def _addresses_delivered_to(raw: bytes) -> list[str]:
    try:
        headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
        values = [str(value) for name in _DELIVERY_HEADERS for value in headers.get_all(name) or []]
    except Exception:  # real-world mail breaks parsers; then there is simply no match
        return []
    return [token.lower() for value in values for token in _ADDRESS_TOKEN.findall(value)]


async def default_sender(*, db: Database, user_id: int, reply_to_message_id: int | None = None) -> FromChoice | None:
    """The preselected Send From entry; for a reply, the address the original was delivered to."""
    async with db.read() as session:
        choices = await _choices(session, user_id)
        if not choices:
            return None
        if reply_to_message_id is not None:
            raw = await mailstore.read_raw(session, user_id=user_id, message_id=reply_to_message_id)
            by_address = {choice.address.lower(): choice for choice in choices}
            for address in _addresses_delivered_to(raw):
                if address in by_address:
                    return by_address[address]
            task_username = (
                await session.exec(
                    select(RetrievalTask.username)
                    .join(Message, Message.task_id == RetrievalTask.id)  # type: ignore[arg-type]
                    .where(Message.id == reply_to_message_id)
                )
            ).first()
            if task_username and task_username.strip().lower() in by_address:
                return by_address[task_username.strip().lower()]
    return next(choice for choice in choices if choice.is_default)


async def route_for(session: AsyncSession, user_id: int, from_account_id: int | None) -> Route:
    """Check the chosen Send From entry (an account id, or None for the relay) and say how it sends."""
    user, domain = await user_and_domain(session, user_id)
    if from_account_id is None:
        if not domain.relay_host:
            raise InvalidInput(f"{domain.name} has no company relay: choose one of your SMTP accounts.")
        return Route(None, Sender(user.email, user.display_name), domain.max_message_bytes)
    account = await session.get(SmtpAccount, from_account_id)
    if account is None or account.user_id != user_id:
        raise NotFound(NO_ACCOUNT)
    if not domain.smtp_accounts_enabled:
        raise FeatureDisabled(disabled_message(domain))
    if not account.is_active:
        raise InvalidInput(f"The SMTP account {account.email_address} is turned off.")
    if account.auth is AuthKind.OAUTH2 and not domain.oauth_enabled:
        raise FeatureDisabled(oauth_disabled_message(domain.name))
    if account.oauth_status is CredentialStatus.PENDING:
        raise InvalidInput("This SMTP account's sign-in with its provider is not finished yet.")
    sender = Sender(account.email_address, account.display_name, account.signature_text, account.signature_html)
    return Route(from_account_id, sender, domain.max_message_bytes)


async def thread_of(session: AsyncSession, user_id: int, message_id: int) -> Thread:
    """In-Reply-To and References for a reply (RFC 5322 3.6.4): the parent's References
    (or its In-Reply-To when it has none) followed by the parent's Message-ID."""
    raw = await mailstore.read_raw(session, user_id=user_id, message_id=message_id)
    try:
        headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
        own = message_ids(str(headers.get("Message-ID", "")))
        parents = message_ids(str(headers.get("References", ""))) or message_ids(str(headers.get("In-Reply-To", "")))
    except Exception:  # a message the parser chokes on: answer it without threading headers
        return Thread()
    return Thread(message_id=own[0] if own else None, references=parents[-20:])


def relay_endpoint(domain: Domain, *, secret_box: SecretBox, settings: Settings) -> SmtpEndpoint:
    """The company relay of a domain (authenticating when the administrator gave a username),
    reachable only as the domain's outbound policy allows."""
    if not domain.relay_host:
        raise InvalidInput(f"{domain.name} has no company relay.")
    security = Security(domain.relay_security)
    password = secret_box.decrypt(domain.relay_password_encrypted) if domain.relay_password_encrypted else ""
    return SmtpEndpoint(
        host=domain.relay_host,
        port=domain.relay_port or default_port("smtp", security),
        security=security,
        verify_certificate=domain.relay_verify_certificate,
        auth_required=bool(domain.relay_username),
        username=domain.relay_username or "",
        password=password,
        timeout_seconds=RELAY_TIMEOUT_SECONDS,
        extra_ca_file=settings.extra_ca_file,
        policy=outbound_policy(settings, domain),
    )
