"""Retrieving a POP3 inbox: new UIDLs in batches, deletion only after a durable commit.

The order is what keeps mail safe (RFC 1939 sections 6 and 7):

1. LIST and UIDL; messages whose UIDL key this task stored are not fetched again.
2. RETR a batch, commit the messages with their UIDL keys (SQLite commits with
   synchronous=FULL, so the copy survives a power cut), and only then DELE them
   when "Leave messages on server" is off. The next batch downloads while one
   commits; the DELEs of a committed batch go out just before the RETRs after it.
3. Messages stored by an earlier run are DELEd too: a run that died before QUIT
   left them on the server, and this one finishes its work.
4. QUIT commits the deletions. A session that ends any other way deletes nothing,
   and the next run recognises every UIDL, so nothing is lost or imported twice.
5. UIDL keys of messages no longer on the server are forgotten.

A UIDL that appears more than once is ambiguous: each copy is imported once and
none is ever deleted. A UIDL that is not 1-70 printable characters is kept as a
hash. Without UIDL the messages can only be told apart by content: allowed only
when they are deleted after retrieval, with their SHA-256 as the key.

The initial import (service.domain.import_choices), until a run applied it (recorded with what
it leaves behind, or by a completed run): "new" records every
UIDL on the server without downloading; "since" reads each message's Date header (TOP n 0) and
records the older ones (a message without a readable Date is imported: nothing is lost by
guessing). Recorded UIDLs are `not_imported`: never fetched later, and never deleted from the
server, since no local copy exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select, update

from service.domain.import_choices import InitialImport, InitialKind
from service.domain.message_index import index_message
from service.domain.retrieval import BatchLimits, FolderResult, LocalTarget, RunResult
from service.errors import UnsupportedByServer
from service.persistence.bodies import Bodies
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage, MessageOrigin, prestore_now
from service.persistence.tables import PopUidl, RetrievalTask
from service.persistence.types import utcnow
from service.protocols.pop3 import Pop3Session
from service.usecases.retrieval.store import Owner, commit_pop_batch, forget_uidls, known_uidls, resolve_folder

REMOTE_FOLDER = "INBOX"


@dataclass(frozen=True, slots=True)
class Pop3Plan:
    owner: Owner
    target: LocalTarget
    leave_on_server: bool
    delete_after_days: int | None
    max_message_bytes: int
    batch: BatchLimits
    initial: InitialImport | None = None  # None once a run completed (or "all"): everything new comes


def uidl_key(uidl: bytes) -> str:
    """The stored form of a UIDL: itself when it is 1-70 printable ASCII characters (RFC 1939
    section 7), else a hash of its bytes, so odd server values can neither break nor collide."""
    if 1 <= len(uidl) <= 70 and all(0x21 <= byte <= 0x7E for byte in uidl):
        return uidl.decode("ascii")
    return "x:" + hashlib.sha256(uidl).hexdigest()


@dataclass(slots=True)
class _Maildrop:
    """The server's messages by number, with their keys (None without UIDL) and the ambiguous ones."""

    sizes: dict[int, int]
    keys: dict[int, str] | None
    ambiguous: set[int]

    @classmethod
    def from_listing(cls, sizes: dict[int, int], uidls: dict[int, bytes] | None) -> _Maildrop:
        if uidls is None:
            return cls(sizes, None, set())
        counts = Counter(uidls.values())
        seen: Counter[bytes] = Counter()
        keys: dict[int, str] = {}
        ambiguous: set[int] = set()
        for number in sorted(uidls):
            uidl = uidls[number]
            key = uidl_key(uidl)
            if counts[uidl] > 1:
                seen[uidl] += 1
                key = f"{key}#{seen[uidl]}"
                ambiguous.add(number)
            keys[number] = key
        return cls(sizes, keys, ambiguous)


