"""The administrator's per-domain switches: IMAP/POP Retrieval and SMTP Accounts, and limits."""

from __future__ import annotations

from sqlmodel import select

from service.domain.users import DomainView, normalise_domain
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.tables import Domain
from service.usecases.users import get_or_create_domain


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


async def set_domain(
    *,
    db: Database,
    name: str,
    retrieval_enabled: bool | None = None,
    smtp_accounts_enabled: bool | None = None,
    max_tasks_per_user: int | None = None,
    max_message_bytes: int | None = None,
) -> DomainView:
    """Change a domain's switches and limits (None leaves a value as it is); creates the domain if new."""
    if max_message_bytes is not None and max_message_bytes < 1024:
        raise InvalidInput("The maximum message size must be at least 1 KB.")
    if max_tasks_per_user is not None and max_tasks_per_user < 0:
        raise InvalidInput("The number of retrieval tasks per user cannot be negative.")
    async with db.write() as session:
        domain = await get_or_create_domain(session, normalise_domain(name))
        if retrieval_enabled is not None:
            domain.retrieval_enabled = retrieval_enabled
        if smtp_accounts_enabled is not None:
            domain.smtp_accounts_enabled = smtp_accounts_enabled
        if max_tasks_per_user is not None:
            domain.max_tasks_per_user = max_tasks_per_user
        if max_message_bytes is not None:
            domain.max_message_bytes = max_message_bytes
        session.add(domain)
        await session.flush()
        return _view(domain)


async def list_domains(*, db: Database) -> list[DomainView]:
    async with db.read() as session:
        return [_view(d) for d in (await session.exec(select(Domain).order_by(Domain.name))).all()]
