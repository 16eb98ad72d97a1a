"""Retrieving every folder of an IMAP account, incrementally and exactly once.

Per remote folder the cursor is (UIDVALIDITY, highest stored UID); a run reads
all of the task's cursors at once. It EXAMINEs each folder and, unless the
announced UIDNEXT shows nothing new, asks for UIDs above the cursor, plans batches bounded by
count and bytes from RFC822.SIZE (skipping, with a warning, messages over the
domain's limit), and downloads batch n+1 while batch n is being committed.

When UIDVALIDITY changed (RFC 3501 2.3.1.1: the old UIDs mean nothing now),
the folder is read again from the start and each message is matched by the
SHA-256 of its bytes (which covers size and Message-ID) against what this task
already stored from it, counting duplicates, so nothing is imported twice and
nothing skipped. A folder renamed on the server keeps its cursor, and where it can its
local folder, under the new name (imap_renames). One failing folder does not stop the others; a lost
connection ends the run, keeping every committed batch.

What to import (service.domain.import_choices): only the folders the task's selection includes
are retrieved (the others' cursors are kept; an excluded folder with a cursor is only EXAMINEd,
so that one renamed to an included path is followed, not imported again). Until a run
completes, a folder met without a cursor follows the initial import choice: "new" sets its
cursor at the last UID without downloading anything; "since" downloads what UID SEARCH SINCE
finds and then moves the cursor to the last UID the folder had, so older mail stays behind
(a "since" run cut between batches applies SINCE again above its cursor: _initial_applies).
After that, and for every folder first met later, everything is imported.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from service.domain.import_choices import FolderSelection, InitialImport, InitialKind
from service.domain.retrieval import BatchLimits, FolderResult, RunResult, local_target
from service.domain.values import FolderTransfer
from service.errors import MailboxMissing, MessageWithheld
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage
from service.protocols.imap import ImapSession, RemoteFolder
from service.usecases.retrieval.imap_batches import Batch, Source, plan_batches
from service.usecases.retrieval.imap_batches import incoming_message as incoming_message  # push's fast path uses it
from service.usecases.retrieval.imap_prefetch import Prefetch
from service.usecases.retrieval.imap_renames import Orphans, follow_rename, orphan_reset_excluded
from service.usecases.retrieval.store import (
    Adoption,
    Cursor,
    Owner,
    commit_batch,
    load_cursors,
    resolve_folder,
    stored_hashes,
)


@dataclass(frozen=True, slots=True)
class ImapPlan:
    """Where a task's folders land and what it may store."""

    owner: Owner
    transfer: FolderTransfer
    destination: str
    max_message_bytes: int
    batch: BatchLimits
    selection: FolderSelection = field(default_factory=FolderSelection)
    initial: InitialImport | None = None  # None once a run completed: every new folder comes whole


async def _initial_uids(session: ImapSession, initial: InitialImport, uids: list[int]) -> list[int]:
    """Of a folder's `uids` (all of them, never retrieved), those the initial import brings."""
    if initial.kind is InitialKind.NEW:
        return []
    if initial.kind is InitialKind.SINCE and initial.since is not None:
        found = set(await asyncio.to_thread(session.uids_since, initial.since))
        return [uid for uid in uids if uid in found]
    return uids


def _initial_applies(initial: InitialImport, cursor: Cursor | None) -> bool:
    """Whether the initial import still decides which of a folder's UIDs above its cursor come.

    A folder without a cursor: always. One with a cursor while the choice is still pending was
    reached by a first run that did not complete: "new" moved its cursor in one step, so all
    above it arrived later and comes; "since" may have been cut between two batches, with older
    mail above the cursor still to leave behind, so SINCE decides again (mail that arrived
    meanwhile has a recent internal date and passes)."""
    return cursor is None or initial.kind is InitialKind.SINCE


