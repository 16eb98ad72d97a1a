"""`python -m bench` (`make bench`): run the scenarios, print one Markdown table, write it to --out.

Defaults are the issue's sizes; e.g. `--messages 2000 --only imap,pop3` for a quick run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import PASSWORD, ROOT, Scenario
from bench.corpus import FOLDERS, fill_mailbox, generate, mutf7
from bench.report import table
from bench.scenarios.bigmessage import bigmessage
from bench.scenarios.polling import polling
from bench.scenarios.push import push
from bench.scenarios.retrieval import Source, retrieval
from bench.scenarios.search import search_scenario
from bench.scenarios.sending import sending_scenario
from bench.scenarios.weblist import weblist
from tests.fixtures.dovecot import DovecotServer

SCENARIOS = ("imap", "pop3", "poll", "push", "send", "web", "search", "big")


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000, help="IMAP and POP3 corpus size")
    parser.add_argument("--tasks", type=int, default=1_000, help="idle tasks for the poll round")
    parser.add_argument("--sends", type=int, default=1_000, help="messages to send")
    parser.add_argument("--folder-messages", type=int, default=100_000, help="messages in the listed folder")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per list page")
    parser.add_argument("--search-messages", type=int, default=100_000, help="messages in the searched mailbox")
    parser.add_argument("--big-mb", type=int, default=50, help="size of the big message, MB")
    parser.add_argument("--push-tasks", type=int, default=200, help="push tasks that each get one message (latency)")
    parser.add_argument("--push-idle-connections", type=int, default=500, help="idle push connections (memory, CPU)")
    parser.add_argument("--push-idle-seconds", type=float, default=60, help="the idle window CPU is measured over")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--tributary-only", action="store_true", help="skip the peers in the retrieval scenarios")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args()
    unknown = set(options.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return options


def faster(scenario: Scenario, peer: str, factor: float) -> None:
    """Target: Tributary at least `factor` times the named peer (or the best peer without it)."""
    reference = next((r for r in scenario.rows if r.tool == peer and r.value), None) or scenario.best_peer()
    ours = scenario.tributary()
    scenario.target = f">= {factor:g}x {peer}"
    if reference and reference.value:
        scenario.target += f" (>= {factor * reference.value:,.0f} {scenario.unit})"
        scenario.verdict = bool(ours and ours.value and ours.value >= factor * reference.value)
    ceiling = next((r for r in scenario.rows if r.kind == "ceiling" and r.value), None)
    if ceiling and ceiling.value:
        scenario.target += f"; ceiling {ceiling.value:,.0f} {scenario.unit}"


def _mail(work: Path, server: DovecotServer, options: argparse.Namespace, only: set[str]) -> list[Scenario]:
    found: list[Scenario] = []
    for protocol in ("imap", "pop3"):
        if protocol not in only:
            continue
        user = f"{protocol}corpus@example.test"
        server.add_user(user, PASSWORD)
        folders = FOLDERS if protocol == "imap" else ["INBOX"]
        print(f"corpus: {options.messages:,} messages for {protocol.upper()} ...", file=sys.stderr, flush=True)
        stats = fill_mailbox(server, user, generate(options.messages, folders=folders, seed=options.seed))
        wire = tuple(mutf7(f) for f in stats.per_folder)
        source = Source(server, user, protocol, stats.messages, stats.megabytes, wire)
        full, indexing, again = retrieval(
            work / protocol, source, label=protocol.upper(), only_tributary=options.tributary_only
        )
        indexing.target = "none: the peers index nothing; search finds the mail once indexed"
        faster(full, "mbsync" if protocol == "imap" else "fetchmail pop3", 2 if protocol == "imap" else 5)  # issue 20
        found += [full, indexing, again]
    if "poll" in only:
        scenario = polling(work / "poll", server, tasks=options.tasks)
        slowest = max((r.value for r in scenario.rows if r.kind == "tributary" and r.value), default=None)
        scenario.target = "<= 60 s (a tenth of the 600 s interval), the real worker included"
        scenario.verdict = slowest is not None and slowest <= 60
        found.append(scenario)
    if "push" in only:
        found += push(
            work / "push",
            server,
            tasks=options.push_tasks,
            connections=options.push_idle_connections,
            seconds=options.push_idle_seconds,
        )
    if "big" in only:
        found += bigmessage(work / "big", server, megabytes=options.big_mb, protocols=["imap", "pop3"])
    return found


def main() -> None:
    options = _options()
    only = set(options.only.split(","))
    os.chdir(ROOT)
    work = Path(tempfile.mkdtemp(prefix="tributary-bench-", dir="/tmp"))
    work.chmod(0o755)  # getmail delivers as nobody when run as root
    started = time.monotonic()
    scenarios: list[Scenario] = []
    try:
        if only & {"imap", "pop3", "poll", "push", "big"}:
            server = DovecotServer.start()
            try:
                scenarios += _mail(work, server, options, only)
            finally:
                server.stop()
        if "send" in only:
            sending = sending_scenario(work / "send", count=options.sends)
            sending.target = "no target in the issue; ceiling: smtplib on one connection"
            scenarios.append(sending)
        if "web" in only:
            scenarios.append(weblist(work / "web", messages=options.folder_messages, rounds=options.requests))
        if "search" in only:
            searched = search_scenario(work / "search", messages=options.search_messages, rounds=options.requests)
            scenarios.append(searched)
    finally:
        if options.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    heading = (
        f"## Tributary benchmark, {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} "
        f"({os.cpu_count()} CPUs), {time.monotonic() - started:.0f} s\n\n"
        f"Command: `python -m bench {' '.join(sys.argv[1:])}`\n\n"
    )
    text = heading + table(scenarios)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text)
    print(f"written to {options.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
