"""The protocol ceiling: minimal Python clients that only download, and discard.

IMAP: LIST, then per folder EXAMINE and one `UID FETCH 1:* BODY.PEEK[]` whose
response is streamed (literals read in chunks, never kept). The incremental
run asks STATUS (UIDVALIDITY UIDNEXT) per folder and compares with the state
file. POP3: UIDL, then RETR of each message not in the state file. Prints
{"messages": N, "bytes": B} on the last line. Run as `python -m bench.ceiling`.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import poplib
import re
from pathlib import Path
from typing import BinaryIO, cast

from bench.common import HOST

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_LIST = re.compile(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')


def _folders(imap: imaplib.IMAP4) -> list[str]:
    _typ, lines = imap.list()
    names = []
    for line in lines:
        match = _LIST.match(line if isinstance(line, bytes) else b"")
        if match and b"\\Noselect" not in match["flags"] and b"\\NonExistent" not in match["flags"]:
            names.append(match["name"].decode())
    return names


def _stream_fetch(imap: imaplib.IMAP4) -> tuple[int, int]:
    """UID FETCH 1:* BODY.PEEK[] on the selected folder; read and discard each literal."""
    tag = imap._new_tag()  # imaplib has no streaming API: send the command and read the socket file
    imap.send(tag + b" UID FETCH 1:* BODY.PEEK[]\r\n")
    stream = cast(BinaryIO, imap.file)
    count = size = 0
    while True:
        line = stream.readline()
        if not line:
            raise EOFError("connection closed during FETCH")
        while (match := _LITERAL.search(line)) is not None:
            left = int(match[1])
            count, size = count + 1, size + left
            while left:
                left -= len(stream.read(min(left, 1 << 20)))
            line = stream.readline()
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise RuntimeError(line.decode(errors="replace"))
            return count, size


def imap_ceiling(port: int, user: str, password: str, state: Path) -> tuple[int, int]:
    imap = imaplib.IMAP4(HOST, port)
    imap.login(user, password)
    known = json.loads(state.read_text()) if state.exists() else {}
    seen: dict[str, str] = {}
    count = size = 0
    for name in _folders(imap):
        quoted = name if name.startswith('"') else f'"{name}"'
        _typ, data = imap.status(quoted, "(UIDVALIDITY UIDNEXT)")
        seen[name] = (data[0] or b"").decode()
        if known.get(name) == seen[name]:
            continue  # nothing new: the incremental run ends here
        imap.select(quoted, readonly=True)
        got, got_bytes = _stream_fetch(imap)
        count, size = count + got, size + got_bytes
    imap.logout()
    state.write_text(json.dumps(seen))
    return count, size


def pop3_ceiling(port: int, user: str, password: str, state: Path) -> tuple[int, int]:
    poplib._MAXLINE = 1 << 20  # type: ignore[attr-defined]
    pop = poplib.POP3(HOST, port)
    pop.user(user)
    pop.pass_(password)
    known = set(json.loads(state.read_text())) if state.exists() else set()
    _resp, listing, _octets = pop.uidl()
    uidls = dict(line.decode().split(" ", 1) for line in listing)
    count = size = 0
    for number, uidl in uidls.items():
        if uidl in known:
            continue
        _resp, _lines, octets = pop.retr(int(number))
        count, size = count + 1, size + octets
    pop.quit()
    state.write_text(json.dumps(sorted(uidls.values())))
    return count, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("protocol", choices=["imap", "pop3"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    fetch = imap_ceiling if args.protocol == "imap" else pop3_ceiling
    count, size = fetch(args.port, args.user, args.password, args.state)
    print(json.dumps({"messages": count, "bytes": size}))


if __name__ == "__main__":
    main()
