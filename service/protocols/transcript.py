"""Protocol transcripts for "Enable debug", with credentials redacted before they are kept.

Redaction covers what IMAP, POP3 and SMTP clients send to authenticate:
LOGIN user pass, AUTHENTICATE/AUTH continuation lines (base64), PASS, APOP
digests. Callers also pass the account's own password and username so that
any echo of them is masked wherever it appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REDACTED = "[redacted]"
MAX_LINE = 500
MAX_LINES = 2000

_PATTERNS = [
    # IMAP: tag LOGIN user password
    (re.compile(r"^(\S+\s+LOGIN\s+)(.*)$", re.IGNORECASE), r"\1" + REDACTED),
    # IMAP: tag AUTHENTICATE PLAIN <initial response>
    (re.compile(r"^(\S+\s+AUTHENTICATE\s+\S+)(\s+.*)?$", re.IGNORECASE), r"\1 " + REDACTED),
    # POP3: PASS secret / APOP user digest
    (re.compile(r"^(PASS\s+).*$", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"^(APOP\s+\S+\s+).*$", re.IGNORECASE), r"\1" + REDACTED),
    # SMTP and POP3 SASL: AUTH mechanism [initial response]
    (re.compile(r"^(AUTH\s+\S+)(\s+.*)?$", re.IGNORECASE), r"\1 " + REDACTED),
]


def redact_line(line: str, secrets: tuple[str, ...] = (), *, from_client: bool = True) -> str:
    """A line with any credential in it replaced by [redacted]: the command patterns apply to what
    the client sends (a server's "250-AUTH LOGIN PLAIN" is not a login); the secrets to both sides."""
    for pattern, replacement in _PATTERNS if from_client else ():
        if pattern.match(line):
            line = pattern.sub(replacement, line)
            break
    for secret in secrets:
        if secret:
            line = line.replace(secret, REDACTED)
    return line


@dataclass
class Transcript:
    """A bounded, redacted record of one session: '>' lines sent, '<' lines received."""

    secrets: tuple[str, ...] = ()
    lines: list[str] = field(default_factory=list)
    _in_sasl: bool = False

    def sent(self, line: str) -> None:
        text = line.rstrip("\r\n")
        if self._in_sasl:  # a SASL continuation answer: always base64 credentials
            text = REDACTED
        self._add("> " + redact_line(text, self.secrets))

    def received(self, line: str) -> None:
        text = line.rstrip("\r\n")
        # "+ base64" / "334 base64" asks for the next SASL answer.
        self._in_sasl = text.startswith(("+ ", "334 ")) or text == "+"
        self._add("< " + redact_line(text, self.secrets, from_client=False))

    def _add(self, line: str) -> None:
        if len(self.lines) < MAX_LINES:
            self.lines.append(line[:MAX_LINE])

    def text(self) -> str:
        return "\n".join(self.lines)
