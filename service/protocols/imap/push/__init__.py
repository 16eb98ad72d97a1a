"""IMAP push (issue 16): one long-lived connection per automatic IMAP retrieval task that idles
(IDLE, RFC 2177; NOTIFY, RFC 5465) and says when new mail arrived; a normal retrieval run follows.

Why hand-written, beside imapclient (session.py): a worker holds up to 500 of these connections
at under 100 KB of memory each and under 2 % of a core for all of them together. imapclient is
blocking, so it would need one thread (with its stack) per connection; asyncio's streams give
each TLS connection a 256 KiB buffer (Python 3.11's sslproto). So this package is a small IMAP
client for exactly what push needs (greeting, CAPABILITY, STARTTLS, LOGIN / AUTHENTICATE,
LIST "" "", EXAMINE, NOTIFY SET, IDLE / DONE, LOGOUT), on non-blocking sockets driven by the
event loop, TLS through an SSLObject and memory BIOs, reads of 4 KiB, and one shared
SSLContext per (verify, extra CA) (`service.protocols.tls.shared_client_context`).

- wire.py: socket, TLS and the reader that cuts responses (lines and literals).
- parse.py: tokens of the responses push reads; quoted and literal command arguments.
- client.py: PushConnection and PushNews.
"""

from service.protocols.imap.push.client import PushConnection, PushNews

__all__ = ["PushConnection", "PushNews"]
