"""Search over a big mailbox (`python -m bench.scenarios.search` is the driver).

`run` fills one user's mailbox with `mailstore.deliver_many` (the retrieval path's bulk
insert, which fills the full-text index in the same transaction), in batches, over
several folders; then times `service.usecases.search.search` (the API's and the page's
use case) one query at a time: ~200 queries of several shapes, each with its own terms
(a common word, a rarer word, a phrase, `from:`, a combination with `in:` and dates,
filters only, with and without `in:`). A second user, OTHER, holds as many messages with
the same words (and the same rare `refN` words): the searcher's queries must cost only the
searcher's mail (the owner restriction of the index). The scenario runs it on SQLite, and on PostgreSQL when
TRIBUTARY_BENCH_DATABASE_URL (else TRIBUTARY_TEST_DATABASE_URL) names a server: a
maintenance database there, in which a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, formataddr
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from bench.common import Scenario, TributaryHome, output
from bench.corpus import NAMES, SUBJECTS, WORDS
from service.config import Settings
from service.persistence import mailstore
from service.persistence.database import Database
from service.usecases import search, users

USER = "searcher@example.test"
OTHER = "crowd@example.test"  # as much mail, the same words: must not slow USER's searches
FOLDERS = ["Inbox", "Archiv", "Archiv/2024", "Projekte/Alpha", "Newsletters", "Rechnungen & Belege", "Sent"]
TARGET_MS = 100.0
POLICY = default.clone(linesep="\n")
START = 1_640_995_200  # 2022-01-01
_BATCH = 2000


def make_message(rng: random.Random, n: int) -> bytes:
    """A small realistic message: text or HTML, some with a named attachment, a rare word `refN`."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = formataddr((rng.choice(NAMES), f"sender{n % 97}@example.test"))
    msg["To"] = formataddr(("Searcher", USER))
    msg["Subject"] = rng.choice(SUBJECTS).format(n=n)
    msg["Date"] = format_datetime(datetime.fromtimestamp(START + n * 900, UTC))
    words = rng.choices(WORDS, k=rng.randint(40, 400))
    text = " ".join(words) + f" ref{n}\n"
    if rng.random() < 0.3:
        msg.set_content(f"<html><body><p>{text}</p></body></html>\n", subtype="html")
    else:
        msg.set_content(text)
    if rng.random() < 0.05:
        msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename=f"Bericht_{n}.pdf")
    return msg.as_bytes()


async def fill(db: Database, count: int, seed: int, email: str = USER) -> float:
    rng = random.Random(seed)  # noqa: S311 (a reproducible corpus)
    user = await users.find_user(db=db, email=email)
    async with db.write() as session:
        folder_ids = [(await mailstore.folder_by_path(session, user.id, path)).id for path in FOLDERS]
    started = time.perf_counter()
    for start in range(0, count, _BATCH):
        by_folder: dict[int, list[mailstore.IncomingMessage]] = {}
        for n in range(start, min(count, start + _BATCH)):
            folder = folder_ids[0] if rng.random() < 0.4 else rng.choice(folder_ids)
            assert folder is not None
            by_folder.setdefault(folder, []).append(
                mailstore.IncomingMessage(raw=make_message(rng, n), seen=rng.random() < 0.7)
            )
        async with db.write() as session:
            for folder, batch in by_folder.items():
                await mailstore.deliver_many(session, user_id=user.id, folder_id=folder, messages=batch)
    return time.perf_counter() - started


def queries(count: int, messages: int, seed: int) -> list[tuple[str, str]]:
    """(shape, query) pairs, shapes in turn, each with its own terms."""
    rng = random.Random(seed + 1)  # noqa: S311
    shapes = {
        "common word": lambda: rng.choice(WORDS),
        "rare word": lambda: f"ref{rng.randrange(messages)}",
        "phrase": lambda: '"' + " ".join(rng.choices(WORDS, k=2)) + '"',
        "from:": lambda: f"from:sender{rng.randrange(97)}@example.test",
        "word in: dates": lambda: (
            f'{rng.choice(WORDS)} in:"{rng.choice(FOLDERS)}" after:2022-0{rng.randint(1, 9)}-01 before:2023-06-30'
        ),
        "filters only": lambda: f"is:unread has:attachment in:{rng.choice(['Inbox', 'Archiv', 'Newsletters'])}",
        "filters, no in:": lambda: rng.choice(
            ["is:unread", "has:attachment", f"is:unread after:2022-0{rng.randint(1, 9)}-01"]
        ),
    }
    names = list(shapes)
    return [(names[i % len(names)], shapes[names[i % len(names)]]()) for i in range(count)]


