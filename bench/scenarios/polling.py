"""One round of automatic checks over many idle tasks (`python -m bench.scenarios.polling` is its driver).

Each task points at its own Dovecot account with an empty INBOX, so every
run connects, logs in, finds nothing new and records its health. Three ways:

- `round`: Tributary's dispatcher (`Runner.dispatch_due`, the scheduler's job)
  called again as soon as a slot is free, until every task has run: how fast
  the runner itself gets through a round at TRIBUTARY_WORKER_CONCURRENCY;
- `worker`: `tributary worker --once`, the scheduler's own round (process
  start-up included);
- fetchmail polling every account from one rc file, in one pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, update
from sqlmodel import col, select

from bench import peers
from bench.common import PASSWORD, TRIBUTARY, Scenario, TributaryHome, timed
from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks, users
from service.usecases.retrieval import Runner
from tests.fixtures.dovecot import DovecotServer

OWNER = "poller@example.test"


def _accounts(count: int) -> list[tuple[str, str]]:
    return [(f"idle{n:05d}@example.test", PASSWORD) for n in range(count)]


def prepare_accounts(server: DovecotServer, count: int) -> list[tuple[str, str]]:
    """Dovecot accounts with an empty Maildir each (made directly: no first-login cost for anyone)."""
    home = server.directory / "home"
    owner = home.stat()
    for email, password in _accounts(count):
        server.add_user(email, password)
        local, domain = email.split("@")
        for sub in ("", "cur", "new", "tmp"):
            path = home / domain / local / "Maildir" / sub
            path.mkdir(parents=True, exist_ok=True)
        for path in (home / domain, home / domain / local, home / domain / local / "Maildir"):
            os.chown(path, owner.st_uid, owner.st_gid)
        for sub in ("cur", "new", "tmp"):
            os.chown(home / domain / local / "Maildir" / sub, owner.st_uid, owner.st_gid)
    return _accounts(count)


async def _add_tasks(settings: Settings, port: int, count: int) -> None:
    db = Database(settings)
    try:
        owner = await users.find_user(db=db, email=OWNER)
        box = SecretBox.from_settings(settings)
        for email, password in _accounts(count):
            new = retrieval_tasks.NewTask(
                protocol=Protocol.IMAP,
                host="127.0.0.1",
                port=port,
                security=Security.NONE,
                username=email,
                password=password,
            )
            await retrieval_tasks.add_task(db=db, secret_box=box, user_id=owner.id, new=new)
    finally:
        await db.dispose()


async def _ran_since(db: Database, since: datetime) -> tuple[int, int]:
    """(tasks that ran since `since`, of which with an error)."""
    async with db.read() as session:
        ran = col(RetrievalTask.last_run_at) >= since
        total = (await session.exec(select(func.count()).select_from(RetrievalTask).where(ran))).one()
        failed = (
            await session.exec(
                select(func.count()).select_from(RetrievalTask).where(ran, col(RetrievalTask.last_error).is_not(None))
            )
        ).one()
    return int(total), int(failed)


async def _make_due(db: Database) -> datetime:
    now = utcnow()
    async with db.write() as session:
        await session.exec(update(RetrievalTask).values(next_run_at=now, lease_owner=None, lease_expires_at=None))
    return now


async def _round(settings: Settings, count: int) -> dict[str, float]:
    db = Database(settings)
    runner = Runner(db=db, secret_box=SecretBox.from_settings(settings), settings=settings)
    try:
        since = await _make_due(db)
        started = time.perf_counter()
        while True:
            await runner.dispatch_due()
            ran, _failed = await _ran_since(db, since)
            if ran >= count and runner.running == 0:
                break
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        ran, failed = await _ran_since(db, since)
        return {"seconds": seconds, "ran": ran, "failed": failed}
    finally:
        await db.dispose()


async def _worker(settings: Settings, count: int, env: dict[str, str]) -> dict[str, float]:
    """`tributary worker --once` (the scheduler's round: every due task, then the outbox), timed."""
    db = Database(settings)
    try:
        since = await _make_due(db)
        started = time.perf_counter()
        worker = await asyncio.create_subprocess_exec(TRIBUTARY, "worker", "--once", env=env, stderr=subprocess.DEVNULL)
        await worker.wait()
        seconds = time.perf_counter() - started
        ran, failed = await _ran_since(db, since)
        return {"seconds": seconds, "ran": ran, "failed": failed}
    finally:
        await db.dispose()


def polling(work: Path, server: DovecotServer, *, tasks: int) -> Scenario:
    scenario = Scenario(f"One round of automatic checks, {tasks:,} idle IMAP tasks", "s", higher_is_better=False)
    scenario.target = "far inside the 600 s interval"
    accounts = prepare_accounts(server, tasks)
    home = TributaryHome(work, "polling")
    home.add_user(OWNER)
    driver = [sys.executable, "-m", "bench.scenarios.polling"]
    args = ["--port", str(server.imap_port), "--tasks", str(tasks)]
    subprocess.run([*driver, "add", *args], env=home.env, check=True)  # noqa: S603
    print(f"  polling: Tributary dispatcher, {tasks} tasks ...", file=sys.stderr, flush=True)
    result = timed([*driver, "round", *args], env=home.env)
    _add_row(scenario, "Tributary (dispatcher, back to back)", "tributary", result.stdout, tasks, result.rss_mb)
    print("  polling: tributary worker --once ...", file=sys.stderr, flush=True)
    result = timed([*driver, "worker", *args], env=home.env)
    _add_row(scenario, "Tributary (`tributary worker --once`)", "tributary", result.stdout, tasks, result.rss_mb)
    if peers.installed("fetchmail"):
        print(f"  polling: fetchmail, {tasks} accounts ...", file=sys.stderr, flush=True)
        box = peers.Mailbox(accounts[0][0], PASSWORD, server.imap_port, server.pop3_port, ("INBOX",))
        peer = peers.fetchmail(work, box, "imap", accounts=accounts)
        done = timed(peer.argv)
        note = "" if done.code in peer.ok_codes else f"FAILED (exit {done.code}): {done.tail()}"
        value = None if note else done.wall
        scenario.add("fetchmail (one rc, one pass)", "peer", value, f"{done.wall:.1f} s", rss_mb=done.rss_mb, note=note)
    return scenario


def _add_row(scenario: Scenario, tool: str, kind: str, stdout: str, tasks: int, rss: float | None) -> None:
    try:
        got = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        scenario.add(tool, kind, None, "-", note=f"driver failed: {stdout[-200:]}")
        return
    seconds, ran, failed = got["seconds"], int(got["ran"]), int(got["failed"])
    note = f"{failed} runs failed" if failed else ""
    if ran < tasks:
        projected = seconds * tasks / ran if ran else float("inf")
        figure = f"{ran} of {tasks} ran in {seconds:.0f} s (projected {projected:,.0f} s)"
        scenario.add(tool, kind, projected, figure, rss_mb=rss, note=note)
        return
    scenario.add(tool, kind, seconds, f"{seconds:.1f} s ({ran / seconds:.1f} tasks/s)", rss_mb=rss, note=note)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["add", "round", "worker"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    args = parser.parse_args()
    settings = Settings()
    if args.action == "add":
        asyncio.run(_add_tasks(settings, args.port, args.tasks))
        return
    if args.action == "round":
        result = asyncio.run(_round(settings, args.tasks))
    else:
        result = asyncio.run(_worker(settings, args.tasks, dict(os.environ)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