def _batches(numbers: Sequence[int], sizes: dict[int, int], limits: BatchLimits) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for number in numbers:
        size = sizes[number]
        if limits.full(len(current), total, size):
            batches.append(current)
            current, total = [], 0
        current.append(number)
        total += size
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True, slots=True)
class _Fetch:
    """What the download thread needs: the session, the maildrop's sizes, whose mail it is and
    where bodies are kept."""

    session: Pop3Session
    sizes: dict[int, int]
    task_id: int
    bodies: Bodies

    def download(self, numbers: list[int]) -> list[tuple[int, IncomingMessage]]:
        """RETR a batch (pipelined when the server allows it), index each message's headers and
        make the bodies durable (`prestore_now`), in the calling worker thread: the event loop
        only commits. Search text is derived later (service.persistence.search_backlog)."""
        fetched = [
            (number, IncomingMessage(raw=raw, origin=self._origin, index=index_message(raw, with_search=False)))
            for number, raw in self.session.retrieve_many(numbers, self.sizes)
        ]
        stored = prestore_now(self.bodies, [message for _, message in fetched])
        return [(number, message) for (number, _), message in zip(fetched, stored, strict=True)]

    def mark_then_download(self, committed: tuple[int, ...], numbers: list[int]) -> list[tuple[int, IncomingMessage]]:
        """DELE what earlier commits made safe, then RETR the next batch (each pipelined when the
        server allows it). `committed` is a tuple the caller will never change, whatever the loop does next."""
        _mark(self.session, committed)
        return self.download(numbers)

    @property
    def _origin(self) -> MessageOrigin:
        return MessageOrigin(task_id=self.task_id, remote_folder=REMOTE_FOLDER)


async def retrieve_pop3(db: Database, session: Pop3Session, plan: Pop3Plan, run: RunResult) -> None:
    """One POP3 run (see the module docstring). Raises on connection loss; committed batches stay."""
    result = FolderResult(remote=REMOTE_FOLDER, local=plan.target.path or "Inbox")
    run.folders.append(result)
    try:
        await _retrieve(db, session, plan, result)
    finally:
        run.imported += result.imported
        run.skipped += result.skipped


async def _retrieve(db: Database, session: Pop3Session, plan: Pop3Plan, result: FolderResult) -> None:
    listing = await asyncio.to_thread(session.listing)
    if listing.uidls is None and plan.leave_on_server:
        raise UnsupportedByServer(
            f"{session.account.host} does not support UIDL, so messages left on the server cannot be told "
            'apart from new ones. Turn off "Leave messages on server" to retrieve and delete them instead.'
        )
    drop = _Maildrop.from_listing(listing.sizes, listing.uidls)
    known = await known_uidls(db, plan.owner.task_id)
    folder_id = await resolve_folder(db, plan.owner.user_id, plan.target)

    too_large = [n for n in sorted(drop.sizes) if drop.sizes[n] > plan.max_message_bytes]
    wanted = [n for n in sorted(drop.sizes) if n not in too_large and (drop.keys is None or drop.keys[n] not in known)]
    if plan.initial is not None:
        wanted = await _leave_behind(db, session, plan, drop, wanted, known)
    left_behind = await _not_imported(db, plan.owner.task_id)
    warnings = [
        f"Message {n} on {session.account.host} ({drop.sizes[n]:,} bytes) is larger than the "
        f"{plan.max_message_bytes:,} bytes your administrator allows and was not retrieved."
        for n in too_large
    ]
    result.skipped += len(too_large)
    marked: set[int] = set()
    # Stored and committed, not yet DELEd. Only this loop changes it; a download thread gets a
    # tuple copy, and whatever is left when the loop ends is DELEd explicitly after it.
    to_delete: list[int] = []
    batches = _batches(wanted, drop.sizes, plan.batch)
    fetch = _Fetch(session, drop.sizes, plan.owner.task_id, db.bodies)
    pending = asyncio.ensure_future(asyncio.to_thread(fetch.download, batches[0])) if batches else None
    try:
        for index, batch in enumerate(batches):
            assert pending is not None
            fetched = await pending
            pending = None
            if index + 1 < len(batches) and not plan.owner.stopping:
                due = tuple(to_delete)
                to_delete.clear()
                pending = asyncio.ensure_future(asyncio.to_thread(fetch.mark_then_download, due, batches[index + 1]))
            incoming, keys = [], []
            for number, message in fetched:
                assert message.index is not None
                key = drop.keys[number] if drop.keys is not None else "sha256:" + message.index.sha256
                if key in known:  # without UIDL: stored by a run that died before QUIT
                    result.skipped += 1  # (its bytes, already in the body store, are compaction's)
                    continue
                incoming.append(message)
                keys.append(key)
                known[key] = utcnow()
            result.imported += await commit_pop_batch(
                db, owner=plan.owner, folder_id=folder_id, messages=incoming, keys=keys, warnings=warnings
            )
            warnings = []
            if not plan.leave_on_server:  # committed: now, and only now, they may go
                safe = [n for n in batch if n not in drop.ambiguous]
                to_delete.extend(safe)
                marked.update(safe)
            if plan.owner.stopping:  # shutting down: still DELE what is committed and QUIT below
                break
    finally:
        if pending is not None:  # a commit failed: let the download in flight finish before the session closes
            with contextlib.suppress(Exception):
                await pending
    await asyncio.to_thread(_mark, session, tuple(to_delete))
    if warnings:
        await commit_pop_batch(db, owner=plan.owner, folder_id=folder_id, messages=[], keys=[], warnings=warnings)

    earlier = [n for n in _stored_earlier(drop, known, plan, marked) if (drop.keys or {}).get(n) not in left_behind]
    await asyncio.to_thread(_mark, session, earlier)
    marked.update(earlier)
    await asyncio.to_thread(session.quit)  # the server commits the deletions now

    if drop.keys is None:
        await forget_uidls(db, plan.owner.task_id, list(known))
        return
    on_server = {key for number, key in drop.keys.items() if number not in marked}
    await forget_uidls(db, plan.owner.task_id, [key for key in known if key not in on_server])