async def measure(db: Database, count: int, messages: int, seed: int) -> dict[str, list[float]]:
    user = await users.find_user(db=db, email=USER)
    for _, query in queries(12, messages, seed + 7):  # warm the caches
        await search.search(db=db, user_id=user.id, query=query)
    timings: dict[str, list[float]] = {}
    for shape, query in queries(count, messages, seed):
        started = time.perf_counter()
        await search.search(db=db, user_id=user.id, query=query)
        timings.setdefault(shape, []).append((time.perf_counter() - started) * 1000)
    return timings


async def run(settings: Settings, count: int, rounds: int, seed: int) -> dict[str, object]:
    db = Database(settings)
    try:
        await fill(db, count, seed + 100, OTHER)  # first: its rows sit among USER's in every index
        seconds = await fill(db, count, seed)
        if not settings.is_sqlite:  # what autovacuum does soon after a bulk import: fresh planner statistics
            async with db.write() as session:
                await (await session.connection()).exec_driver_sql("ANALYZE message, message_search, folder")
        return {"fill_seconds": seconds, "timings": await measure(db, rounds, count, seed)}
    finally:
        await db.dispose()


def _pg_url() -> str | None:
    return os.environ.get("TRIBUTARY_BENCH_DATABASE_URL") or os.environ.get("TRIBUTARY_TEST_DATABASE_URL")


def _admin(url: str, statement: str, name: str) -> None:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(sql.Identifier(name)))


def _report(scenario: Scenario, label: str, result: dict[str, object], messages: int) -> float:
    timings: dict[str, list[float]] = result["timings"]  # type: ignore[assignment]
    every = [t for shape in timings.values() for t in shape]
    cuts = statistics.quantiles(every, n=100, method="inclusive")
    p50, p99 = cuts[49], cuts[98]
    shapes = ", ".join(f"{shape} {statistics.median(ts):.1f}/{max(ts):.1f}" for shape, ts in timings.items())
    figure = (
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(every):.1f} ms ({len(every)} queries;"
        f" p50/max ms by shape: {shapes};"
        f" {messages:,} messages stored and indexed in {float(result['fill_seconds']):.0f} s,"  # type: ignore[arg-type]
        f" beside another user's {messages:,})"
    )
    scenario.add(f"Tributary, {label}", "tributary", p99, figure)
    return p99


def search_scenario(work: Path, *, messages: int, rounds: int = 200, seed: int = 1) -> Scenario:
    scenario = Scenario(f"Search, {messages:,}-message mailbox", "ms p99", higher_is_better=False)
    scenario.target = f"p99 < {TARGET_MS:.0f} ms"
    driver = [sys.executable, "-m", "bench.scenarios.search", "--count", str(messages), "--rounds", str(rounds)]
    driver += ["--seed", str(seed)]
    worst: list[float] = []
    home = TributaryHome(work, "search-sqlite")
    home.add_user(USER)
    home.add_user(OTHER)
    print(f"  search: SQLite, storing {messages:,} messages ...", file=sys.stderr, flush=True)
    worst.append(_report(scenario, "SQLite", json.loads(output(driver, home.env)), messages))
    url = _pg_url()
    if url:
        name = f"tributary_bench_search_{uuid.uuid4().hex[:8]}"
        _admin(url, "CREATE DATABASE {}", name)
        try:
            pg = TributaryHome(work, "search-postgresql")
            pg.env["TRIBUTARY_DATABASE_URL"] = (
                make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
            )
            pg.cli("db", "upgrade")
            pg.add_user(USER)
            pg.add_user(OTHER)
            print(f"  search: PostgreSQL, storing {messages:,} messages ...", file=sys.stderr, flush=True)
            worst.append(_report(scenario, "PostgreSQL", json.loads(output(driver, pg.env)), messages))
        finally:
            _admin(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
    else:
        scenario.add("Tributary, PostgreSQL", "tributary", None, "not run: no TRIBUTARY_BENCH_DATABASE_URL")
    scenario.verdict = max(worst) < TARGET_MS
    return scenario


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="store_true", help="run the whole scenario (both databases)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.scenario:
        from bench.report import table

        work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-search-{uuid.uuid4().hex[:6]}"  # noqa: S108
        print(table([search_scenario(work, messages=args.count, rounds=args.rounds, seed=args.seed)]))
        return
    print(json.dumps(asyncio.run(run(Settings(), args.count, args.rounds, args.seed))))


if __name__ == "__main__":
    main()
