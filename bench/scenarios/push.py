"""IMAP push (issue 16): APPEND-to-stored latency, and what idle push connections cost a worker.

`python -m bench.scenarios.push add ...` is its driver (adds the tasks inside a data dir's settings).

- latency: N automatic IMAP tasks, each on its own empty Dovecot account,
  interval one hour (polling never fires), one real `tributary worker`
  (SQLite data dir) holding their push connections. Once every task has had
  its first run and every push connection is LISTENING, one message is
  APPENDed to each of the N INBOXes at once, from connections signed in
  beforehand (raw sockets, LITERAL+, so all N commands leave within a few
  milliseconds). Latency per message = when the bench first sees its row in the
  worker's database (read every 20 ms) minus when Dovecot answered its APPEND
  OK. p50, p99 (nearest rank) and max; every message must be stored once.
- idle cost: M tasks on M accounts, the worker first with push off
  (TRIBUTARY_PUSH_CONNECTIONS=0), then on, each after the same first round of
  runs and a few quiet seconds: (VmRSS with push - VmRSS without) / M is the
  memory per idle push connection; utime+stime from /proc/PID/stat over an
  idle window is the CPU, as a share of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import HOST, PASSWORD, TRIBUTARY, Scenario, TributaryHome
from tests.fixtures.dovecot import DovecotServer

OWNER = "pusher@example.test"
POLL_SECONDS = 0.02
SETTLE_SECONDS = 5.0


def _accounts(prefix: str, count: int) -> list[tuple[str, str]]:
    return [(f"{prefix}{n:05d}@example.test", PASSWORD) for n in range(count)]


def _make_accounts(server: DovecotServer, prefix: str, count: int) -> list[tuple[str, str]]:
    """Accounts with an empty Maildir each, made directly as the poll round makes them (no first-login cost)."""
    accounts = _accounts(prefix, count)
    home = server.directory / "home"
    owner = home.stat()
    for email, password in accounts:
        server.add_user(email, password)
        local, domain = email.split("@")
        maildir = home / domain / local / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in (home / domain, home / domain / local, maildir, *(maildir / s for s in ("cur", "new", "tmp"))):
            os.chown(path, owner.st_uid, owner.st_gid)
    return accounts


def _sql_time(moment: datetime) -> str:
    """A UTC instant as SQLAlchemy stores it in SQLite (naive, microseconds): comparable as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _query(home: TributaryHome, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(home.dir / "tributary.db", timeout=30) as db:
        return list(db.execute(sql, args).fetchall())


@dataclass
class Quiet:
    """Where the worker's tasks stand."""

    ran: int
    leased: int
    listening: int
    states: str


def _state(home: TributaryHome, since: str) -> Quiet:
    ran = _query(home, "SELECT count(*) FROM retrieval_task WHERE last_run_at >= ?", since)[0][0]
    leased = _query(home, "SELECT count(*) FROM retrieval_task WHERE lease_owner IS NOT NULL")[0][0]
    states = _query(home, "SELECT coalesce(push_state, '-'), count(*) FROM retrieval_task GROUP BY 1 ORDER BY 1")
    listening = sum(int(str(n)) for state, n in states if state == "listening")
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
            state = _state(home, since)
            if state.ran >= tasks and state.leased == 0 and state.listening >= listening:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout:.0f} s: {state.ran}/{tasks} ran, push states: {state.states}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _home(work: Path, name: str, server: DovecotServer, prefix: str, count: int) -> TributaryHome:
    _make_accounts(server, prefix, count)
    home = TributaryHome(work, name)
    home.add_user(OWNER)
    driver = [sys.executable, "-m", "bench.scenarios.push", "add"]
    args = ["--port", str(server.imap_port), "--prefix", prefix, "--count", str(count)]
    subprocess.run([*driver, *args], env=home.env, check=True)  # noqa: S603
    return home


def _make_due(home: TributaryHome) -> str:
    """Every task due now (no worker running); returns the instant, as stored, to count runs from."""
    now = _sql_time(datetime.now(UTC))
    with sqlite3.connect(home.dir / "tributary.db", timeout=30) as db:
        db.execute("UPDATE retrieval_task SET next_run_at = ?", (now,))
    return now


# -- latency ---------------------------------------------------------------------------------------


