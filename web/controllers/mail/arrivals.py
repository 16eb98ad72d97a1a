"""Where the user's retrieval tasks put the mail they gather, for the empty Inbox to say so.

With "Add as subfolders" (the default) an IMAP task's mail lands under a folder of
its own (`<destination>/INBOX`, `<destination>/Sent`, ...), never in the Inbox, so an
empty Inbox must point there instead of asking for a task the user already has.
The rules follow the runs' plans (service.usecases.retrieval.run): IMAP
subfolders under the task's destination folder (named after the task when none
is set, service.domain.retrieval.default_destination); IMAP root level: the
remote INBOX into the Inbox and the other folders at the top level; POP3: the
destination folder, else the Inbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.mailbox import FolderView
from service.domain.retrieval import TaskView, default_destination
from service.domain.values import FolderTransfer, Protocol


@dataclass(frozen=True, slots=True)
class Place:
    """A local folder by path, with its id when it exists already (else the first run creates it)."""

    path: str
    folder_id: int | None


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where one task's mail arrives. `inbox`: where the remote inbox lands, when not in `folder`
    itself; `in_inbox`: the mail comes to the local Inbox; `root`: the remote folders other than
    the inbox land at the top level of the tree."""

    task_name: str
    folder: Place | None
    inbox: Place | None = None
    in_inbox: bool = False
    root: bool = False


def _place(path: str, by_path: dict[str, int]) -> Place:
    return Place(path=path, folder_id=by_path.get(path))


def arrival(task: TaskView, folders: Sequence[FolderView]) -> Arrival:
    by_path = {folder.path: folder.id for folder in folders}
    if task.protocol is Protocol.POP3:
        if task.destination_folder:
            return Arrival(task.name, _place(task.destination_folder, by_path))
        return Arrival(task.name, None, in_inbox=True)
    if task.folder_transfer is FolderTransfer.ROOT:
        return Arrival(task.name, None, in_inbox=True, root=True)
    destination = (task.destination_folder or default_destination(task.name, task.username, task.host)).strip("/")
    return Arrival(task.name, _place(destination, by_path), inbox=_place(f"{destination}/INBOX", by_path))


def arrivals(tasks: Sequence[TaskView], folders: Sequence[FolderView]) -> list[Arrival]:
    """Each task's arrival, in the order the tasks are listed in Settings."""
    return [arrival(task, folders) for task in tasks]