async def retrieve_folder(
    db: Database,
    session: ImapSession,
    plan: ImapPlan,
    folder: RemoteFolder,
    result: FolderResult,
    cursor: Cursor | None,
    orphans: Orphans | None = None,
    *,
    defer_reset: bool = False,
) -> bool:
    """Bring one remote folder up to date from its `cursor` (None: never retrieved), counting
    into `result` as batches commit. Raises on connection loss; every committed batch stays.
    A folder without a cursor may be one of the `orphans` renamed (see imap_renames).

    With `defer_reset`, a folder whose UIDVALIDITY is not its cursor's is left alone and False
    returned: its cursor becomes an orphan, since the folder it counted may have been renamed
    (and a new one created under the old name); retrieve_account decides that later."""
    special = folder.special_use.decode() if folder.special_use else None
    target = local_target(
        folder.path,
        special,
        transfer=plan.transfer,
        destination=plan.destination,
        personal_prefix=folder.personal_prefix,
    )
    result.local = target.path or (target.special_use or "").capitalize()
    selected = await asyncio.to_thread(session.select, folder)
    if defer_reset and orphans is not None and cursor is not None and cursor.uidvalidity != selected.uidvalidity:
        orphans.cursors[folder.path] = cursor
        return False
    known: Counter[str] = Counter()
    adopt_from: list[str] = []  # gone folders whose matched messages become this folder's
    if cursor is None and orphans is not None and orphans.cursors:  # new here, or renamed on the server
        claimed = orphans.claim(selected.uidvalidity, selected.uidnext)
        if claimed is not None:
            old, cursor = claimed
            old_target = local_target(
                old,
                None,
                transfer=plan.transfer,
                destination=plan.destination,
                personal_prefix=folder.personal_prefix,
            )
            await follow_rename(
                db,
                plan.owner,
                old=old,
                new=folder.path,
                old_target=old_target,
                new_target=target,
                host=session.account.host,
            )
        else:
            adopt_from = list(orphans.cursors)
    rescan = cursor is not None and cursor.uidvalidity != selected.uidvalidity
    last_uid = cursor.last_uid if cursor is not None and not rescan else 0
    nothing_new = selected.exists == 0 or (selected.uidnext is not None and selected.uidnext <= last_uid + 1)
    uids = [] if nothing_new else await asyncio.to_thread(session.uids_above, last_uid)
    ceiling = 0  # the initial import left the folder's older mail behind: the cursor passes it
    if plan.initial is not None and uids and not adopt_from and _initial_applies(plan.initial, cursor):
        ceiling = uids[-1]
        uids = await _initial_uids(session, plan.initial, uids)
    if rescan:
        known = await stored_hashes(db, plan.owner.task_id, folder.path)
    elif adopt_from and uids and orphans is not None:  # a new folder while others are gone: match by content
        known = await orphans.hashes(db, plan.owner.task_id)
    warnings = (
        [
            f"The folder {folder.path} on {session.account.host} was reset by the server (UIDVALIDITY changed); "
            "its messages were matched again, so nothing is imported twice."
        ]
        if rescan
        else []
    )
    if not uids:
        if cursor is None or rescan or ceiling > last_uid:  # remember UIDVALIDITY even while empty; pass what stays
            await commit_batch(
                db,
                owner=plan.owner,
                folder_id=await resolve_folder(db, plan.owner.user_id, target),
                remote_folder=folder.path,
                messages=[],
                cursor=Cursor(selected.uidvalidity, max(last_uid, ceiling)),
                warnings=warnings,
            )
        return True
    folder_id = await resolve_folder(db, plan.owner.user_id, target)
    sizes = await asyncio.to_thread(lambda: session.sizes(uids, folder=folder.path))
    batches = plan_batches(uids, sizes, max_message_bytes=plan.max_message_bytes, limits=plan.batch)
    committer = _FolderCommitter(
        db, plan, folder.path, folder_id, selected.uidvalidity, known, warnings, result, adopt_from
    )
    ahead = Prefetch(Source(session, plan.owner.task_id, folder.path, selected.uidvalidity, db.bodies), batches)
    try:
        for batch in batches:
            fetched = await ahead.next(more=not plan.owner.stopping)
            await committer.commit(batch, fetched)
            if plan.owner.stopping:  # shutting down: this batch is safe, the rest waits for the next run
                break
    finally:
        await ahead.settle()  # a commit failed or a shutdown: the session is idle before it closes
    if ceiling > (batches[-1].cover if batches else 0) and not plan.owner.stopping:
        await commit_batch(  # "since": the older mail above the last one brought stays behind
            db,
            owner=plan.owner,
            folder_id=folder_id,
            remote_folder=folder.path,
            messages=[],
            cursor=Cursor(selected.uidvalidity, ceiling),
        )
    return True


