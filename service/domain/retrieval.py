"""Retrieval values and rules: task views, run results, and where a remote folder lands locally."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.domain.values import FolderTransfer, Protocol, PushState, RetrievalMethod, Security, SpecialUse


@dataclass(frozen=True, slots=True)
class TaskView:
    """A retrieval task as the faces show it. The password is write-only: never here."""

    id: int
    user_id: int
    name: str
    protocol: Protocol
    host: str
    port: int
    security: Security
    username: str
    verify_certificate: bool
    method: RetrievalMethod
    folder_transfer: FolderTransfer
    destination_folder: str | None
    use_apop: bool
    leave_on_server: bool
    delete_after_days: int | None
    apply_filters: bool
    push: bool  # IMAP, automatic: the user wants a push connection (IDLE/NOTIFY); always False for POP3
    enable_debug: bool
    is_active: bool
    last_run_at: datetime | None
    last_success_at: datetime | None
    messages_imported: int
    last_error: str | None
    failing_since: datetime | None
    needs_action: bool
    next_run_at: datetime | None
    timeout_seconds: int = 60
    paused_reason: str | None = None
    # What the task's push connection last found (read-only: the push supervisor writes it), in words.
    push_state: PushState | None = None
    push_detail: str | None = None
    # What to import (service.domain.import_choices): "all", "new" or "since:YYYY-MM-DD", and the
    # folder patterns to include (none: every folder) and to exclude.
    initial: str = "all"
    include_folders: tuple[str, ...] = ()
    exclude_folders: tuple[str, ...] = ()


def push_applies(protocol: Protocol, method: RetrievalMethod, push: bool) -> bool:
    """Whether a task holds a push connection: only an automatic IMAP task whose user left "Push new
    mail (IMAP IDLE)" on (POP3 has no IDLE; a manual task runs only when asked)."""
    return push and protocol is Protocol.IMAP and method is RetrievalMethod.AUTOMATIC


@dataclass(slots=True)
class FolderResult:
    """What one remote folder gave in one run."""

    remote: str
    local: str
    imported: int = 0
    skipped: int = 0  # too large, or already here after a UIDVALIDITY change
    error: str | None = None


@dataclass(slots=True)
class RunResult:
    """The outcome of one run: counts, and the errors a user should read."""

    imported: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    folders: list[FolderResult] = field(default_factory=list)
    already_running: bool = False  # another run of the task was in progress: this is its result, or none
    interrupted: bool = False  # stopped early (shutdown); what was committed stays

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        parts = [
            f"{f.remote} -> {f.local}: {f.imported} new"
            + (f", {f.skipped} skipped" if f.skipped else "")
            + (f", error: {f.error}" if f.error else "")
            for f in self.folders
        ]
        head = f"Imported {self.imported} message{'s' if self.imported != 1 else ''}"
        if self.skipped:
            head += f", skipped {self.skipped}"
        return head + (" (" + "; ".join(parts) + ")" if parts else "") + "."

    def sentence(self) -> str:
        """The run in one sentence for "Retrieve Messages Now" ("412 new messages in 6 folders.",
        "No new messages.", "1 new message in Inbox."); the per-folder detail is the log entry's
        (`summary`), the errors are said after it."""
        where = [f.local for f in self.folders if f.imported]
        if not self.imported:
            text = "No new messages"
        else:
            text = f"{self.imported} new message{'s' if self.imported != 1 else ''}"
            if len(where) == 1:
                text += f" in {_folder_name(where[0])}"
            elif where:
                text += f" in {len(where)} folders"
        if self.skipped:
            text += f"; {self.skipped} skipped (too large, or already here)"
        return text + "."


def _folder_name(path: str) -> str:
    """A local folder as the folder list names it: the Inbox by its name, others by their path."""
    return "Inbox" if path.upper() == "INBOX" else path


@dataclass(slots=True)
class RunProgress:
    """Messages a run in progress has committed so far: its batches add to it as each commits, and
    "Retrieve Messages Now" shows it while it waits (only in the process running it)."""

    stored: int = 0


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """Where a remote folder lands: a special folder, or a path created on demand."""

    special_use: SpecialUse | None
    path: str


