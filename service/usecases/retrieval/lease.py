"""Run leases: a task never runs twice at once, in one process or across many.

A lease is (owner, expiry) on the task's row. It is claimed atomically: the
dispatcher selects due tasks with FOR UPDATE SKIP LOCKED on PostgreSQL (on
SQLite the BEGIN IMMEDIATE write transaction already serialises claimers) and
stamps them in the same transaction; "Retrieve Messages Now" claims with one
conditional UPDATE. The holder renews it while the run lasts, and every batch
commit renews it too, in the batch's own transaction, failing the commit when
the lease was lost, so a run that stalled past its expiry can never store a
batch that a newer holder also stores. A holder that dies simply stops
renewing; the lease expires and another worker takes the task.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import RetrievalMethod
from service.errors import TributaryError
from service.persistence.database import Database
from service.persistence.tables import RetrievalTask
from service.persistence.types import utcnow


class LeaseLost(TributaryError):
    """Another worker holds this task's lease now (ours expired): stop without storing more."""


def worker_identity() -> str:
    """A name for this process's leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Lease:
    task_id: int
    owner: str
    seconds: int  # how long each claim or renewal lasts

    def expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds)


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(col(RetrievalTask.lease_expires_at).is_(None), col(RetrievalTask.lease_expires_at) < now)


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Automatic, active, not paused, due, and nobody holds it."""
    return (
        col(RetrievalTask.is_active).is_(True),
        col(RetrievalTask.method) == RetrievalMethod.AUTOMATIC,
        col(RetrievalTask.paused_reason).is_(None),
        col(RetrievalTask.next_run_at) <= now,
        _free(now),
    )


async def claim_due(db: Database, owner: str, *, seconds: int, limit: int, now: datetime | None = None) -> list[Lease]:
    """Claim up to `limit` automatic tasks that are due and not leased, earliest first."""
    if limit <= 0:
        return []
    now = now or utcnow()
    async with db.write() as session:
        due = (
            await session.exec(
                select(RetrievalTask.id)
                .where(*_due(now))
                .order_by(col(RetrievalTask.next_run_at))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        ids = [task_id for task_id in due if task_id is not None]
        if ids:
            await session.exec(
                update(RetrievalTask)
                .where(col(RetrievalTask.id).in_(ids))
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
            )
    return [Lease(task_id, owner, seconds) for task_id in ids]


async def claim(db: Database, task_id: int, owner: str, *, seconds: int) -> Lease | None:
    """Claim one task now (Retrieve Messages Now); None while someone else holds it."""
    now = utcnow()
    async with db.write() as session:
        result = await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == task_id, _free(now))
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
        )
        return Lease(task_id, owner, seconds) if result.rowcount == 1 else None


async def renew_in(session: AsyncSession, lease: Lease) -> None:
    """Extend the lease inside the caller's transaction; LeaseLost (rolling it back) if it is gone."""
    result = await session.exec(
        update(RetrievalTask)
        .where(col(RetrievalTask.id) == lease.task_id, col(RetrievalTask.lease_owner) == lease.owner)
        .values(lease_expires_at=lease.expiry())
    )
    if result.rowcount != 1:
        raise LeaseLost("Another worker took over this retrieval task; this run stopped.")


async def renew(db: Database, lease: Lease) -> None:
    async with db.write() as session:
        await renew_in(session, lease)


async def release(db: Database, lease: Lease, *, next_run_at: datetime | None) -> None:
    """Give the task back, with when it is due next (only if we still hold it)."""
    async with db.write() as session:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == lease.task_id, col(RetrievalTask.lease_owner) == lease.owner)
            .values(lease_owner=None, lease_expires_at=None, next_run_at=next_run_at)
        )


async def due_count(db: Database, now: datetime | None = None) -> int:
    """Automatic tasks that are due and waiting for a worker (for the metrics)."""
    now = now or utcnow()
    async with db.read() as session:
        count = (await session.exec(select(func.count()).select_from(RetrievalTask).where(*_due(now)))).one()
    return int(count)
