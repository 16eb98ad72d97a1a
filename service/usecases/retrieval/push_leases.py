"""Push leases: each task's one push connection (IMAP IDLE/NOTIFY) is held by one process.

A push lease is (push_owner, push_expires_at) on the task's row, apart from the
run lease (lease_owner, lease_expires_at): holding a task's push connection
says nothing about who runs it. A supervisor (push.py) claims free leases of
eligible tasks up to its connection budget (FOR UPDATE SKIP LOCKED on
PostgreSQL, as lease.py; SQLite's BEGIN IMMEDIATE serialises claimers) and
renews them all in one UPDATE every third of a lease period. The renewal
extends only leases that are still ours AND whose task is still eligible, so a
task that was edited (the edit clears the push lease), paused, deleted,
switched to manual or to no push, or whose domain turned retrieval off, drops
out within one renewal period and its connection is closed. A supervisor that
dies stops renewing; its leases expire and another process takes them.

A task whose push stopped (the server offers no IDLE, sign-in refused) is
released with `push_retry_at`; it is not claimed again before then, while
polling goes on as before.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, update
from sqlmodel import col, select

from service.domain.oauth import CredentialStatus
from service.domain.values import Protocol, PushState, RetrievalMethod
from service.persistence.database import Database
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow


def _eligible(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Tasks that should have a push connection: active automatic IMAP tasks with push on, not
    paused, signed in, of an active user whose domain lets them retrieve, and not waiting for a retry time."""
    enabled_users = (
        select(User.id)
        .join(Domain, col(User.domain_id) == Domain.id)
        .where(col(Domain.retrieval_enabled), col(User.is_active))
    )
    return (
        col(RetrievalTask.is_active).is_(True),
        col(RetrievalTask.method) == RetrievalMethod.AUTOMATIC,
        col(RetrievalTask.protocol) == Protocol.IMAP,
        col(RetrievalTask.push).is_(True),
        col(RetrievalTask.paused_reason).is_(None),
        col(RetrievalTask.oauth_status) == CredentialStatus.OK,
        col(RetrievalTask.user_id).in_(enabled_users),
        or_(col(RetrievalTask.push_retry_at).is_(None), col(RetrievalTask.push_retry_at) <= now),
    )


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(col(RetrievalTask.push_owner).is_(None), col(RetrievalTask.push_expires_at) < now)


async def claim_push(db: Database, owner: str, *, seconds: int, limit: int, now: datetime | None = None) -> list[int]:
    """Take up to `limit` eligible tasks whose push lease is free (or expired: its holder died),
    marking them CONNECTING; returns their ids."""
    return [task_id for task_id, _ in await claim_push_handover(db, owner, seconds=seconds, limit=limit, now=now)]


async def claim_push_handover(
    db: Database, owner: str, *, seconds: int, limit: int, now: datetime | None = None
) -> list[tuple[int, bool]]:
    """claim_push, saying for each task whether push was on for it until now (another process held
    it and died, or handed it over at shutdown): mail that arrived in between was announced to
    nobody, so the new holder catches up with one run."""
    if limit <= 0:
        return []
    now = now or utcnow()
    async with db.write() as session:
        found = (
            await session.exec(
                select(RetrievalTask.id, RetrievalTask.push_owner, RetrievalTask.push_state)
                .where(*_eligible(now), _free(now))
                .order_by(col(RetrievalTask.id))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        claimed = [
            (task_id, previous is not None or state in (PushState.LISTENING, PushState.CONNECTING))
            for task_id, previous, state in found
            if task_id is not None
        ]
        if claimed:
            await session.exec(
                update(RetrievalTask)
                .where(col(RetrievalTask.id).in_([task_id for task_id, _ in claimed]))
                .values(
                    push_owner=owner,
                    push_expires_at=now + timedelta(seconds=seconds),
                    push_state=PushState.CONNECTING,
                    push_detail=None,
                    push_retry_at=None,
                )
            )
    return claimed


async def renew_push(
    db: Database, owner: str, ids: Collection[int], *, seconds: int, now: datetime | None = None
) -> set[int]:
    """Extend the leases this owner still holds on tasks that are still eligible, in one UPDATE;
    returns the ids kept (the caller closes the connections of the others)."""
    if not ids:
        return set()
    now = now or utcnow()
    held = (col(RetrievalTask.id).in_(list(ids)), col(RetrievalTask.push_owner) == owner, *_eligible(now))
    async with db.write() as session:
        await session.exec(update(RetrievalTask).where(*held).values(push_expires_at=now + timedelta(seconds=seconds)))
        kept = (await session.exec(select(RetrievalTask.id).where(*held))).all()
    return {task_id for task_id in kept if task_id is not None}


async def set_push_state(
    db: Database,
    task_id: int,
    owner: str,
    state: PushState,
    detail: str | None,
    retry_at: datetime | None = None,
) -> bool:
    """Record what the connection found, only while `owner` still holds the push lease."""
    async with db.write() as session:
        result = await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == task_id, col(RetrievalTask.push_owner) == owner)
            .values(push_state=state, push_detail=detail, push_retry_at=retry_at)
        )
        return bool(result.rowcount == 1)


async def release_push(
    db: Database,
    owner: str,
    ids: Collection[int],
    *,
    state: PushState | None = None,
    detail: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Give up the push leases this owner still holds, recording the state (None: no connection)
    and when the task may be claimed again (None: at once)."""
    if not ids:
        return
    async with db.write() as session:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id).in_(list(ids)), col(RetrievalTask.push_owner) == owner)
            .values(push_owner=None, push_expires_at=None, push_state=state, push_detail=detail, push_retry_at=retry_at)
        )


def eligible(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The conditions on a RetrievalTask row (with its user and domain) for pushing, for a
    caller's own query (push's fast path reads them with the task)."""
    return _eligible(now)


async def push_eligible(db: Database, task_id: int, now: datetime | None = None) -> bool:
    """Whether the task should still be pushing (checked before a push-triggered run)."""
    now = now or utcnow()
    async with db.read() as session:
        found = (
            await session.exec(select(RetrievalTask.id).where(col(RetrievalTask.id) == task_id, *_eligible(now)))
        ).first()
    return found is not None


async def held_by(db: Database, owner: str) -> set[int]:
    """The tasks whose push lease `owner` holds (tests, diagnostics)."""
    async with db.read() as session:
        rows = (await session.exec(select(RetrievalTask.id).where(col(RetrievalTask.push_owner) == owner))).all()
    return {task_id for task_id in rows if task_id is not None}
