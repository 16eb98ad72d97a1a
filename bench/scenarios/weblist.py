"""The message list page of a big folder, under load (`python -m bench.scenarios.weblist` is the driver).

`fill` stores the folder with `mailstore.deliver_many` (the retrieval path's
bulk insert), in batches. The app runs as `tributary serve` on a free loopback
port; a second process (`load`) signs in and requests the Inbox page in a
loop with a few connections while this one measures, one request at a time,
the folder's first page and a page half-way down (its "Older" cursor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlmodel import col, select

from bench.common import HOST, PASSWORD, TRIBUTARY, Scenario, TributaryHome, output, spawn
from service.config import Settings
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.tables import Message
from service.usecases import users
from service.usecases.reading.listing import PageCursor
from tests.fixtures import free_ports

USER = "reader@example.test"
LOAD_CONNECTIONS = 2  # the second process keeps this many Inbox requests in flight
TEMPLATE = (
    "From: Sender {n} <sender{m}@example.test>\nTo: reader@example.test\nSubject: Message number {n} about the budget\n"
    "Date: {date}\nMessage-ID: <{n}@bench.example.test>\nContent-Type: text/plain; charset=utf-8\n\n"
    "Hello,\nthis is message {n}. The quarterly figures are attached in spirit.\nRegards\n"
)


async def fill(settings: Settings, count: int) -> dict[str, object]:
    db = Database(settings)
    try:
        user = await users.find_user(db=db, email=USER)
        async with db.write() as session:
            folder = await mailstore.folder_by_path(session, user.id, "Big")
            folder_id = folder.id
        assert folder_id is not None
        for start in range(0, count, 2000):
            batch = [
                mailstore.IncomingMessage(
                    raw=TEMPLATE.format(
                        n=n, m=n % 300, date=time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(1.6e9 + n * 60))
                    ).encode()
                )
                for n in range(start, min(count, start + 2000))
            ]
            async with db.write() as session:
                await mailstore.deliver_many(session, user_id=user.id, folder_id=folder_id, messages=batch)
        async with db.read() as session:
            row = (
                await session.exec(
                    select(Message.sort_date, Message.id)
                    .where(Message.folder_id == folder_id)
                    .order_by(col(Message.sort_date).desc(), col(Message.id).desc())
                    .offset(count // 2)
                    .limit(1)
                )
            ).one()
        return {"folder": folder_id, "deep": PageCursor(row[0], int(row[1] or 0)).token}
    finally:
        await db.dispose()


async def signed_in(base: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    await client.get("/login")
    token = client.cookies["tributary_csrf"]
    response = await client.post("/login", data={"_csrf_token": token, "email": USER, "password": PASSWORD})
    if response.status_code != 303:
        raise RuntimeError(f"login failed: {response.status_code} {response.text[:200]}")
    return client


async def load(base: str, seconds: float, connections: int) -> dict[str, float]:
    """Request the Inbox page in a loop, `connections` at a time, for at most `seconds`."""
    client = await signed_in(base)
    done = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            (await client.get("/")).raise_for_status()
            done += 1

    await asyncio.gather(*(loop() for _ in range(connections)))
    await client.aclose()
    return {"requests": done}


async def measure(base: str, paths: list[str], rounds: int) -> dict[str, list[float]]:
    client = await signed_in(base)
    timings: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(rounds):
        for path in paths:
            started = time.perf_counter()
            response = await client.get(path)
            timings[path].append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or "Message number" not in response.text:
                raise RuntimeError(f"GET {path}: {response.status_code}")
    await client.aclose()
    return timings


def _wait_listening(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("tributary serve exited")
        try:
            if httpx.get(base + "/login", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("tributary serve did not answer within 60 s")


def weblist(work: Path, *, messages: int, rounds: int = 200) -> Scenario:
    scenario = Scenario(f"Message list page, {messages:,}-message folder, under load", "ms p99", higher_is_better=False)
    scenario.target = "p99 < 50 ms"
    home = TributaryHome(work, "weblist")
    home.add_user(USER)
    driver = [sys.executable, "-m", "bench.scenarios.weblist"]
    print(f"  web: storing {messages:,} messages ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    made = json.loads(output([*driver, "fill", "--count", str(messages)], home.env))
    print(f"  web: stored in {time.perf_counter() - started:.0f} s; serving ...", file=sys.stderr, flush=True)
    [port] = free_ports(1)
    base = f"http://{HOST}:{port}"
    server = spawn([TRIBUTARY, "serve", "--host", HOST, "--port", str(port)], home.env)
    try:
        _wait_listening(base, server)
        first = f"/mail/folders/{made['folder']}"
        paths = [first, f"{first}?before={made['deep']}"]
        quiet = asyncio.run(measure(base, paths, max(20, rounds // 4)))
        loader = spawn([*driver, "load", "--base", base, "--connections", str(LOAD_CONNECTIONS)], home.env)
        time.sleep(2)  # let the load start
        timings = asyncio.run(measure(base, paths, rounds))
        loader.terminate()
        loader.wait(timeout=30)
        for path, label in zip(paths, ["first page", "half-way page"], strict=True):
            cuts = statistics.quantiles(timings[path], n=100)
            p50, p99 = cuts[49], cuts[98]
            idle = statistics.median(quiet[path])
            figure = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({rounds} requests; p50 without load {idle:.1f} ms)"
            scenario.add(f"Tributary, {label}", "tributary", p99, figure)
    finally:
        server.terminate()
        server.wait(timeout=30)
    worst = max((r.value or 0.0) for r in scenario.rows) if scenario.rows else None
    scenario.verdict = worst is not None and worst < 50
    return scenario


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["fill", "load"])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--base", default="")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    if args.action == "fill":
        print(json.dumps(asyncio.run(fill(Settings(), args.count))))
    else:
        print(json.dumps(asyncio.run(load(args.base, args.seconds, args.connections))))


if __name__ == "__main__":
    main()