_ROOT_SPECIAL = {
    "\\Sent": SpecialUse.SENT,
    "\\Drafts": SpecialUse.DRAFTS,
    "\\Trash": SpecialUse.TRASH,
    "\\Junk": SpecialUse.JUNK,
}


def default_destination(task_name: str, username: str, host: str) -> str:
    """The folder "Add as subfolders" uses when the user named none: one named after the account."""
    name = task_name.strip() or (username if "@" in username else f"{username}@{host}")
    return name.replace("/", "_")


def local_target(
    remote_path: str,
    special_use: str | None,
    *,
    transfer: FolderTransfer,
    destination: str,
    personal_prefix: str = "",
) -> LocalTarget:
    """Map a remote folder (path with "/") to its local folder.

    `personal_prefix` is the server's personal namespace prefix (NAMESPACE, RFC 2342) in "/"
    form: "INBOX/" on Cyrus and Courier, whose folders all live under "INBOX." ("" on most
    others). A folder under it is what the user calls it without it: INBOX.Archiv is "Archiv".

    subfolders: P -> <destination>/P, INBOX included, the prefix kept (INBOX.Archiv ->
    <destination>/INBOX/Archiv): this mode mirrors the server's tree as it is, so a task never
    moves where mail it already brought lands.
    root: the RFC 6154 special-use flag first (\\Sent \\Drafts \\Trash \\Junk -> the local special
    folders, \\Archive -> Archive), then INBOX -> Inbox (and INBOX/x -> Inbox/x when "INBOX/" is
    not the namespace prefix), anything else -> P at the root.
    """
    if transfer is FolderTransfer.SUBFOLDERS:
        return LocalTarget(None, f"{destination.strip('/')}/{remote_path}")
    relative = _under_prefix(remote_path, personal_prefix)
    if special_use in _ROOT_SPECIAL:
        return LocalTarget(_ROOT_SPECIAL[special_use], "")
    if special_use == "\\Archive":
        return LocalTarget(None, "Archive")
    if relative is not None:
        return LocalTarget(None, relative)
    head, _, rest = remote_path.partition("/")
    if head.upper() == "INBOX":
        return LocalTarget(SpecialUse.INBOX, "Inbox") if not rest else LocalTarget(None, f"Inbox/{rest}")
    return LocalTarget(None, remote_path)


def _under_prefix(path: str, prefix: str) -> str | None:
    """`path` without the namespace `prefix` ("INBOX" compared case-insensitively, RFC 3501
    5.1), or None when it is not under it (INBOX itself never is)."""
    if not prefix.strip("/"):
        return None
    head = path[: len(prefix)]
    same = head.upper() == prefix.upper() if prefix.upper().startswith("INBOX/") else head == prefix
    rest = path[len(prefix) :]
    return rest if same and rest else None


MAX_BACKOFF_FACTOR = 16  # failing tasks wait at most 16 intervals (160 minutes at the default)
AUTH_FAILURES_BEFORE_PAUSE = 3


def next_run_delay(interval: float, consecutive_failures: int, jitter: float, spread: float) -> float:
    """Seconds until a task's next automatic run.

    The interval doubles with each consecutive failure, up to MAX_BACKOFF_FACTOR times it,
    and is spread by +/- `jitter` (a fraction) using `spread` in [0, 1), so a thousand tasks
    created at once do not all start in the same second.
    """
    factor: int = min(2 ** max(consecutive_failures, 0), MAX_BACKOFF_FACTOR)
    base = interval * factor
    return base * (1 + jitter * (2 * spread - 1))


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """A batch (downloaded, then committed with its cursor in one transaction) holds at most
    `messages` messages and about `bytes` bytes (one larger message still makes a batch)."""

    messages: int = 250
    bytes: int = 16 * 1024 * 1024

    def full(self, count: int, total: int, next_size: int) -> bool:
        return count > 0 and (count >= self.messages or total + next_size > self.bytes)
