"""The administrator's per-domain settings: the IMAP/POP Retrieval, SMTP Accounts and OAuth2
sign-in switches, the company relay, the limits and the remote hosts users may reach.

The OAuth2 sign-in switch ("OAuth2 sign-in (Google, Microsoft, ...)", issue 15)
is enforced by `check_oauth_enabled`: "Sign in with <provider>" and Reconnect
are refused with its sentence (service.usecases.oauth_targets), and an existing
task or account of the domain gets no access token (service.usecases.oauth.
access_token_for), so its runs, Test Connection and sending fail with that
sentence, as a task of a domain with retrieval turned off does.

Two ways in. `set_domain` changes a few values by name (the CLI's `tributary domain
set`; None leaves a value as it is). `update_domain` replaces every setting of one
domain at once (the Administration page's "Save"), from a `DomainSettingsInput`
that `checked()` normalises or refuses with InvalidInput.

The relay password is encrypted with the SecretBox and write-only: a view only
says whether one is stored; an empty password on save keeps the stored one, and
removing the relay (or its username) removes the password too.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, replace

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.compose import check_header_text
from service.domain.outbound import STRICT, OutboundPolicy, build_policy
from service.domain.smtp_accounts import check_host
from service.domain.users import DomainView, normalise_domain
from service.domain.values import Security, default_port
from service.errors import FeatureDisabled, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, User
from service.usecases.users import get_or_create_domain

log = logging.getLogger(__name__)
MIN_MESSAGE_BYTES = 1024
NO_DOMAIN = "This domain does not exist."


@dataclass(frozen=True, slots=True)
class DomainSettings:
    """Everything the administrator set for one domain; the relay password only as `has_relay_password`."""

    id: int
    name: str
    retrieval_enabled: bool
    smtp_accounts_enabled: bool
    max_tasks_per_user: int | None
    max_smtp_accounts_per_user: int | None
    max_message_bytes: int
    allowed_hosts: tuple[str, ...]
    relay_host: str | None
    relay_port: int | None
    relay_security: Security
    relay_username: str | None
    relay_verify_certificate: bool
    has_relay_password: bool
    oauth_enabled: bool = True


@dataclass(frozen=True, slots=True)
class DomainSettingsInput:
    """A domain's settings as the Administration form submits them. `relay_host` "" means no relay;
    `relay_port` None means the security's default port; limits None mean no limit."""

    retrieval_enabled: bool = True
    smtp_accounts_enabled: bool = True
    oauth_enabled: bool = True
    max_tasks_per_user: int | None = None
    max_smtp_accounts_per_user: int | None = None
    max_message_bytes: int = 50 * 1024 * 1024
    allowed_hosts: tuple[str, ...] = ()
    relay_host: str = ""
    relay_port: int | None = None
    relay_security: Security = Security.STARTTLS
    relay_username: str = ""
    relay_verify_certificate: bool = True

    def checked(self) -> DomainSettingsInput:
        """Normalised settings (host in ASCII form, port filled in, hosts de-duplicated) or InvalidInput."""
        for value, what in (
            (self.max_tasks_per_user, "retrieval tasks"),
            (self.max_smtp_accounts_per_user, "SMTP accounts"),
        ):
            if value is not None and value < 0:
                raise InvalidInput(f"The number of {what} per user cannot be negative.")
        if self.max_message_bytes < MIN_MESSAGE_BYTES:
            raise InvalidInput("The maximum message size must be at least 1 KB.")
        hosts = check_allowed_hosts(self.allowed_hosts)
        if not self.relay_host.strip():
            return replace(self, allowed_hosts=hosts, relay_host="", relay_port=None, relay_username="")
        if self.relay_port is not None and not 1 <= self.relay_port <= 65535:
            raise InvalidInput("The relay's port must be between 1 and 65535.")
        return replace(
            self,
            allowed_hosts=hosts,
            relay_host=check_host(self.relay_host),
            relay_port=self.relay_port or default_port("smtp", self.relay_security),
            relay_username=check_header_text(self.relay_username.strip(), "relay username"),
        )


def check_allowed_hosts(lines: tuple[str, ...]) -> tuple[str, ...]:
    """Each entry a host name, "*.domain" (its subdomains), an IP address or a network (CIDR); normalised."""
    result: list[str] = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            normal = str(ipaddress.ip_network(entry, strict=False)) if "/" in entry else None
        except ValueError as exc:
            raise InvalidInput(f"{entry!r} is not a valid network: write it like 192.0.2.0/24.") from exc
        if normal is None:
            wildcard = entry.startswith("*.")
            try:
                host = check_host(entry[2:] if wildcard else entry)
            except InvalidInput as exc:
                raise InvalidInput(f"{entry!r} is not a host name, IP address or network.") from exc
            normal = f"*.{host}" if wildcard else host
        if normal not in result:
            result.append(normal)
    return tuple(result)


def oauth_disabled_message(domain_name: str) -> str:
    return f"Your administrator turned off OAuth2 sign-in for {domain_name}."


async def check_oauth_enabled(session: AsyncSession, user_id: int) -> None:
    """FeatureDisabled (in the administrator's words) when the user's domain turned OAuth2 sign-in off."""
    domain = (await session.exec(select(Domain).join(User).where(User.id == user_id))).first()
    if domain is None:
        raise NotFound("This user does not exist.")
    if not domain.oauth_enabled:
        raise FeatureDisabled(oauth_disabled_message(domain.name))


def outbound_policy(settings: Settings, domain: Domain) -> OutboundPolicy:
    """Which hosts the domain's retrieval tasks, SMTP accounts and relay may reach:
    TRIBUTARY_OUTBOUND_ALLOW plus the domain's allowed hosts."""
    try:
        return build_policy(settings.outbound_allow, domain.allowed_hosts)
    except InvalidInput as exc:  # a broken setting fails closed: nothing private is reachable
        log.error("outbound policy ignored for %s: %s", domain.name, exc.message)
        return STRICT


