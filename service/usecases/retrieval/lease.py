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

A lease also names its holder's process (host, boot id, pid namespace, process
id and start time, see holder.py). A claimer on the same machine whose holder process no
longer exists takes the lease at once instead of waiting for the expiry: a run
killed with SIGKILL does not block "Retrieve Messages Now" or the dispatcher.
Holders on other machines are never judged; their leases only expire.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.oauth import CredentialStatus
from service.domain.values import RetrievalMethod
from service.errors import TributaryError
from service.persistence.database import Database
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.usecases.retrieval.holder import Holder, this_process

log = logging.getLogger(__name__)


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


def _scheduled(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Automatic, active, of an active user (a disabled user's tasks never run) in a domain whose
    retrieval switch is on (while it is off the tasks wait, healthy and due, for it to come back on),
    not paused, signed in (an OAuth2 task waiting for its consent or for Reconnect is never claimed:
    no retry loop against the provider) and due."""
    return (
        col(RetrievalTask.is_active).is_(True),
        col(RetrievalTask.user_id).in_(select(User.id).where(col(User.is_active))),
        col(RetrievalTask.user_id).in_(
            select(User.id).join(Domain, col(Domain.id) == col(User.domain_id)).where(col(Domain.retrieval_enabled))
        ),
        col(RetrievalTask.method) == RetrievalMethod.AUTOMATIC,
        col(RetrievalTask.paused_reason).is_(None),
        col(RetrievalTask.oauth_status) == CredentialStatus.OK,
        col(RetrievalTask.next_run_at) <= now,
    )


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Automatic, active, not paused, due, and nobody holds it."""
    return (*_scheduled(now), _free(now))


def _stamp(owner: str, holder: Holder, expires_at: datetime) -> dict[str, Any]:
    """The columns a claim writes: who holds the lease, which process that is, until when."""
    return {
        "lease_owner": owner,
        "lease_expires_at": expires_at,
        "lease_host": holder.host,
        "lease_boot_id": holder.boot_id,
        "lease_pid_namespace": holder.namespace,
        "lease_pid": holder.pid,
        "lease_pid_started": holder.started,
    }


def _holder_of(task: RetrievalTask) -> Holder | None:
    if task.lease_host is None or task.lease_pid is None:
        return None
    return Holder(task.lease_host, task.lease_boot_id, task.lease_pid_namespace, task.lease_pid, task.lease_pid_started)


def _dead_holder(task: RetrievalTask, here: Holder, now: datetime) -> bool:
    """Leased, not expired, by a process on this machine that no longer exists."""
    holder = _holder_of(task)
    held = task.lease_owner is not None and task.lease_expires_at is not None and task.lease_expires_at >= now
    return held and holder is not None and holder.same_machine(here) and holder.is_gone()


async def _abandoned_here(session: AsyncSession, here: Holder, now: datetime) -> list[RetrievalTask]:
    """Due tasks leased by processes of this machine that died (few: at most the runs they held)."""
    if here.boot_id is None:
        return []
    held_here = (
        await session.exec(
            select(RetrievalTask)
            .where(
                *_scheduled(now),
                col(RetrievalTask.lease_expires_at) >= now,
                col(RetrievalTask.lease_boot_id) == here.boot_id,
                col(RetrievalTask.lease_host) == here.host,
                col(RetrievalTask.lease_pid_namespace) == here.namespace,
            )
            .with_for_update(skip_locked=True)
        )
    ).all()
    return [task for task in held_here if _dead_holder(task, here, now)]


async def claim_due(
    db: Database, owner: str, *, seconds: int, limit: int, now: datetime | None = None, holder: Holder | None = None
) -> list[Lease]:
    """Claim up to `limit` automatic tasks that are due and not leased (or leased by a process of
    this machine that died), earliest first."""
    if limit <= 0:
        return []
    now = now or utcnow()
    here = holder or this_process()
    async with db.write() as session:
        abandoned = (await _abandoned_here(session, here, now))[:limit]
        due = (
            await session.exec(
                select(RetrievalTask.id)
                .where(*_due(now))
                .order_by(col(RetrievalTask.next_run_at))
                .limit(limit - len(abandoned))
                .with_for_update(skip_locked=True)
            )
        ).all()
        taken = {task.id: task.lease_owner for task in abandoned}
        ids = [task_id for task_id in due if task_id is not None] + [
            task_id for task_id in taken if task_id is not None
        ]
        if ids:
            await session.exec(
                update(RetrievalTask)
                .where(col(RetrievalTask.id).in_(ids))
                .values(**_stamp(owner, here, now + timedelta(seconds=seconds)))
            )
    for task_id, dead in taken.items():
        log.info("task %s: took over the lease of %s, a process that no longer runs", task_id, dead)
    return [Lease(task_id, owner, seconds) for task_id in ids]


async def claim(
    db: Database,
    task_id: int,
    owner: str,
    *,
    seconds: int,
    now: datetime | None = None,
    holder: Holder | None = None,
    then: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> Lease | None:
    """Claim one task now (Retrieve Messages Now); None while someone else holds it. A lease held
    by a process of this machine that no longer exists is taken over at once. `then(session)`
    runs in the claim's transaction once claimed (push's fast path reads there); what it raises
    undoes the claim."""
    now = now or utcnow()
    here = holder or this_process()
    stamp = _stamp(owner, here, now + timedelta(seconds=seconds))
    dead: str | None = None
    async with db.write() as session:
        # The common case in one statement: the lease is free (or expired).
        claimed = (
            await session.exec(
                update(RetrievalTask).where(col(RetrievalTask.id) == task_id, _free(now)).values(**stamp)
            )
        ).rowcount == 1
        if not claimed:
            task = (
                await session.exec(select(RetrievalTask).where(col(RetrievalTask.id) == task_id).with_for_update())
            ).first()
            dead = task.lease_owner if task is not None and _dead_holder(task, here, now) else None
            if dead is not None:  # compare and swap: only from the dead holder
                result = await session.exec(
                    update(RetrievalTask)
                    .where(col(RetrievalTask.id) == task_id, col(RetrievalTask.lease_owner) == dead)
                    .values(**stamp)
                )
                claimed = result.rowcount == 1
        if claimed and then is not None:
            await then(session)
    if claimed and dead is not None:
        log.info("task %s: took over the lease of %s, a process that no longer runs", task_id, dead)
    return Lease(task_id, owner, seconds) if claimed else None


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


async def give_back(db: Database, lease: Lease) -> None:
    """Release the lease (if still ours) leaving the next run where it was: push's fast path,
    interrupted before it recorded its outcome."""
    async with db.write() as session:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == lease.task_id, col(RetrievalTask.lease_owner) == lease.owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


async def due_count(db: Database, now: datetime | None = None) -> int:
    """Automatic tasks that are due and waiting for a worker (for the metrics)."""
    now = now or utcnow()
    async with db.read() as session:
        count = (await session.exec(select(func.count()).select_from(RetrievalTask).where(*_due(now)))).one()
    return int(count)
