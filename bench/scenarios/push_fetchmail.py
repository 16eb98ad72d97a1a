"""The push scenario's only peer: fetchmail with `idle` (RFC 2177), one daemon process per account.

mbsync, getmail6 and offlineimap have no push into a store like Tributary's;
fetchmail's `idle` watches ONE folder of ONE account per process ("other
folders or accounts will not be polled when idle is in effect", fetchmail(1)),
so the reference is a handful of accounts, each with its own `fetchmail -N -d`
process, rc file, FETCHMAILHOME, pid file (its lock; root's is /var/run's
otherwise) and Maildir. It delivers
through the same one-line `sh` MDA as the other scenarios; a message counts as
stored when its file appears in new/.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from bench.common import HOST


class FetchmailIdle:
    """One `fetchmail --idle` daemon per account; `seen()` says when each account's first message file appeared."""

    def __init__(self, work: Path, port: int, accounts: list[tuple[str, str]]) -> None:
        self.stores: list[Path] = []
        self.logs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        for n, (user, password) in enumerate(accounts):
            base = work / f"fetchmail-idle-{n}"
            store, state = base / "store", base / "state"
            for path in (store / "cur", store / "new", store / "tmp", state):
                path.mkdir(parents=True)
            rc = base / "fetchmailrc"
            rc.write_text(
                "set no bouncemail\nset no syslog\n"
                f'poll {HOST} proto imap port {port} auth password\n  user "{user}" there with password "{password}"\n'
                f'  keep\n  idle\n  sslproto ""\n  mda "cat > {store}/new/m.$$"\n'
            )
            rc.chmod(0o600)
            log = base / "fetchmail.log"
            # stdbuf: fetchmail's stdio log to a file is block-buffered, and "+ idling" must show at once.
            argv = ["env", f"FETCHMAILHOME={state}", "stdbuf", "-oL", "-eL", "fetchmail", "-N", "-d", "3600", "-v"]
            argv += ["-f", str(rc), "--idfile", str(state / "ids"), "--pidfile", str(state / "pid")]
            with log.open("wb") as out:
                self.processes.append(subprocess.Popen(argv, stdout=out, stderr=out))  # noqa: S603
            self.stores.append(store / "new")
            self.logs.append(log)

    def wait_idling(self, timeout: float = 60) -> None:
        """Until every daemon's server said "+ idling" (Dovecot's answer to IDLE)."""
        deadline = time.monotonic() + timeout
        while not all("idling" in log.read_text(errors="replace") for log in self.logs):
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                tail = self.logs[0].read_text(errors="replace")[-300:].replace("\n", " / ")
                raise RuntimeError(f"fetchmail --idle did not reach IDLE: {tail}")
            time.sleep(0.05)

    def watch(self, timeout: float, interval: float) -> list[float]:
        """When (time.time()) a message file first appeared in each account's store (nan: never)."""
        seen = [float("nan")] * len(self.stores)
        deadline = time.monotonic() + timeout
        while any(t != t for t in seen) and time.monotonic() < deadline:  # nan != nan
            now = time.time()
            for n, new in enumerate(self.stores):
                if seen[n] != seen[n] and any(new.iterdir()):
                    seen[n] = now
            time.sleep(interval)
        return seen

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