def _view(domain: Domain) -> DomainView:
    assert domain.id is not None
    return DomainView(
        id=domain.id,
        name=domain.name,
        retrieval_enabled=domain.retrieval_enabled,
        smtp_accounts_enabled=domain.smtp_accounts_enabled,
        max_tasks_per_user=domain.max_tasks_per_user,
        max_message_bytes=domain.max_message_bytes,
    )


def _settings(domain: Domain) -> DomainSettings:
    assert domain.id is not None
    return DomainSettings(
        id=domain.id,
        name=domain.name,
        retrieval_enabled=domain.retrieval_enabled,
        smtp_accounts_enabled=domain.smtp_accounts_enabled,
        max_tasks_per_user=domain.max_tasks_per_user,
        max_smtp_accounts_per_user=domain.max_smtp_accounts_per_user,
        max_message_bytes=domain.max_message_bytes,
        allowed_hosts=tuple(line for line in domain.allowed_hosts.splitlines() if line.strip()),
        relay_host=domain.relay_host,
        relay_port=domain.relay_port,
        relay_security=Security(domain.relay_security),
        relay_username=domain.relay_username,
        relay_verify_certificate=domain.relay_verify_certificate,
        has_relay_password=domain.relay_password_encrypted is not None,
        oauth_enabled=domain.oauth_enabled,
    )


async def set_domain(
    *,
    db: Database,
    name: str,
    retrieval_enabled: bool | None = None,
    smtp_accounts_enabled: bool | None = None,
    max_tasks_per_user: int | None = None,
    max_message_bytes: int | None = None,
    oauth_enabled: bool | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
) -> DomainView:
    """Change a domain's switches and limits (None leaves a value as it is); creates the domain if new.
    `allowed_hosts` replaces the hosts users may reach (an empty tuple clears them)."""
    hosts = check_allowed_hosts(allowed_hosts) if allowed_hosts is not None else None
    if max_message_bytes is not None and max_message_bytes < MIN_MESSAGE_BYTES:
        raise InvalidInput("The maximum message size must be at least 1 KB.")
    if max_tasks_per_user is not None and max_tasks_per_user < 0:
        raise InvalidInput("The number of retrieval tasks per user cannot be negative.")
    async with db.write() as session:
        domain = await get_or_create_domain(session, normalise_domain(name))
        if retrieval_enabled is not None:
            domain.retrieval_enabled = retrieval_enabled
        if smtp_accounts_enabled is not None:
            domain.smtp_accounts_enabled = smtp_accounts_enabled
        if oauth_enabled is not None:
            domain.oauth_enabled = oauth_enabled
        if max_tasks_per_user is not None:
            domain.max_tasks_per_user = max_tasks_per_user
        if max_message_bytes is not None:
            domain.max_message_bytes = max_message_bytes
        if hosts is not None:
            domain.allowed_hosts = "\n".join(hosts)
        session.add(domain)
        await session.flush()
        return _view(domain)


async def list_domains(*, db: Database) -> list[DomainView]:
    async with db.read() as session:
        return [_view(d) for d in (await session.exec(select(Domain).order_by(Domain.name))).all()]


async def list_domain_settings(*, db: Database) -> list[DomainSettings]:
    """Every domain's full settings, by name (the Administration page)."""
    async with db.read() as session:
        return [_settings(d) for d in (await session.exec(select(Domain).order_by(Domain.name))).all()]


async def get_domain_settings(*, db: Database, name: str) -> DomainSettings:
    """One domain's settings by name; NotFound when no user of it exists yet."""
    async with db.read() as session:
        domain = (await session.exec(select(Domain).where(Domain.name == name.strip().lower()))).first()
    if domain is None:
        raise NotFound(NO_DOMAIN)
    return _settings(domain)


async def update_domain(
    *,
    db: Database,
    secret_box: SecretBox,
    domain_id: int,
    settings: DomainSettingsInput,
    relay_password: str | None = None,
) -> DomainSettings:
    """Replace one domain's settings. An empty `relay_password` keeps the stored one; a relay that
    signs in (a username) needs a password; no relay, or no username, stores none."""
    checked = settings.checked()
    if relay_password is not None:
        check_header_text(relay_password, "relay password")
    async with db.write() as session:
        domain = await session.get(Domain, domain_id)
        if domain is None:
            raise NotFound(NO_DOMAIN)
        domain.retrieval_enabled = checked.retrieval_enabled
        domain.smtp_accounts_enabled = checked.smtp_accounts_enabled
        domain.oauth_enabled = checked.oauth_enabled
        domain.max_tasks_per_user = checked.max_tasks_per_user
        domain.max_smtp_accounts_per_user = checked.max_smtp_accounts_per_user
        domain.max_message_bytes = checked.max_message_bytes
        domain.allowed_hosts = "\n".join(checked.allowed_hosts)
        domain.relay_host = checked.relay_host or None
        domain.relay_port = checked.relay_port
        domain.relay_security = checked.relay_security
        domain.relay_username = checked.relay_username or None
        domain.relay_verify_certificate = checked.relay_verify_certificate
        if not checked.relay_username:
            domain.relay_password_encrypted = None
        elif relay_password:
            domain.relay_password_encrypted = secret_box.encrypt(relay_password)
        elif domain.relay_password_encrypted is None:
            raise InvalidInput("Enter the relay's password, or leave its username empty if it needs no sign-in.")
        session.add(domain)
        await session.flush()
        return _settings(domain)
