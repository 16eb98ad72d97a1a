"""OAuth2 bearer-token sign-in over SASL, shared by the IMAP, POP3 and SMTP adapters.

Two mechanisms carry an OAuth2 access token (RFC 6750 "Bearer"):

- OAUTHBEARER (RFC 7628): ``n,a=<user>,^Aauth=Bearer <token>^A^A``, a GS2 header
  (RFC 5801 section 4, "=" and "," in the name escaped) then key-values.
- XOAUTH2 (Google's, also Microsoft's): ``user=<user>^Aauth=Bearer <token>^A^A``.

OAUTHBEARER is the standard one and is chosen when the server offers it, else
XOAUTH2. On failure both servers send the error as a JSON challenge (RFC 7628
section 3.2.2); the client must answer it, ``^A`` for OAUTHBEARER (section 3.2.3)
and an empty response for XOAUTH2, and then gets the final refusal. The token is
sent once per sign-in, never again in answer to that challenge.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import TokenRejected, UnsupportedByServer

OAUTHBEARER = "OAUTHBEARER"
XOAUTH2 = "XOAUTH2"
RECONNECT_HINT = "Reconnect the account to sign in with the provider again."


def choose_mechanism(offered: Iterable[str], *, host: str) -> str:
    """OAUTHBEARER if the server offers it, else XOAUTH2; neither raises UnsupportedByServer."""
    names = {name.upper() for name in offered}
    for mechanism in (OAUTHBEARER, XOAUTH2):
        if mechanism in names:
            return mechanism
    listed = " ".join(sorted(names)) or "none"
    raise UnsupportedByServer(
        f"{host} does not offer sign-in with an OAuth2 token (XOAUTH2 or OAUTHBEARER) on this connection "
        f"(it offers: {listed}). Check the server and security settings, or use a password."
    )


def client_message(mechanism: str, user: str, token: str) -> bytes:
    """The client's first (and only) SASL message for `mechanism`, before base64."""
    if mechanism == OAUTHBEARER:
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode()
    if mechanism == XOAUTH2:
        return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    raise ValueError(f"not an OAuth2 mechanism: {mechanism}")


def error_answer(mechanism: str) -> bytes:
    """What answers the server's error challenge (before base64): ^A (RFC 7628 3.2.3) or nothing."""
    return b"\x01" if mechanism == OAUTHBEARER else b""


def token_rejected(host: str, server_text: str) -> TokenRejected:
    """The error for a token the server refused for good."""
    said = f" ({server_text})" if server_text else ""
    return TokenRejected(f"{host} refused the sign-in token{said}. {RECONNECT_HINT}")
