"""The Sent copy a delivery starts (issue 18): read with the delivery's claim, started in the
transaction that records the message as sent (sending.attempt, sending.outcome); the copy itself
is sending.sent_copy's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.outbox import GIVE_UP_AFTER, SentCopyStatus
from service.domain.smtp_accounts import files_sent_itself
from service.domain.values import Protocol
from service.persistence.tables import OutboxEntry, RetrievalTask, SmtpAccount


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """What the SMTP account's Sent copy will be for a message: the task, or the reason to skip."""

    task_id: int
    skip: str | None = None


async def copy_plan(session: AsyncSession, account: SmtpAccount) -> CopyPlan | None:
    """The account's Sent copy, read when delivery is claimed: None when it wants none."""
    if account.sent_copy_task_id is None or not account.save_copy_in_sent:
        return None
    task = await session.get(RetrievalTask, account.sent_copy_task_id)
    if task is None or task.user_id != account.user_id or task.protocol is not Protocol.IMAP:
        return None
    return CopyPlan(task.id or 0, files_sent_itself(account.host, task.host))


def start_copy(entry: OutboxEntry, plan: CopyPlan, now: datetime) -> None:
    """Delivery is over: the copy becomes due now (or is skipped with its sentence), in the
    transaction that records the delivery."""
    entry.sent_copy_task_id = plan.task_id
    entry.sent_copy_attempts = 0
    if plan.skip is not None:
        entry.sent_copy_status = SentCopyStatus.SKIPPED
        entry.sent_copy_error = plan.skip
        return
    entry.sent_copy_status = SentCopyStatus.PENDING
    entry.sent_copy_error = None
    entry.next_attempt_at = now
    entry.give_up_at = now + GIVE_UP_AFTER
