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
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import peers
from bench.common import HOST, PASSWORD, Scenario, TributaryHome
from bench.scenarios.push_append import Appender, message, rank
from bench.scenarios.push_fetchmail import FetchmailIdle
from bench.scenarios.push_worker import POLL_SECONDS, MachineBusy, StoredWatch, Worker, sql_time, state
from tests.fixtures.dovecot import DovecotServer

OWNER = "pusher@example.test"
SETTLE_SECONDS = 5.0
PEER_ACCOUNTS = 5


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
    now = sql_time(datetime.now(UTC))
    with sqlite3.connect(home.dir / "tributary.db", timeout=30) as db:
        db.execute("UPDATE retrieval_task SET next_run_at = ?", (now,))
    return now


# -- latency ---------------------------------------------------------------------------------------


def _figures(latencies: list[float], expected: int) -> tuple[float, float, str]:
    """(p50, p99, "p50 .., p99 .., max .."); a message never stored counts as infinitely late."""
    late = sorted(latencies) + [math.inf] * (expected - len(latencies))
    p50, p99 = rank(late, 0.5), rank(late, 0.99)
    return p50, p99, f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {late[-1]:.2f} s"


def latency(work: Path, server: DovecotServer, *, tasks: int) -> Scenario:
    """Tributary's push latency over `tasks` tasks, then fetchmail --idle's over a handful of accounts."""
    scenario = Scenario(f"Push: APPEND to stored, {tasks} messages over {tasks} tasks in one worker", "s", False)
    scenario.target = "p50 < 1 s and p99 < 3 s (vs best peer: p50)"
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
        messages = [message(n, token) for n in range(tasks)]
        watch = StoredWatch(home, {m for m, _raw in messages}, timeout=60)
        watch.start()
        busy, cpu, clock = MachineBusy(), worker.cpu_seconds(), time.monotonic()
        appended = appender.append_all([raw for _m, raw in messages])
        watch.join()
        cpu, clock = worker.cpu_seconds() - cpu, time.monotonic() - clock
        share = f"{cpu:.1f} s in all, {100 * cpu / clock:.0f} % of a core over {clock:.1f} s"
        load = f"the worker's CPU {cpu * 1000 / tasks:.0f} ms a message ({share}); {busy.figure()}"
        appender.close()
    except (RuntimeError, TimeoutError, OSError) as exc:
        scenario.add(tool, "tributary", None, "-", note=f"FAILED: {exc}")
        return scenario
    finally:
        worker.stop()
    latencies = [watch.seen[m] - at for (m, _raw), at in zip(messages, appended, strict=True) if m in watch.seen]
    latencies = [x for x in latencies if not math.isnan(x)]
    p50, p99, figure = _figures(latencies, tasks)
    notes = [
        f"WRONG COUNT: {tasks - len(watch.seen)} of {tasks} not stored within 60 s" if len(watch.seen) < tasks else ""
    ]
    notes.append(f"{sum(map(math.isnan, appended))} APPENDs failed" if any(map(math.isnan, appended)) else "")
    notes.append(f"{watch.rows - len(watch.seen)} stored twice" if watch.rows > len(watch.seen) else "")
    note = "; ".join(n for n in notes if n)
    figure += f" (all listening {ready:.0f} s after start; {load}{_inotify(tasks)})"
    scenario.add(tool, "tributary", p50, figure, note=note)
    scenario.verdict = not note and p50 < 1 and p99 < 3
    if peers.installed("fetchmail"):
        _fetchmail(scenario, work, server)
    return scenario


def _inotify(sessions: int) -> str:
    """Dovecot learns of new mail for an idle session through inotify, one instance per session, at most
    fs.inotify.max_user_instances (128 by default) for all of `nobody`'s processes on the machine; the
    sessions past it look every mailbox_idle_check_interval (1 s in the tests' Dovecot) instead."""
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    if limit >= sessions:
        return ""
    return f"; fs.inotify.max_user_instances {limit}: Dovecot polls the other sessions every second"


def _fetchmail(scenario: Scenario, work: Path, server: DovecotServer) -> None:
    """fetchmail --idle, one process per account (it idles on one folder of one account): PEER_ACCOUNTS messages."""
    accounts = _make_accounts(server, "pushfm", PEER_ACCOUNTS)
    tool = f"fetchmail --idle ({PEER_ACCOUNTS} accounts, a process each)"
    print(f"  push: {tool} ...", file=sys.stderr, flush=True)
    daemons = FetchmailIdle(work, server.imap_port, accounts)
    try:
        daemons.wait_idling()
        appender = Appender(server.imap_port, accounts)
        messages = [message(n, os.urandom(6).hex())[1] for n in range(PEER_ACCOUNTS)]
        seen: list[float] = []
        watcher = threading.Thread(target=lambda: seen.extend(daemons.watch(60, POLL_SECONDS)), daemon=True)
        watcher.start()
        appended = appender.append_all(messages)
        watcher.join()
        appender.close()
    except (RuntimeError, OSError) as exc:
        scenario.add(tool, "peer", None, "-", note=f"FAILED: {exc}")
        return
    finally:
        daemons.stop()
    latencies = [s - a for s, a in zip(seen, appended, strict=True) if not math.isnan(s - a)]
    p50, _p99, figure = _figures(latencies, PEER_ACCOUNTS)
    note = "" if len(latencies) == PEER_ACCOUNTS else f"WRONG COUNT: {len(latencies)} of {PEER_ACCOUNTS} stored"
    scenario.add(tool, "peer", None if note else p50, figure, note=note)


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
                    end = state(home, since)
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
    note = "" if end.listening >= connections else f"only {end.listening} still listening at the end"
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
