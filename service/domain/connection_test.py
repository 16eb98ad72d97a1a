"""The result of "Test Connection": each step with its outcome, duration and, on failure, a hint."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Step:
    """One step: "resolve", "connect", "tls", "greeting", "capabilities", "login", ..., and "cleartext",
    the warning Test Connection adds when a server offers STARTTLS to a task set to security None."""

    name: str
    ok: bool
    duration_ms: float
    detail: str = ""
    hint: str = ""
    warning: bool = False  # passed, but reports a risk the user should fix (the test still succeeds)


@dataclass(frozen=True, slots=True)
class FolderCount:
    """A remote IMAP folder Test Connection found ("/" between levels) and its message count
    (None where the server would not say): the retrieval task form lists them to choose from."""

    path: str
    messages: int | None


@dataclass(slots=True)
class ConnectionReport:
    steps: list[Step] = field(default_factory=list)
    folders: list[FolderCount] = field(default_factory=list)  # IMAP retrieval only

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)
