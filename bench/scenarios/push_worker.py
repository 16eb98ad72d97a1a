"""The push scenarios' view of a running worker: its process (/proc), its database, the machine.

`Worker` is one `tributary worker` on a data dir; `state` reads where its tasks
stand (runs, run leases, push states); `StoredWatch` notes when each expected
message row first appears; `MachineBusy` says how busy the whole machine was.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import TRIBUTARY, TributaryHome

POLL_SECONDS = 0.02


def sql_time(moment: datetime) -> str:
    """A UTC instant as SQLAlchemy stores it in SQLite (naive, microseconds): comparable as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def query(home: TributaryHome, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(home.dir / "tributary.db", timeout=30) as db:
        return list(db.execute(sql, args).fetchall())


@dataclass
class Quiet:
    """Where the worker's tasks stand."""

    ran: int
    leased: int
    listening: int
    states: str


def state(home: TributaryHome, since: str) -> Quiet:
    ran = query(home, "SELECT count(*) FROM retrieval_task WHERE last_run_at >= ?", since)[0][0]
    leased = query(home, "SELECT count(*) FROM retrieval_task WHERE lease_owner IS NOT NULL")[0][0]
    states = query(home, "SELECT coalesce(push_state, '-'), count(*) FROM retrieval_task GROUP BY 1 ORDER BY 1")
    listening = sum(int(str(n)) for name, n in states if name == "listening")
    return Quiet(int(str(ran)), int(str(leased)), listening, ", ".join(f"{s} {n}" for s, n in states))


class Worker:
    """One `tributary worker` process on a data dir, its log in the work dir; stop() ends it (TERM, then KILL)."""

    def __init__(self, home: TributaryHome, log: Path, **settings: str) -> None:
        self.log = log
        env = {**home.env, **{f"TRIBUTARY_{k.upper()}": v for k, v in settings.items()}}
        with log.open("wb") as out:
            self.process = subprocess.Popen([TRIBUTARY, "worker"], env=env, stdout=out, stderr=out)  # noqa: S603

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-400:].replace("\n", " / ")

    def status(self, field: str) -> int:
        """A number from /proc/PID/status (VmRSS in kB, Threads)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads), from /proc/PID/stat."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_quiet(self, home: TributaryHome, *, tasks: int, since: str, listening: int, timeout: float) -> Quiet:
        """Until every task ran since `since`, no run lease is held and `listening` push connections listen."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.process.returncode}): {self.tail()}")
            now = state(home, since)
            if now.ran >= tasks and now.leased == 0 and now.listening >= listening:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout:.0f} s: {now.ran}/{tasks} ran, push states: {now.states}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class StoredWatch(threading.Thread):
    """Reads new message rows every 20 ms; `seen` maps each Message-ID to when it was first seen (time.time())."""

    def __init__(self, home: TributaryHome, expected: set[str], timeout: float) -> None:
        super().__init__(daemon=True)
        self.home, self.expected, self.timeout = home, expected, timeout
        self.seen: dict[str, float] = {}
        self.rows = 0
        self.last_id = int(str(query(home, "SELECT coalesce(max(id), 0) FROM message")[0][0]))

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        db = sqlite3.connect(f"file:{self.home.dir / 'tributary.db'}?mode=ro", uri=True, timeout=30)
        try:
            while len(self.seen) < len(self.expected) and time.monotonic() < deadline:
                rows = db.execute(
                    "SELECT id, message_id_header FROM message WHERE id > ? ORDER BY id", (self.last_id,)
                ).fetchall()
                now = time.time()
                for row_id, message_id in rows:
                    self.last_id = row_id
                    if message_id in self.expected:
                        self.rows += 1
                        self.seen.setdefault(message_id, now)
                time.sleep(POLL_SECONDS)
        finally:
            db.close()


class MachineBusy:
    """How busy the whole machine was from now to figure() (/proc/stat), and its load average: other
    processes on a shared machine (a test suite) take cores from the worker and Dovecot."""

    def __init__(self) -> None:
        self.load = os.getloadavg()[0]
        self.start = self._ticks()

    @staticmethod
    def _ticks() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    def figure(self) -> str:
        total, idle = (b - a for a, b in zip(self.start, self._ticks(), strict=True))
        busy = 100 * (1 - idle / total) if total else 0.0
        return f"machine {busy:.0f} % busy over {os.cpu_count()} CPUs meanwhile, load average {self.load:.1f} before"
