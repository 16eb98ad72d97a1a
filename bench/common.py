"""What every scenario shares: timed child processes, result rows, and Tributary's data dirs.

Peak RSS comes from GNU time (`/usr/bin/time -f %M`): the largest single
process of the command's tree, the peer or one of its helper children, never
a sum. Wall time is measured here with a monotonic clock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"  # noqa: S105 (throwaway accounts on a private server)
TRIBUTARY = str(Path(sys.executable).with_name("tributary"))


@dataclass(frozen=True)
class Timed:
    """One command's outcome."""

    wall: float
    rss_mb: float
    code: int
    stdout: str
    stderr: str

    def tail(self) -> str:
        return (self.stderr.strip() or self.stdout.strip())[-300:]


def timed(cmd: list[str], *, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 3600) -> Timed:
    """Run `cmd` under /usr/bin/time; wall clock from here, peak RSS (MB) from GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 (our own argv)
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - started
        lines = [line for line in Path(out.name).read_text().splitlines() if line.strip().isdigit()]
    return Timed(wall, int(lines[-1]) / 1024 if lines else 0.0, done.returncode, done.stdout, done.stderr)


@dataclass
class Row:
    """One tool in one scenario. `value` is the scenario's main figure (None: no figure)."""

    scenario: str
    tool: str
    kind: str  # "tributary", "peer" or "ceiling"
    value: float | None
    figure: str
    rss_mb: float | None = None
    note: str = ""


@dataclass
class Scenario:
    """A table section: its rows, how to compare them, and the target verdict."""

    title: str
    unit: str
    higher_is_better: bool = True
    rows: list[Row] = field(default_factory=list)
    target: str = ""
    verdict: bool | None = None

    def add(
        self, tool: str, kind: str, value: float | None, figure: str, *, rss_mb: float | None = None, note: str = ""
    ) -> Row:
        row = Row(self.title, tool, kind, value, figure, rss_mb, note)
        self.rows.append(row)
        return row

    def best_peer(self) -> Row | None:
        peers = [r for r in self.rows if r.kind == "peer" and r.value]
        if not peers:
            return None
        pick = max if self.higher_is_better else min
        return pick(peers, key=lambda r: r.value or 0.0)

    def ratio(self, row: Row) -> float | None:
        """How many times better than the best peer (above 1 = better), whatever the unit's direction."""
        best = self.best_peer()
        if best is None or not row.value or not best.value:
            return None
        return row.value / best.value if self.higher_is_better else best.value / row.value

    def tributary(self) -> Row | None:
        return next((r for r in self.rows if r.kind == "tributary" and r.value), None)


def count_note(got: int, expected: int) -> str:
    """Empty when the count is right; otherwise says so (a wrong count is never silent)."""
    return "" if got == expected else f"WRONG COUNT: stored {got} of {expected}"


class TributaryHome:
    """A fresh data dir (SQLite) and the environment the `tributary` CLI needs for it."""

    def __init__(self, parent: Path, name: str) -> None:
        self.dir = parent / name
        self.dir.mkdir(parents=True)
        self.env = {
            **os.environ,
            "TRIBUTARY_DATA_DIR": str(self.dir),
            "TRIBUTARY_OUTBOUND_ALLOW": "127.0.0.0/8",
            "TRIBUTARY_SECURE_COOKIES": "false",
        }
        self.env.pop("TRIBUTARY_DATABASE_URL", None)
        self.cli("db", "upgrade")

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(  # noqa: S603
            [TRIBUTARY, *args], input=stdin, capture_output=True, text=True, env=self.env, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"tributary {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def add_user(self, email: str, password: str = PASSWORD) -> None:
        self.cli("user", "add", email, "--password-stdin", "--admin", stdin=password + "\n")

    def add_task(self, user: str, protocol: str, port: int, username: str, password: str, *extra: str) -> int:
        args = ["retrieval", "add", "--user", user, "--protocol", protocol, "--server", HOST, "--port", str(port)]
        args += ["--security", "none", "--username", username, "--password-stdin", "--json", *extra]
        return int(json.loads(self.cli(*args, stdin=password + "\n"))["id"])

    def run_task(self, task_id: int) -> Timed:
        return timed([TRIBUTARY, "retrieval", "run", str(task_id), "--json"], env=self.env)

    def index_for_search(self) -> Timed:
        """What the service's `search_index` job does after a retrieval run: index everything the
        run queued for search (service.persistence.search_backlog), timed as its own process."""
        code = (
            "import asyncio\n"
            "from service.config import Settings\n"
            "from service.persistence.database import Database\n"
            "from service.persistence.search_backlog import drain\n"
            "async def main():\n"
            "    db = Database(Settings())\n"
            "    print(await drain(db))\n"
            "    await db.dispose()\n"
            "asyncio.run(main())\n"
        )
        return timed([sys.executable, "-c", code], env=self.env)

    def stored(self, task_id: int | None = None) -> int:
        """Messages in the local store (of one task, or all)."""
        with sqlite3.connect(self.dir / "tributary.db") as db:
            if task_id is None:
                return int(db.execute("SELECT count(*) FROM message").fetchone()[0])
            return int(db.execute("SELECT count(*) FROM message WHERE task_id = ?", (task_id,)).fetchone()[0])


def spawn(argv: list[str], env: dict[str, str], *, quiet: bool = True) -> subprocess.Popen[bytes]:
    """Start a helper process of ours (a server, a load generator) in the background."""
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(argv, env=env, stdout=out, stderr=out)  # noqa: S603 (our own argv)


def output(argv: list[str], env: dict[str, str]) -> str:
    """Run a driver of ours to completion and return its standard output."""
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout  # noqa: S603


def count_maildir(root: Path) -> int:
    """Message files in every cur/ and new/ below `root`."""
    return sum(len(files) for path, _dirs, files in os.walk(root) if Path(path).name in ("cur", "new"))
