"""Peak memory while retrieving one big message (50 MB by default), IMAP and POP3.

Each contender runs twice into fresh stores: once against a mailbox holding
one tiny message (its baseline: interpreter, libraries, database) and once
against the mailbox holding the big one. The figure is the peak RSS of the
big run and that peak minus the baseline, which is what the message cost.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

from bench import peers
from bench.common import PASSWORD, Scenario, Timed, count_note, timed
from bench.corpus import fill_mailbox, make_message
from bench.scenarios.retrieval import Source, tributary
from tests.fixtures.dovecot import DovecotServer


def _mailbox(server: DovecotServer, user: str, size: int) -> Source:
    server.add_user(user, PASSWORD)
    rng = random.Random(size)  # noqa: S311 (test data)
    raw = make_message(rng, 1, attachment_bytes=max(0, size * 3 // 4 - 20_000)) if size else make_message(rng, 1)
    stats = fill_mailbox(server, user, iter([("INBOX", raw)]))
    return Source(server, user, "imap", 1, stats.megabytes, ("INBOX",))


Run = tuple[str, str, Callable[[], Timed], Callable[[], int]]


def _runs(work: Path, source: Source, protocol: str) -> list[Run]:
    """(name, kind, run, count of stored messages) per contender."""
    source = Source(source.server, source.user, protocol, 1, source.megabytes, source.wire_folders)
    who = tributary(work, source, name=f"tributary-{protocol}")
    found: list[Run] = [("Tributary", "tributary", who.run, lambda: who.count(_NO_RESULT))]
    box = source.box
    made = [peers.fetchmail(work, box, protocol)] if peers.installed("fetchmail") else []
    if protocol == "imap" and peers.installed("mbsync"):
        made.insert(0, peers.mbsync(work, box))
    found += [(peer.name, "peer", _argv_runner(peer.argv), peer.stored) for peer in made]
    return found


def _argv_runner(argv: list[str]) -> Callable[[], Timed]:
    return lambda: timed(argv)


_NO_RESULT = Timed(0.0, 0.0, 0, "", "")


def bigmessage(work: Path, server: DovecotServer, *, megabytes: int, protocols: list[str]) -> list[Scenario]:
    size = megabytes * 1_000_000
    tiny = _mailbox(server, "tiny@example.test", 0)
    big = _mailbox(server, "big@example.test", size)
    scenarios = []
    for protocol in protocols:
        scenario = Scenario(
            f"{protocol.upper()}: peak memory retrieving one {big.megabytes:.0f} MB message",
            "MB",
            higher_is_better=False,
        )
        limit = 2 * big.megabytes  # issue 20 (issue 9 asked for 3x)
        scenario.target = f"peak minus baseline < 2 x size ({limit:.0f} MB)"
        baseline = {name: run().rss_mb for name, _kind, run, _count in _runs(work / f"{protocol}-tiny", tiny, protocol)}
        for name, kind, run, count in _runs(work / f"{protocol}-big", big, protocol):
            print(f"  big message, {protocol}: {name} ...", file=sys.stderr, flush=True)
            done = run()
            note = count_note(count(), 1) if done.code in (0, 1) else f"FAILED (exit {done.code}): {done.tail()}"
            delta = done.rss_mb - baseline.get(name, 0.0)
            figure = f"peak {done.rss_mb:.0f} MB, minus baseline {delta:.0f} MB ({delta / big.megabytes:.1f} x size)"
            scenario.add(name, kind, done.rss_mb if not note else None, figure, rss_mb=done.rss_mb, note=note)
            if kind == "tributary":
                scenario.verdict = not note and delta < limit
        scenarios.append(scenario)
    return scenarios
