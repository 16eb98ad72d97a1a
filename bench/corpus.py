"""A deterministic, realistic mail corpus written straight into a Dovecot user's Maildir.

One `doveadm save` per message would take minutes for 10,000 messages, so the
files go into the Maildir++ tree directly (names carry S= and W= sizes so
Dovecot answers RFC822.SIZE without reading them), then Dovecot resyncs and
indexes, and its per-folder counts are checked against what was written.
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, formataddr
from pathlib import Path

from tests.fixtures.dovecot import DovecotServer

FOLDERS = [
    "INBOX",
    "Sent",
    "Archiv",
    "Archiv/2024",
    "Projekte/Alpha",
    "Newsletters",
    "Rechnungen & Belege",
    "Reisen/Ça va",
    "Junk",
]
POLICY = default.clone(linesep="\n", max_line_length=78)
_WORD_TEXT = (
    "the of and to in is for on that with meeting report budget project schedule review invoice customer "
    "delivery update status release server backup quarter plan und der die das ist nicht mit für über "
    "Grüße Straße Änderung Prüfung schön möglich Köln München café naïve résumé déjà señor año"
)
WORDS = tuple(_WORD_TEXT.split())
NAMES = ["Anna Müller", "Jörg Schmidt", "Émilie Dupont", "Bob Smith", "Zoë Weiß", "Hélène Lefèvre", "Ivan Öztürk"]
SUBJECTS = ["Quarterly report {n}", "Re: Budget {n}", "Rechnung Nr. {n} - bitte prüfen", "Status update #{n}"]
ATTACHMENTS = [("application", "pdf", "Bericht_{n}.pdf"), ("image", "jpeg", "Foto_{n}.jpg")]


@dataclass
class CorpusStats:
    """What was written: message count and RFC 822 (CRLF) bytes, in total and per folder."""

    messages: int = 0
    rfc822_bytes: int = 0
    per_folder: dict[str, int] = field(default_factory=dict)

    @property
    def megabytes(self) -> float:
        return self.rfc822_bytes / 1e6


def _text(rng: random.Random, size: int) -> str:
    words = rng.choices(WORDS, k=max(8, size // 6))
    return "\n".join(" ".join(words[i : i + 11]) for i in range(0, len(words), 11)) + "\n"


def make_message(rng: random.Random, n: int, *, large_fraction: float = 0.04, attachment_bytes: int = 0) -> bytes:
    """One message: text or multipart/alternative, some with an attachment (100 KB - 1 MB)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = formataddr((rng.choice(NAMES), f"sender{n % 97}@example.test"))
    msg["To"] = formataddr(("Bench User", "bench@example.test"))
    msg["Subject"] = rng.choice(SUBJECTS).format(n=n)
    msg["Date"] = format_datetime(datetime.fromtimestamp(1_672_531_200 + n * 3600, UTC))
    msg["Message-ID"] = f"<{n}.{rng.getrandbits(48):012x}@example.test>"
    text = _text(rng, rng.randint(1500, 16000))
    msg.set_content(text)
    if rng.random() < 0.45:
        msg.add_alternative(f"<html><body><p>{text}</p></body></html>\n", subtype="html")
    size = attachment_bytes or (int(10 ** rng.uniform(5.0, 6.0)) if rng.random() < large_fraction else 0)
    if size:
        maintype, subtype, name = rng.choice(ATTACHMENTS)
        msg.add_attachment(rng.randbytes(size), maintype=maintype, subtype=subtype, filename=name.format(n=n))
    elif rng.random() < 0.08:
        msg.add_attachment(_text(rng, 2000), subtype="plain", filename=f"notiz_{n}.txt")
    return msg.as_bytes(policy=POLICY).replace(b"\r\n", b"\n")


def generate(count: int, *, folders: list[str], seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """(folder, message) pairs; INBOX gets about a third, the other folders share the rest."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible corpus, not secrets)
    random.seed(seed)  # the email package draws MIME boundaries from the global generator
    weights = [35.0 if f == "INBOX" else rng.uniform(3, 10) for f in folders]
    for n in range(1, count + 1):
        yield rng.choices(folders, weights)[0], make_message(rng, n)


def mutf7(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 5.1.3), as Dovecot names Maildir++ folders on disk."""
    out: list[str] = []
    pending: list[str] = []
    for ch in [*name, None]:
        if ch is not None and not 0x20 <= ord(ch) <= 0x7E:
            pending.append(ch)
            continue
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            pending.clear()
        if ch is not None:
            out.append("&-" if ch == "&" else ch)
    return "".join(out)


def fill_mailbox(server: DovecotServer, email: str, messages: Iterator[tuple[str, bytes]]) -> CorpusStats:
    """Write the messages into `email`'s Maildir, let Dovecot index them, and check its counts."""
    local, domain = email.split("@")
    root = server.directory / "home" / domain / local / "Maildir"
    owner = (server.directory / "home").stat()
    stats = CorpusStats()
    made: set[Path] = set()
    for n, (folder, data) in enumerate(messages, 1):
        path = root if folder == "INBOX" else root / ("." + mutf7(folder).replace("/", "."))
        if path not in made:
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            if folder != "INBOX":
                (path / "maildirfolder").touch()
            made.add(path)
        vsize = len(data) + data.count(b"\n")
        (path / "cur" / f"{1_672_531_200 + n}.M{n:07d}.bench,S={len(data)},W={vsize}:2,").write_bytes(data)
        stats.messages += 1
        stats.rfc822_bytes += vsize
        stats.per_folder[folder] = stats.per_folder.get(folder, 0) + 1
    for dirpath, _dirs, files in os.walk(root.parent.parent):
        os.chown(dirpath, owner.st_uid, owner.st_gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), owner.st_uid, owner.st_gid)
    server.doveadm("force-resync", "-u", email, "*")
    server.doveadm("index", "-u", email, "*")
    for folder in stats.per_folder:
        server.doveadm("mailbox", "subscribe", "-u", email, folder)
        seen = server.message_count(email, folder)
        if seen != stats.per_folder[folder]:
            raise RuntimeError(f"Dovecot sees {seen} messages in {folder}, {stats.per_folder[folder]} were written")
    return stats
