"""What needs the user's action: the count behind the badge in the header.

A retrieval task needs the user when the remote server rejected its sign-in
(`needs_action`) or it was paused after repeated failures (`paused_reason`); an
SMTP account needs them when its server rejected the credentials. Both are
counted in one query (two scalar subqueries), cheap enough for every page.
"""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.persistence.database import Database
from service.persistence.tables import RetrievalTask, SmtpAccount


async def needs_action_count(*, db: Database, user_id: int) -> int:
    """How many of the user's retrieval tasks and SMTP accounts need them to act (0 when none)."""
    async with db.read() as session:
        return await needs_action_in(session, user_id)


async def needs_action_in(session: AsyncSession, user_id: int) -> int:
    """`needs_action_count` inside the caller's read."""
    tasks = (
        select(func.count())
        .select_from(RetrievalTask)
        .where(
            col(RetrievalTask.user_id) == user_id,
            or_(col(RetrievalTask.needs_action).is_(True), col(RetrievalTask.paused_reason).is_not(None)),
        )
        .scalar_subquery()
    )
    accounts = (
        select(func.count())
        .select_from(SmtpAccount)
        .where(col(SmtpAccount.user_id) == user_id, col(SmtpAccount.needs_action).is_(True))
        .scalar_subquery()
    )
    total = (await session.exec(select(tasks + accounts))).one()
    return int(total or 0)
