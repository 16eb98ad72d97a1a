"""aiosmtplib's client, with every command and reply copied to a redacted transcript ("Enable debug")."""

from __future__ import annotations

from typing import Any, Literal

import aiosmtplib
from aiosmtplib.typing import Default

from service.protocols.transcript import Transcript


def record_reply(transcript: Transcript, code: int, text: str) -> None:
    """A reply as the server wrote it: "250-first", ..., "250 last" (RFC 5321 4.2.1 multiline form)."""
    lines = text.split("\n") or [""]
    for number, line in enumerate(lines, start=1):
        transcript.received(f"{code}{' ' if number == len(lines) else '-'}{line}")


class RecordingClient(aiosmtplib.SMTP):
    """Every command aiosmtplib sends through execute_command (EHLO, AUTH and its SASL answers,
    MAIL, RCPT, RSET, QUIT) is recorded with its reply; the Transcript redacts credentials."""

    def __init__(self, *, transcript: Transcript, **options: Any) -> None:
        super().__init__(**options)
        self.transcript = transcript

    async def execute_command(
        self,
        *args: bytes,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109  (aiosmtplib's signature)
    ) -> aiosmtplib.SMTPResponse:
        self.transcript.sent(b" ".join(args).decode("utf-8", "replace"))
        response = await super().execute_command(*args, timeout=timeout)
        record_reply(self.transcript, response.code, response.message)
        return response