class Appender:
    """Signed-in IMAP connections, one per account, that APPEND one message each at once (LITERAL+, RFC 7888)."""

    def __init__(self, port: int, accounts: list[tuple[str, str]]) -> None:
        self.sockets: list[socket.socket] = []
        for email, password in accounts:
            sock = socket.create_connection((HOST, port), timeout=30)
            greeting = self._until(sock, b"* OK")
            if b"LITERAL+" not in greeting:
                raise RuntimeError(f"the server offers no LITERAL+: {greeting[:200]!r}")
            sock.sendall(f'a LOGIN "{email}" "{password}"\r\n'.encode())
            self._until(sock, b"a OK")
            self.sockets.append(sock)

    @staticmethod
    def _until(sock: socket.socket, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"connection closed waiting for {marker!r}: {data[-200:]!r}")
            data += chunk
            if b" NO " in data or b" BAD " in data:
                raise RuntimeError(f"refused: {data[-200:]!r}")
        return data

    def append_all(self, messages: list[bytes]) -> list[float]:
        """Send every APPEND, then read the answers; returns when (time.time()) each one's OK arrived."""
        done: list[float] = [math.nan] * len(self.sockets)
        pending: dict[int, bytes] = {}
        with selectors.DefaultSelector() as selector:
            for index, (sock, raw) in enumerate(zip(self.sockets, messages, strict=True)):
                sock.sendall(b"b APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, index)
                pending[index] = b""
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for key, _events in selector.select(timeout=1):
                    index = key.data
                    pending[index] += key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if b"b OK" in pending[index] or b"b NO" in pending[index] or b"b BAD" in pending[index]:
                        if b"b OK" in pending[index]:
                            done[index] = time.time()
                        selector.unregister(key.fileobj)
                        del pending[index]
        return done

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _message(index: int, token: str) -> tuple[str, bytes]:
    message_id = f"<push-{index:05d}-{token}@bench.test>"
    raw = (
        f"From: Sender <sender@example.test>\r\nTo: pushlat{index:05d}@example.test\r\n"
        f"Subject: push bench {index}\r\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"A message appended by the push benchmark, number {index}.\r\n"
    )
    return message_id, raw.encode()


class StoredWatch(threading.Thread):
    """Reads new message rows every 20 ms; `seen` maps each Message-ID to when it was first seen (time.time())."""

    def __init__(self, home: TributaryHome, expected: set[str], timeout: float) -> None:
        super().__init__(daemon=True)
        self.home, self.expected, self.timeout = home, expected, timeout
        self.seen: dict[str, float] = {}
        self.rows = 0
        self.last_id = int(str(_query(home, "SELECT coalesce(max(id), 0) FROM message")[0][0]))

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


def _rank(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency(work: Path, server: DovecotServer, *, tasks: int) -> Scenario:
    scenario = Scenario(f"Push: APPEND to stored, {tasks} messages over {tasks} tasks in one worker", "s", False)
    scenario.target = "p50 < 1 s and p99 < 3 s"
    home = _home(work, "push-latency", server, "pushlat", tasks)
    since = _make_due(home)
    worker = Worker(home, work / "worker-latency.log", retrieval_interval="3600", push_connections=str(tasks))
    tool = f"Tributary (`tributary worker`, {tasks} push connections)"
    try:
        print(f"  push: {tasks} tasks, waiting for their first runs and LISTENING ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        worker.wait_quiet(home, tasks=tasks, since=since, listening=tasks, timeout=120 + tasks / 2)
        ready = time.monotonic() - started
        time.sleep(1)
        appender = Appender(server.imap_port, _accounts("pushlat", tasks))
        token = os.urandom(6).hex()
        messages = [_message(n, token) for n in range(tasks)]
        watch = StoredWatch(home, {m for m, _raw in messages}, timeout=60)
        watch.start()
        appended = appender.append_all([raw for _m, raw in messages])
        watch.join()
        appender.close()
        latencies = [watch.seen[m] - at for (m, _raw), at in zip(messages, appended, strict=True) if m in watch.seen]
    except (RuntimeError, TimeoutError, OSError) as exc:
        scenario.add(tool, "tributary", None, "-", note=f"FAILED: {exc}")
        return scenario
    finally:
        worker.stop()
    missing, twice = tasks - len(latencies), watch.rows - len(watch.seen)
    notes = [f"WRONG COUNT: {missing} of {tasks} not stored within 60 s" if missing else ""]
    notes.append(f"{twice} stored twice" if twice else "")
    p50, p99 = (_rank(latencies, 0.5), _rank(latencies, 0.99)) if latencies and not missing else (math.inf, math.inf)
    figure = (
        f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(latencies, default=math.nan):.2f} s "
        f"(all {tasks} listening {ready:.0f} s after start)"
    )
    scenario.add(tool, "tributary", p99, figure, note="; ".join(n for n in notes if n))
    scenario.verdict = not missing and not twice and p50 < 1 and p99 < 3
    return scenario


# -- idle cost -------------------------------------------------------------------------------------


def idle(work: Path, server: DovecotServer, *, connections: int, seconds: float) -> list[Scenario]:
    memory = Scenario(f"Push: memory of {connections} idle push connections in one worker", "KB", False)
    memory.target = "< 100 KB per idle push connection"
    cpu = Scenario(f"Push: CPU of {connections} idle push connections over {seconds:g} s", "%", False)
    cpu.target = "< 2 % of one core"
    home = _home(work, "push-idle", server, "pushidle", connections)
    tool = "Tributary (`tributary worker`)"
    rss: dict[str, int] = {}
    try:
        for label, held in (("off", 0), ("on", connections)):
            since = _make_due(home)
            print(f"  push: {connections} tasks, push {label} ...", file=sys.stderr, flush=True)
            log = work / f"worker-idle-{label}.log"
            worker = Worker(home, log, retrieval_interval="3600", push_connections=str(held))
            try:
                worker.wait_quiet(home, tasks=connections, since=since, listening=held, timeout=120 + connections / 2)
                time.sleep(SETTLE_SECONDS)
                rss[label] = worker.status("VmRSS")
                if held:
                    threads = worker.status("Threads")
                    before, clock = worker.cpu_seconds(), time.monotonic()
                    time.sleep(seconds)
                    share = (worker.cpu_seconds() - before) / (time.monotonic() - clock) * 100
                    state = _state(home, since)
                    rss["after"] = worker.status("VmRSS")
            finally:
                worker.stop()
    except (RuntimeError, TimeoutError, OSError) as exc:
        memory.add(tool, "tributary", None, "-", note=f"FAILED: {exc}")
        return [memory]
    per = (rss["on"] - rss["off"]) / connections
    memory.add(
        tool,
        "tributary",
        per,
        f"{per:.0f} KB each: RSS {rss['on'] / 1024:.0f} MB with push, {rss['off'] / 1024:.0f} MB with "
        f"TRIBUTARY_PUSH_CONNECTIONS=0 (same tasks, same first round); {threads} threads",
        rss_mb=rss["on"] / 1024,
    )
    memory.verdict = per < 100
    note = "" if state.listening >= connections else f"only {state.listening} still listening at the end"
    cpu.add(tool, "tributary", share, f"{share:.2f} % of a core (RSS then {rss['after'] / 1024:.0f} MB)", note=note)
    cpu.verdict = share < 2 and not note
    return [memory, cpu]


def push(work: Path, server: DovecotServer, *, tasks: int, connections: int, seconds: float) -> list[Scenario]:
    """The push scenarios (latency, then idle memory and CPU), on `server`, under `work`."""
    work.mkdir(parents=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * max(tasks, connections) + 1024  # the worker's sockets and database files, inherited
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    found = [latency(work, server, tasks=tasks)]
    return found + idle(work, server, connections=connections, seconds=seconds)


async def _add_tasks(prefix: str, count: int, port: int) -> None:
    from service.config import Settings
    from service.domain.values import Protocol, Security
    from service.persistence.database import Database
    from service.persistence.secrets import SecretBox
    from service.usecases import retrieval_tasks, users

    settings = Settings()
    db = Database(settings)
    try:
        owner = await users.find_user(db=db, email=OWNER)
        box = SecretBox.from_settings(settings)
        for email, password in _accounts(prefix, count):
            new = retrieval_tasks.NewTask(
                protocol=Protocol.IMAP, host=HOST, port=port, security=Security.NONE, username=email, password=password
            )
            await retrieval_tasks.add_task(db=db, secret_box=box, user_id=owner.id, new=new)
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["add"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_add_tasks(args.prefix, args.count, args.port))


if __name__ == "__main__":
    main()
