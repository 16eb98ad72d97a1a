"""The peers: configs and command lines for mbsync, offlineimap, getmail6 and fetchmail.

Each peer gets a fresh work dir with its config, a state dir kept between its
full run and the incremental run, and a Maildir store whose message files are
counted afterwards. All use plain IMAP/POP3 on 127.0.0.1 (no STARTTLS), like
Tributary's tasks here. fetchmail delivers through a one-line `sh` MDA (one
process per message, the way fetchmail hands mail to procmail or maildrop);
it only fetches unseen mail and sets \\Seen, so the IMAP corpus is reset after it.
getmail refuses to deliver as root, so as root it runs as `nobody`.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.common import HOST, count_maildir


@dataclass(frozen=True)
class Peer:
    """One peer ready to run: its argv (full run and incremental run are the same command)."""

    name: str
    argv: list[str]
    store: Path
    ok_codes: tuple[int, ...] = (0,)

    def stored(self) -> int:
        return count_maildir(self.store)


@dataclass(frozen=True)
class Mailbox:
    """Where a peer pulls from."""

    user: str
    password: str
    imap_port: int
    pop3_port: int
    wire_folders: tuple[str, ...]  # IMAP names as sent on the wire (modified UTF-7)


def installed(name: str) -> bool:
    return shutil.which(name) is not None


def _dirs(work: Path, name: str) -> tuple[Path, Path, Path]:
    base = work / name
    store, state = base / "store", base / "state"
    for path in (store / "cur", store / "new", store / "tmp", state):
        path.mkdir(parents=True)
    base.chmod(0o755)
    return base, store, state


def mbsync(work: Path, box: Mailbox) -> Peer:
    base, store, _state = _dirs(work, "mbsync")
    (base / "mbsyncrc").write_text(
        f"IMAPAccount bench\nHost {HOST}\nPort {box.imap_port}\nUser {box.user}\nPass {box.password}\n"
        "SSLType None\nAuthMechs LOGIN\n\nIMAPStore remote\nAccount bench\n\n"
        f"MaildirStore local\nPath {store}/\nInbox {store}/INBOX\nSubFolders Verbatim\n\n"
        "Channel all\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\n"
        "Expunge None\nRemove None\nSyncState *\n"
    )
    return Peer("mbsync", ["mbsync", "-q", "-c", str(base / "mbsyncrc"), "-a"], store)


def offlineimap(work: Path, box: Mailbox) -> Peer:
    base, store, state = _dirs(work, "offlineimap")
    (base / "offlineimaprc").write_text(
        f"[general]\naccounts = bench\nmetadata = {state}\nui = quiet\nmaxsyncaccounts = 1\n\n"
        "[Account bench]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {store}\n\n"
        f"[Repository remote]\ntype = IMAP\nremotehost = {HOST}\nremoteport = {box.imap_port}\n"
        f"remoteuser = {box.user}\nremotepass = {box.password}\nssl = no\nstarttls = no\n"
        "readonly = True\nmaxconnections = 1\n"
    )
    return Peer("offlineimap", ["offlineimap", "-c", str(base / "offlineimaprc"), "-o"], store)


# getmail6 waits for its delivery child with this timeout; a SIGCHLD that arrives before the
# wait is lost (a race in getmailcore.baseclasses.ForkingBase), and the run then fails after it.
GETMAIL_TIMEOUT = 30


def getmail(work: Path, box: Mailbox, protocol: str) -> Peer:
    base, store, state = _dirs(work, f"getmail-{protocol}")
    if protocol == "imap":
        retriever = f"type = SimpleIMAPRetriever\nserver = {HOST}\nport = {box.imap_port}\nmailboxes = ALL\n"
    else:
        retriever = f"type = SimplePOP3Retriever\nserver = {HOST}\nport = {box.pop3_port}\n"
    prefix: list[str] = []
    if os.geteuid() == 0:  # getmail will not deliver as root: run it as nobody
        nobody = pwd.getpwnam("nobody")
        prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        for path in (base, store, store / "cur", store / "new", store / "tmp", state):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    (base / "getmailrc").write_text(
        f"[retriever]\n{retriever}timeout = {GETMAIL_TIMEOUT}\nusername = {box.user}\npassword = {box.password}\n\n"
        f"[destination]\ntype = Maildir\npath = {store}/\n\n"
        "[options]\nread_all = false\ndelete = false\nverbose = 0\nmessage_log_verbose = false\n"
    )
    (base / "getmailrc").chmod(0o600)
    if prefix:
        os.chown(base / "getmailrc", nobody.pw_uid, nobody.pw_gid)
    argv = [*prefix, "getmail", "--getmaildir", str(state), "--rcfile", str(base / "getmailrc")]
    return Peer(f"getmail6 {protocol}", argv, store)


def fetchmail(work: Path, box: Mailbox, protocol: str, accounts: list[tuple[str, str]] | None = None) -> Peer:
    """fetchmail; with `accounts`, one poll entry per (user, password) in a single rc file."""
    base, store, state = _dirs(work, f"fetchmail-{protocol}")
    port = box.imap_port if protocol == "imap" else box.pop3_port
    folders = ""
    if protocol == "imap" and accounts is None:
        folders = "  folder " + ",".join(f'"{name}"' for name in box.wire_folders) + "\n"
    entries = "".join(
        f'poll {HOST} proto {protocol} port {port} auth password\n  user "{user}" there with password "{password}"\n'
        f'{folders}  keep\n  sslproto ""\n  mda "cat > {store}/new/m.$$"\n'
        for user, password in (accounts or [(box.user, box.password)])
    )
    rc = base / "fetchmailrc"
    rc.write_text("set no bouncemail\nset no syslog\n" + entries)
    rc.chmod(0o600)
    argv = ["env", f"FETCHMAILHOME={state}", "fetchmail", "-f", str(rc), "--idfile", str(state / "ids")]
    return Peer(f"fetchmail {protocol}", argv, store, ok_codes=(0, 1))  # 1 = "no new mail"