async def _leave_behind(
    db: Database, session: Pop3Session, plan: Pop3Plan, drop: _Maildrop, wanted: list[int], known: dict[str, datetime]
) -> list[int]:
    """The initial import: records the messages it leaves on the server (adding them to `known`)
    and returns those still to download. The task's initial import is done in the same
    transaction: POP3 has one maildrop, so the choice is applied in full here, and a run that
    fails later (a download, QUIT) must not apply it again to mail that arrived since."""
    assert plan.initial is not None
    if drop.keys is None and wanted:
        raise UnsupportedByServer(
            f"{session.account.host} does not support UIDL, so Tributary cannot remember which messages to leave "
            'behind. Choose "All messages" to import.'
        )
    if plan.initial.kind is InitialKind.NEW:
        behind = list(wanted)
    else:
        since = plan.initial.since
        assert since is not None
        dates = await asyncio.to_thread(lambda: {n: session.header_date(n) for n in wanted})
        behind = [n for n in wanted if (when := dates[n]) is not None and when.date() < since]
    keys = [drop.keys[n] for n in behind] if drop.keys is not None else []
    async with db.write() as transaction:
        for key in keys:
            transaction.add(PopUidl(task_id=plan.owner.task_id, uidl=key, not_imported=True))
        await transaction.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == plan.owner.task_id).values(initial_done=True)
        )
    if keys:
        now = utcnow()
        known.update(dict.fromkeys(keys, now))
    skipped = set(behind)
    return [n for n in wanted if n not in skipped]


async def _not_imported(db: Database, task_id: int) -> set[str]:
    """UIDL keys recorded without a local copy: these never leave the server."""
    async with db.read() as session:
        rows = await session.exec(
            select(PopUidl.uidl).where(col(PopUidl.task_id) == task_id, col(PopUidl.not_imported).is_(True))
        )
        return set(rows.all())


def _stored_earlier(drop: _Maildrop, known: dict[str, datetime], plan: Pop3Plan, marked: set[int]) -> list[int]:
    """Messages already stored that should now leave the server: all of them when nothing is
    left on the server, else those stored more than `delete_after_days` ago."""
    if drop.keys is None or (plan.leave_on_server and plan.delete_after_days is None):
        return []
    cutoff = utcnow() - timedelta(days=plan.delete_after_days or 0)
    return [
        number
        for number, key in sorted(drop.keys.items())
        if number not in marked
        and number not in drop.ambiguous
        and key in known
        and (not plan.leave_on_server or known[key] <= cutoff)
    ]


def _mark(session: Pop3Session, numbers: Sequence[int]) -> None:
    session.mark_deleted_many(numbers)
