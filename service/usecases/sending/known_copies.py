"""Which retrieved messages are Tributary's own Sent copies (issue 18), for retrieval's commit.

A message sent through an SMTP account with a Sent-copy task is appended to that task's remote
Sent folder, and the outbox keeps where it went: (task, remote folder, UIDVALIDITY, UID), the
UID from APPENDUID (RFC 4315) or a Message-ID search. That is the copy's retrieval identity
(DESIGN.md section 3), so when the next run finds it in the folder it is already stored (the
message in local Sent) and must not be imported a second time.

`unknown_positions` runs inside the transaction that stores a batch: it first locks the task's
row (as the Sent copy's own record does, service.usecases.sending.sent_copy), so either the batch
sees the copy's UID, or the copy's record sees the imported message and removes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.persistence.mailstore import IncomingMessage
from service.persistence.tables import OutboxEntry, RetrievalTask


async def lock_task(session: AsyncSession, task_id: int) -> bool:
    """Take the task's row lock (PostgreSQL; SQLite's write transaction already serialises);
    False when the task is gone."""
    found = await session.exec(select(RetrievalTask.id).where(RetrievalTask.id == task_id).with_for_update())
    return found.first() is not None


async def unknown_positions(
    session: AsyncSession, task_id: int, remote_folder: str, uidvalidity: int, messages: Sequence[IncomingMessage]
) -> list[int]:
    """Positions in `messages` that are not a Sent copy this task's outbox entries appended."""
    uids = [m.origin.uid for m in messages if m.origin is not None and m.origin.uid is not None]
    if not uids:
        return list(range(len(messages)))
    await lock_task(session, task_id)
    known = set(
        (
            await session.exec(
                select(OutboxEntry.sent_copy_uid).where(
                    OutboxEntry.sent_copy_task_id == task_id,
                    col(OutboxEntry.sent_copy_uid).in_(uids),
                    OutboxEntry.sent_copy_folder == remote_folder,
                    OutboxEntry.sent_copy_uidvalidity == uidvalidity,
                )
            )
        ).all()
    )
    return [
        position
        for position, m in enumerate(messages)
        if m.origin is None or m.origin.uid is None or m.origin.uid not in known
    ]
