"""Which process holds a run lease, and whether that process still exists.

A lease records its holder's host name, the kernel's boot id
(/proc/sys/kernel/random/boot_id, new at every boot), its pid namespace
(/proc/self/ns/pid: containers on one kernel each have their own process
ids), the process id and the process's start time (field 22 of
/proc/<pid>/stat, in clock ticks after boot). A claimer that shares the host
name, boot id and pid namespace sees the holder's process table, so it can
look: a process id that no longer exists, that now belongs to a process
started at another time (ids are reused), or that is a zombie (killed, not yet
reaped) is a dead holder, and its lease may be taken at once. A holder on
another machine or in another container, or anything this process cannot tell
(no /proc; a process whose /proc/<pid>/stat it may not read, as under a /proc
mounted with hidepid=1 or hidepid=2, proc(5)), is presumed alive: its lease
only expires. Only a failed signal 0 (ESRCH) or a readable stat proves death.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Holder:
    """A process that holds (or may hold) a lease."""

    host: str
    boot_id: str | None
    namespace: str | None  # the pid namespace, "pid:[4026531836]"
    pid: int
    started: int | None  # clock ticks after boot; None where /proc is missing

    def same_machine(self, other: Holder) -> bool:
        """Both run on one kernel since its last boot, in one pid namespace: their process ids
        mean the same thing."""
        known = self.boot_id is not None and self.namespace is not None
        return known and (self.host, self.boot_id, self.namespace) == (other.host, other.boot_id, other.namespace)

    def is_gone(self) -> bool:
        """This process has ended (call only from the same machine, see `same_machine`)."""
        if self.started is None:
            return False
        try:
            os.kill(self.pid, 0)  # signal 0: nothing is sent, only existence is checked
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # exists, under another user
        stat = _stat(self.pid)  # None: hidden from us (hidepid), or ended this instant; not proof either way
        return stat is not None and (stat[1] in "ZX" or stat[0] != self.started)


def this_process() -> Holder:
    """The running process, as a lease records it (cached per pid: a forked child is another
    process, with another pid, and asks /proc again)."""
    return _process_cached(os.getpid())


@cache
def _process_cached(pid: int) -> Holder:
    return process(pid)


def process(pid: int) -> Holder:
    """A process of this machine, as a lease would record it."""
    stat = _stat(pid)
    started = None if stat is None else stat[0]
    return Holder(host=socket.gethostname(), boot_id=_boot_id(), namespace=_namespace(), pid=pid, started=started)


@cache
def _boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _namespace() -> str | None:
    try:
        return os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, str] | None:
    """(start time, state) of a process from /proc/<pid>/stat; None if it cannot be read (not there, or
    hidden from this user).
    The command name (field 2) is in parentheses and may hold spaces: fields are counted
    after its closing parenthesis."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[19]), fields[0]  # field 22 (starttime) and field 3 (state)
