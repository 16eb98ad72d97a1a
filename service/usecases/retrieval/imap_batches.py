"""An IMAP folder's download plan and sources: UIDs split into batches bounded by count and
bytes (from RFC822.SIZE, too-large messages riding along to be skipped with a warning), and
each fetched message made an IncomingMessage with its identity (task, remote folder,
UIDVALIDITY, UID: DESIGN section 3). Used by imap_run (full runs) and push's fast path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.domain.message_index import index_message
from service.domain.retrieval import BatchLimits
from service.persistence.bodies import Bodies
from service.persistence.mailstore import IncomingMessage, MessageOrigin, prestore_now
from service.protocols.imap import FetchedMessage, ImapSession


@dataclass(frozen=True, slots=True)
class Batch:
    """UIDs to download, UIDs skipped as too large, and the highest UID the batch covers."""

    fetch: list[int]
    too_large: list[tuple[int, int]] = field(default_factory=list)

    @property
    def cover(self) -> int:
        return max([*self.fetch, *(uid for uid, _ in self.too_large)])


def plan_batches(
    uids: Sequence[int], sizes: dict[int, int], *, max_message_bytes: int, limits: BatchLimits
) -> list[Batch]:
    """Split ascending UIDs into batches within `limits`; too-large ones ride along, to be skipped."""
    batches: list[Batch] = []
    fetch: list[int] = []
    too_large: list[tuple[int, int]] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid)
        if size is None:
            continue  # expunged since SEARCH (session.sizes checked)
        if size > max_message_bytes:
            too_large.append((uid, size))
            continue
        if limits.full(len(fetch), total, size):
            batches.append(Batch(fetch, too_large))
            fetch, too_large, total = [], [], 0
        fetch.append(uid)
        total += size
    if fetch or too_large:
        batches.append(Batch(fetch, too_large))
    return batches


@dataclass(frozen=True, slots=True)
class Source:
    """Where a folder's messages come from: the session, the identity each message gets, and
    the body store that keeps their bytes."""

    session: ImapSession
    task_id: int
    remote_folder: str
    uidvalidity: int
    bodies: Bodies

    def fetch(self, uids: list[int]) -> list[IncomingMessage]:
        """Fetch a batch and index its headers, in the calling worker thread. Its search text is
        derived later (service.persistence.search_backlog)."""
        return [
            incoming_message(m, self.task_id, self.remote_folder, self.uidvalidity)
            for m in self.session.fetch(uids, folder=self.remote_folder)
        ]

    def store(self, fetched: list[IncomingMessage]) -> list[IncomingMessage]:
        """Make a fetched batch's bodies durable (`prestore_now`) in the calling worker thread, so
        its commit only writes rows. The disk and the hashing release the GIL."""
        return prestore_now(self.bodies, fetched)


def incoming_message(message: FetchedMessage, task_id: int, remote: str, uidvalidity: int) -> IncomingMessage:
    return IncomingMessage(
        raw=message.raw,
        seen="\\Seen" in message.flags,
        flagged="\\Flagged" in message.flags,
        answered="\\Answered" in message.flags,
        draft="\\Draft" in message.flags,
        received_at=message.internal_date,
        origin=MessageOrigin(task_id=task_id, remote_folder=remote, uidvalidity=uidvalidity, uid=message.uid),
        index=index_message(message.raw, with_search=False),  # indexed for search later (search_backlog)
    )
