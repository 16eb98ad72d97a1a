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

With an OAuth2 access token (`sign_in_with_token`) the mechanism is OAUTHBEARER
(RFC 7628) when offered, else XOAUTH2 (aiosmtplib's own `auth_xoauth2`), again
one attempt: the token goes as the initial response (RFC 4954 allows the AUTH
line 12,288 octets), a refusal comes as a 334 error challenge that is answered
(`service.protocols.sasl`) to get the final 535, which is TokenRejected.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import aiosmtplib

from service.domain.outbox import SmtpReply
from service.errors import CredentialsRejected
from service.protocols import sasl
from service.protocols.smtp.errors import SmtpDeferred

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


async def sign_in_with_token(client: aiosmtplib.SMTP, username: str, token: str, *, host: str) -> str:
    """Authenticate once with an OAuth2 access token; returns the mechanism used. Raises
    TokenRejected when the server refuses the token, SmtpDeferred when it cannot check it now
    (4yz), UnsupportedByServer when it offers neither OAUTHBEARER nor XOAUTH2."""
    offered = {name.upper() for name in client.server_auth_methods}
    choices = [sasl.choose_mechanism(offered, host=host)]
    if choices[0] == sasl.OAUTHBEARER and sasl.XOAUTH2 in offered:
        choices.append(sasl.XOAUTH2)  # only if OAUTHBEARER is refused unjudged (504/534/538)
    for number, mechanism in enumerate(choices, start=1):
        try:
            if mechanism == sasl.OAUTHBEARER:
                await _oauthbearer(client, username, token)
            else:
                await client.auth_xoauth2(username, token)
        except aiosmtplib.SMTPAuthenticationError as exc:
            if exc.code in MECHANISM_REFUSED and number < len(choices):
                continue
            reply = SmtpReply(exc.code, exc.message)
            if reply.temporary:
                raise SmtpDeferred(f"{host} could not check the sign-in token for now ({reply}).", reply) from exc
            raise sasl.token_rejected(host, str(reply)) from exc
        return mechanism
    raise AssertionError("unreachable")


async def _oauthbearer(client: aiosmtplib.SMTP, username: str, token: str) -> None:
    """AUTH OAUTHBEARER with the initial response; a 334 is the error challenge (RFC 7628 3.2.2),
    answered with ^A (3.2.3) to get the final reply. aiosmtplib has XOAUTH2 only."""
    message = base64.b64encode(sasl.client_message(sasl.OAUTHBEARER, username, token))
    response = await client.execute_command(b"AUTH", b"OAUTHBEARER", message)
    if response.code == 334:
        response = await client.execute_command(base64.b64encode(sasl.error_answer(sasl.OAUTHBEARER)))
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)