@dataclass(slots=True)
class _FolderCommitter:
    """Commits a folder's downloaded batches in order, matching them against `known` (after a
    reset, or against gone folders: `adopt_from`, whose matched messages then take this one's origin)."""

    db: Database
    plan: ImapPlan
    remote_folder: str
    folder_id: int
    uidvalidity: int
    known: Counter[str]
    warnings: list[str]
    result: FolderResult
    adopt_from: list[str]

    async def commit(self, batch: Batch, fetched: list[IncomingMessage]) -> None:
        fresh = []
        matched: list[tuple[str, int]] = []
        for message in fetched:
            digest = message.index.sha256 if message.index is not None else ""
            if self.known[digest] > 0:  # stored before: after a reset, or from a folder now gone
                self.known[digest] -= 1
                self.result.skipped += 1
                if message.origin is not None and message.origin.uid is not None:
                    matched.append((digest, message.origin.uid))
                continue
            fresh.append(message)
        warnings = self.warnings + [
            f"Message {uid} in {self.remote_folder} ({size:,} bytes) is larger than the "
            f"{self.plan.max_message_bytes:,} bytes your administrator allows and was not retrieved."
            for uid, size in batch.too_large
        ]
        self.warnings = []
        self.result.skipped += len(batch.too_large)
        self.result.imported += await commit_batch(
            self.db,
            owner=self.plan.owner,
            folder_id=self.folder_id,
            remote_folder=self.remote_folder,
            messages=fresh,
            cursor=Cursor(self.uidvalidity, batch.cover),
            warnings=warnings,
            adopt=Adoption(self.adopt_from, matched) if self.adopt_from and matched else None,
        )


async def retrieve_account(db: Database, session: ImapSession, plan: ImapPlan, run: RunResult) -> None:
    """Every selectable folder, one after the other, counted into `run` as they go.
    A folder that cannot be opened is reported and skipped; a lost connection raises.

    A cursor is orphaned when its (path, UIDVALIDITY) is gone: its path is not listed, or the
    folder listed there now has another UIDVALIDITY (renamed, and a new folder created under
    the old name, as clients and Dovecot's auto=create do for Sent). So the folders whose
    cursor still holds go first (EXAMINE tells), then those without one, parents before their
    children (a renamed tree's local folder moves as a whole), which may claim an orphan as
    renamed, and last those whose UIDVALIDITY changed: still unclaimed, their cursor is theirs
    and they were reset by the server; claimed, they are new folders."""
    listed = await asyncio.to_thread(session.list_folders)
    cursors = await load_cursors(db, plan.owner.task_id)
    orphans = Orphans.of(cursors, {folder.path for folder in listed})  # excluded folders are not gone
    chosen = [folder for folder in listed if plan.selection.includes(folder.path)]
    excluded = [folder for folder in listed if not plan.selection.includes(folder.path)]
    await orphan_reset_excluded(session, excluded, cursors, orphans)
    folders = sorted(chosen, key=lambda folder: folder.path.count("/"))
    new = [folder for folder in folders if folder.path not in cursors]
    changed: list[RemoteFolder] = []
    for folder in folders:
        if folder.path in cursors and not await _retrieve_one(
            db, session, plan, run, folder, cursors[folder.path], orphans, defer_reset=True
        ):
            changed.append(folder)
    for folder in new:
        await _retrieve_one(db, session, plan, run, folder, None, orphans)
    for folder in changed:
        await _retrieve_one(db, session, plan, run, folder, orphans.cursors.pop(folder.path, None), orphans)


async def _retrieve_one(
    db: Database,
    session: ImapSession,
    plan: ImapPlan,
    run: RunResult,
    folder: RemoteFolder,
    cursor: Cursor | None,
    orphans: Orphans,
    *,
    defer_reset: bool = False,
) -> bool:
    """retrieve_folder, counted into `run` unless deferred (False); a folder error is reported."""
    if plan.owner.stopping:
        return True
    folder_result = FolderResult(remote=folder.path, local="")
    run.folders.append(folder_result)
    try:
        done = await retrieve_folder(db, session, plan, folder, folder_result, cursor, orphans, defer_reset=defer_reset)
    except (MailboxMissing, MessageWithheld) as exc:
        folder_result.error = exc.message
        run.errors.append(exc.message)
        done = True
    finally:
        run.imported += folder_result.imported
        run.skipped += folder_result.skipped
    if not done:
        run.folders.remove(folder_result)
    return done
