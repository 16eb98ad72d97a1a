"""Full IMAP and POP3 retrieval, the incremental run with nothing new, and memory for one big message.

Every contender pulls the same mailbox from the same Dovecot into its own
fresh store: the full run under /usr/bin/time, a count of what it stored, then
(after a 1 s pause, or mbsync skips "recently modified" dirs) the same command
again as the incremental run. One untimed ceiling fetch first warms the
server's page cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import peers
from bench.common import PASSWORD, Scenario, Timed, TributaryHome, count_note, timed
from tests.fixtures.dovecot import DovecotServer


@dataclass
class Contender:
    name: str
    kind: str
    run: Callable[[], Timed]
    count: Callable[[Timed], int]
    ok_codes: tuple[int, ...] = (0,)
    after: Callable[[], None] | None = None
    index: Callable[[], Timed] | None = None  # Tributary: the search indexing its full run left to the service


@dataclass(frozen=True)
class Source:
    """The mailbox being pulled: where it is and what it holds."""

    server: DovecotServer
    user: str
    protocol: str
    messages: int
    megabytes: float
    wire_folders: tuple[str, ...]

    @property
    def box(self) -> peers.Mailbox:
        return peers.Mailbox(self.user, PASSWORD, self.server.imap_port, self.server.pop3_port, self.wire_folders)


def _ceiling(work: Path, source: Source, tag: str = "warmup") -> Contender:
    state = work / f"ceiling-{source.protocol}-{tag}.json"
    port = source.server.imap_port if source.protocol == "imap" else source.server.pop3_port
    argv = [sys.executable, "-m", "bench.ceiling", source.protocol, "--port", str(port)]
    argv += ["--user", source.user, "--password", PASSWORD, "--state", str(state)]
    return Contender("ceiling (Python, download only)", "ceiling", lambda: timed(argv), _json_count)


def _json_count(result: Timed) -> int:
    try:
        return int(json.loads(result.stdout.strip().splitlines()[-1])["messages"])
    except (ValueError, IndexError, KeyError):
        return 0


def tributary(work: Path, source: Source, name: str = "tributary") -> Contender:
    home = TributaryHome(work, name)
    home.add_user("bench@example.test")
    port = source.server.imap_port if source.protocol == "imap" else source.server.pop3_port
    task = home.add_task("bench@example.test", source.protocol, port, source.user, PASSWORD, "--manual")
    return Contender(
        "Tributary", "tributary", lambda: home.run_task(task), lambda _r: home.stored(task), index=home.index_for_search
    )


def contenders(work: Path, source: Source, only_tributary: bool = False) -> list[Contender]:
    found = [tributary(work, source)]
    if only_tributary:
        return [*found, _ceiling(work, source, "timed")]
    box = source.box
    makers: list[tuple[str, Callable[[], peers.Peer]]] = []
    if source.protocol == "imap":
        makers += [("mbsync", lambda: peers.mbsync(work, box)), ("offlineimap", lambda: peers.offlineimap(work, box))]
    makers += [("getmail", lambda: peers.getmail(work, box, source.protocol))]
    makers += [("fetchmail", lambda: peers.fetchmail(work, box, source.protocol))]
    for program, make in makers:
        if not peers.installed(program):
            continue
        peer = make()
        after = (lambda: reset_seen(source)) if program == "fetchmail" and source.protocol == "imap" else None
        found.append(Contender(peer.name, "peer", _runner(peer.argv), _counter(peer), peer.ok_codes, after))
    return [*found, _ceiling(work, source, "timed")]


def _counter(peer: peers.Peer) -> Callable[[Timed], int]:
    return lambda _result: peer.stored()


def _runner(argv: list[str]) -> Callable[[], Timed]:
    return lambda: timed(argv)


def reset_seen(source: Source) -> None:
    """Undo the \\Seen flags fetchmail sets, so every contender sees the same corpus."""
    source.server.doveadm("flags", "remove", "-u", source.user, "\\Seen", "mailbox", "*", "all")


def retrieval(
    work: Path, source: Source, *, label: str, only_tributary: bool = False
) -> tuple[Scenario, Scenario, Scenario]:
    """The full-run section, the search indexing Tributary's full run leaves to the service (the
    peers index nothing), and the incremental-run section, for one protocol."""
    full = Scenario(f"{label}: full retrieval, {source.messages:,} messages, {source.megabytes:.0f} MB", "msg/s")
    indexing = Scenario(f"{label}: search indexing after the full run (the service's background job)", "msg/s")
    again = Scenario(f"{label}: incremental run, nothing new", "s", higher_is_better=False)
    _ceiling(work, source).run()  # warm the server's page cache (its state file is then replaced)
    for who in contenders(work, source, only_tributary):
        print(f"  {label}: {who.name} ...", file=sys.stderr, flush=True)
        subprocess.run(["sync"], check=False)  # noqa: S607 (flush the previous store outside the clock)
        first = who.run()
        got = who.count(first)
        note = count_note(got, source.messages)
        if first.code not in who.ok_codes:
            note = f"FAILED (exit {first.code}): {first.tail()}"
        rate = got / first.wall if first.wall else 0.0
        megabytes_per_s = source.megabytes * got / source.messages / first.wall
        figure = f"{rate:,.0f} msg/s, {megabytes_per_s:.1f} MB/s, {first.wall:.1f} s"
        full.add(who.name, who.kind, rate if not note else None, figure, rss_mb=first.rss_mb, note=note)
        if who.index is not None:
            indexed = who.index()
            count = _json_count_plain(indexed)
            note3 = count_note(count, got) if indexed.code == 0 else f"FAILED (exit {indexed.code}): {indexed.tail()}"
            per_s = count / indexed.wall if indexed.wall else 0.0
            together = got / (first.wall + indexed.wall)
            figure3 = f"{per_s:,.0f} msg/s, {indexed.wall:.1f} s; retrieval and indexing together {together:,.0f} msg/s"
            indexing.add(who.name, who.kind, per_s if not note3 else None, figure3, rss_mb=indexed.rss_mb, note=note3)
        time.sleep(1.1)
        second = who.run()
        note2 = "" if second.code in who.ok_codes else f"FAILED (exit {second.code}): {second.tail()}"
        if who.kind == "ceiling" and _json_count(second):
            note2 = f"fetched {_json_count(second)} again"
        elif who.kind != "ceiling" and who.count(second) != got:
            note2 = f"store changed {got} -> {who.count(second)}"
        value = second.wall if not note2 else None
        again.add(who.name, who.kind, value, f"{second.wall:.2f} s", rss_mb=second.rss_mb, note=note2)
        if who.after:
            who.after()
    return full, indexing, again


def _json_count_plain(result: Timed) -> int:
    try:
        return int(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0
