"""SMTP AUTH (RFC 4954): one sign-in attempt per session, with the best mechanism offered.

aiosmtplib's `login()` tries each mechanism in turn until one works: with a wrong
password a session then fails two or three sign-ins (PLAIN, then LOGIN, ...),
and a server's fail2ban counts every one. Here one mechanism is chosen from the
EHLO AUTH list and the password is tried once:

- on an encrypted connection PLAIN (RFC 4616, one round trip), then LOGIN, then
  CRAM-MD5 (RFC 2195, historic);
- in clear CRAM-MD5 first, which never sends the password itself, then PLAIN, LOGIN.

The next mechanism is tried only when the server refused the mechanism itself,
without judging the password: 504 (unrecognised), 534 (too weak) or 538
(encryption required), RFC 4954 sections 4 and 6. A 535 (wrong credentials) or
a 454 (temporary failure) ends the attempt.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiosmtplib

from service.errors import CredentialsRejected

ENCRYPTED_PREFERENCE = ("plain", "login", "cram-md5")
CLEAR_PREFERENCE = ("cram-md5", "plain", "login")
MECHANISM_REFUSED = frozenset({504, 534, 538})


def mechanisms(offered: Iterable[str], *, encrypted: bool) -> list[str]:
    """The mechanisms to use, best first, among those the server offered (lower case)."""
    available = {name.lower() for name in offered}
    return [name for name in (ENCRYPTED_PREFERENCE if encrypted else CLEAR_PREFERENCE) if name in available]


async def sign_in(client: aiosmtplib.SMTP, username: str, password: str, *, encrypted: bool, host: str) -> str:
    """Authenticate once; returns the mechanism used. Raises aiosmtplib's SMTPAuthenticationError
    (translated by the caller) when the server refuses, CredentialsRejected when it offers
    nothing Tributary speaks."""
    choices = mechanisms(client.server_auth_methods, encrypted=encrypted)
    if not choices:
        offered = " ".join(client.server_auth_methods) or "none"
        raise CredentialsRejected(f"{host} offers no sign-in method Tributary supports (it offers: {offered}).")
    methods = {"plain": client.auth_plain, "login": client.auth_login, "cram-md5": client.auth_crammd5}
    for number, name in enumerate(choices, start=1):
        try:
            await methods[name](username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            if exc.code not in MECHANISM_REFUSED or number == len(choices):
                raise
            continue  # the mechanism was refused, the password not judged: the next one
        return name.upper()
    raise AssertionError("unreachable")
