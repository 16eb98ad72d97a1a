"""Sending through a local aiosmtpd sink (`python -m bench.scenarios.sending` is the driver).

Tributary: `send_message` (what the compose page calls: compose, outbox row,
Outbox copy) for each message, through an SMTP account with security None and
no AUTH, either queued and then sent by outbox rounds (`process_due_outbox`,
one SMTP session per server, reused), or sent at once one at a time. The ceiling is smtplib sending the
same messages on one connection; the reference is smtplib opening a new
connection per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.common import HOST, Scenario, TributaryHome, count_note, timed
from service.config import Settings
from service.domain.compose import Draft
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import sending, users
from tests.fixtures import free_ports

SENDER = "sender@example.test"
BODY = "Hello,\n\n" + "This is a benchmark message with a few lines of text. " * 40 + "\n\nRegards\n"


class Sink:
    """aiosmtpd handler that only counts what it accepts."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += 1
        return "250 OK"


def _message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, "rcpt@example.test", f"Benchmark message {n}"
    msg.set_content(BODY)
    return msg


def smtplib_send(port: int, count: int, *, reuse: bool) -> None:
    client = smtplib.SMTP(HOST, port) if reuse else None
    for n in range(count):
        connection = client or smtplib.SMTP(HOST, port)
        connection.send_message(_message(n))
        if client is None:
            connection.quit()
    if client is not None:
        client.quit()


async def tributary_send(settings: Settings, account_id: int, count: int, *, queue: bool) -> dict[str, Any]:
    """`send_message` for each message: sent at once, or (`queue`) queued, then outbox rounds send them all."""
    db = Database(settings)
    try:
        user = await users.find_user(db=db, email=SENDER)
        box = SecretBox.from_settings(settings)
        statuses: dict[str, int] = {}
        started = time.perf_counter()
        for n in range(count):
            draft = Draft(to=("rcpt@example.test",), subject=f"Benchmark message {n}", text=BODY)
            result = await sending.send_message(
                db=db,
                secret_box=box,
                settings=settings,
                user_id=user.id,
                from_account_id=account_id,
                draft=draft,
                send_now=not queue,
            )
            statuses[str(result.status)] = statuses.get(str(result.status), 0) + 1
        composed = time.perf_counter() - started
        while queue and (results := await sending.process_due_outbox(db=db, secret_box=box, settings=settings)):
            for result in results:
                statuses[f"round {result.status}"] = statuses.get(f"round {result.status}", 0) + 1
        return {"statuses": statuses, **({"compose_seconds": composed} if queue else {})}
    finally:
        await db.dispose()


def sending_scenario(work: Path, *, count: int) -> Scenario:
    scenario = Scenario(f"Sending {count:,} messages through aiosmtpd", "msg/s")
    sink = Sink()
    [port] = free_ports(1)
    controller = Controller(sink, hostname=HOST, port=port)
    controller.start()
    try:
        home = TributaryHome(work, "sending")
        home.add_user(SENDER)
        account = json.loads(
            home.cli(
                "smtp",
                "add",
                "--user",
                SENDER,
                "--email",
                SENDER,
                "--server",
                HOST,
                "--port",
                str(port),
                "--security",
                "none",
                "--json",
            )
        )["id"]
        driver = [sys.executable, "-m", "bench.scenarios.sending", "--port", str(port), "--count", str(count)]
        runs = [
            ("Tributary, queued + outbox round", "tributary", [*driver, "queue", "--account", str(account)]),
            ("Tributary, send now (one at a time)", "tributary", [*driver, "tributary", "--account", str(account)]),
            ("smtplib, a connection per message (reference)", "peer", [*driver, "fresh"]),
            ("smtplib, one connection (ceiling)", "ceiling", [*driver, "reuse"]),
        ]
        for tool, kind, argv in runs:
            print(f"  sending: {tool} ...", file=sys.stderr, flush=True)
            before = sink.received
            done = timed(argv, env=home.env)
            got = sink.received - before
            note = count_note(got, count) if done.code == 0 else f"FAILED (exit {done.code}): {done.tail()}"
            seconds = _seconds(done.stdout) or done.wall
            rate = got / seconds
            figure = f"{rate:,.0f} msg/s, {seconds:.1f} s"
            if '"compose_seconds"' in done.stdout:
                composed = json.loads(done.stdout.strip().splitlines()[-2])["compose_seconds"]
                figure += f" (composing and queueing {composed:.1f} s of it)" if kind == "tributary" else ""
            scenario.add(tool, kind, rate if not note else None, figure, rss_mb=done.rss_mb, note=note)
    finally:
        controller.stop()
    return scenario


def _seconds(stdout: str) -> float | None:
    """The driver's own clock (process start-up and imports excluded, the same for every row)."""
    try:
        return float(json.loads(stdout.strip().splitlines()[-1])["seconds"])
    except (ValueError, IndexError, KeyError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["queue", "tributary", "fresh", "reuse"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--account", type=int)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.mode in ("queue", "tributary"):
        result = tributary_send(Settings(), args.account, args.count, queue=args.mode == "queue")
        print(json.dumps(asyncio.run(result)))
    else:
        smtplib_send(args.port, args.count, reuse=args.mode == "reuse")
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
