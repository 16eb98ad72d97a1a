"""`PushConnection`: one signed-in IMAP connection that idles and reports new mail.

Protocol, in order: greeting, CAPABILITY, STARTTLS (RFC 3501 6.2.1) when asked for, LOGIN or
AUTHENTICATE OAUTHBEARER / XOAUTH2 (`service.protocols.sasl`), CAPABILITY again, then either

- NOTIFY (RFC 5465): EXAMINE INBOX, then `NOTIFY SET (selected (MessageNew MessageExpunge))
  (personal (MessageNew MessageExpunge))` (section 5: MessageNew goes with MessageExpunge), so new
  mail in INBOX arrives as `* n EXISTS` and in any other personal folder as `* STATUS name
  (MESSAGES n UIDNEXT m)`; a server refusing that NOTIFY SET is used with IDLE alone; or
- IDLE (RFC 2177): EXAMINE INBOX, so new mail arrives as `* n EXISTS`;

and IDLE in both cases, renewed (DONE, tagged OK, IDLE) every `renew_seconds`: servers may end
an IDLE after 30 minutes. Only growth is news: an EXISTS that does not exceed the last one (after
EXPUNGEs), or a STATUS whose MESSAGES and UIDNEXT did not grow, is not.

Between two waits the connection can also fetch INBOX's new messages itself (`sizes_after`,
`fetch_new`): push's fast path (service/usecases/retrieval/push_fetch.py) stores them without
opening another connection.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from service.domain.values import Security
from service.errors import CredentialsRejected, RemoteError, ServerUnavailable, TlsFailure, UnsupportedByServer
from service.protocols import outbound, sasl
from service.protocols.imap.push import parse
from service.protocols.imap.push.fetched import FetchItems, fetch_items, merged
from service.protocols.imap.push.heard import Heard, PushNews, text_of_response
from service.protocols.imap.push.wire import MAX_LITERAL, MAX_RESPONSE, ProtocolViolation, Wire, connect
from service.protocols.imap.session import CONNECT_TIMEOUT_SECONDS, FetchedMessage, ImapAccount
from service.protocols.network import network_error
from service.protocols.tls import WRONG_PORT_HINT, shared_client_context

CLOSE_TIMEOUT_SECONDS = 3.0
# What the fast path's FETCH answers may hold in all (ProtocolViolation beyond): for sizes, room
# for tens of thousands of new messages; for bodies, the sizes the server gave plus this slack.
SIZES_BUDGET = 4 * 1024 * 1024
FETCH_SLACK = MAX_RESPONSE
FETCH_SLACK_PER_MESSAGE = 1024
# A server that ends IDLE on its own within QUICK_IDLE_SECONDS of its "+" is not idled with again
# at once: the pause before the next IDLE doubles from IDLE_PAUSE_FIRST up to IDLE_PAUSE_MAX (no
# busy loop of IDLE commands), and an IDLE that lasts resets it.
QUICK_IDLE_SECONDS = 5.0
IDLE_PAUSE_FIRST = 1.0
IDLE_PAUSE_MAX = 60.0
NOTIFY_SET = b"NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge))"


class PushConnection:
    """See the module docstring. `open()`, then `wait()` as often as wanted, then `close()`.
    One coroutine at a time: cancel a pending `wait()` before `close()`."""

    def __init__(
        self,
        account: ImapAccount,
        *,
        renew_seconds: float = 25 * 60,
        targets: Sequence[outbound.Target] | None = None,
    ) -> None:
        self.account = account
        self.renew_seconds = renew_seconds
        self.mode = ""
        self._targets = targets
        self._wire: Wire | None = None
        self._broken = False
        self._tag = 0
        self._heard = Heard(account.host)
        # IDLE's progress, kept so that a wait() cancelled at any await resumes where it was:
        # IDLE sent (tag set), "+" received (since set), DONE sent (done_sent).
        self._idle_tag: bytes | None = None
        self._idle_since: float | None = None
        self._done_sent = False
        self._quick_ends = 0  # IDLEs in a row the server ended at once
        self._sizes: dict[int, int] = {}  # the last sizes_after answer: fetch_new's budget

    # -- opening ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, secure, sign in, choose NOTIFY or IDLE and start idling (see the module docstring).
        Raises service errors; the connection is closed when it does."""
        try:
            await self._open()
        except BaseException:
            self._drop()
            raise

    async def _open(self) -> None:
        account = self.account
        with self._translated("connect"):
            targets = self._targets
            if targets is None:
                targets = await outbound.resolve_async(account.host, account.port, account.policy)
            sock = await connect(targets, min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds))
            self._wire = Wire(sock)
            if account.security is Security.SSL:
                async with asyncio.timeout(account.timeout_seconds):
                    await self._wire.start_tls(self._context(), account.host)
            parts = await self._read()
            self._heard.note(parts)  # a BYE raises; a [CAPABILITY ...] code saves a round trip
            greeting = parse.tokens(parts)
            if greeting[:2] not in ([b"*", b"OK"], [b"*", b"PREAUTH"]):
                raise ServerUnavailable(f"{account.host} did not greet like an IMAP server. {WRONG_PORT_HINT}")
        if account.security is Security.STARTTLS:
            await self._start_tls()
        if greeting[1] != b"PREAUTH":
            if not self._heard.capabilities:
                await self._simple(b"CAPABILITY", "capabilities")
            await self._login()
        await self._simple(b"CAPABILITY", "capabilities")
        await self._choose_mode()
        with self._translated("IDLE"):
            await self._start_idle()

    def _context(self) -> ssl.SSLContext:
        return shared_client_context(self.account.verify_certificate, self.account.extra_ca_file)

    async def _start_tls(self) -> None:
        host, port = self.account.host, self.account.port
        if not self._heard.capabilities:
            await self._simple(b"CAPABILITY", "capabilities")
        if "STARTTLS" not in self._heard.capabilities:
            raise TlsFailure(
                f"{host} does not offer STARTTLS on port {port}. Choose SSL/TLS "
                "(usually port 993), or None only if you accept sending your password in clear."
            )
        status, text = await self._command(b"STARTTLS", "STARTTLS")
        if status != b"OK":
            raise TlsFailure(f"{host} refused STARTTLS on port {port} ({text}).")
        assert self._wire is not None
        with self._translated("STARTTLS"):
            if self._wire.buffered:  # bytes sent before TLS must not pass for protected ones
                raise TlsFailure(f"{host} sent data it should not have during STARTTLS; the connection was closed.")
            async with asyncio.timeout(self.account.timeout_seconds):
                await self._wire.start_tls(self._context(), self.account.host)
        self._heard.capabilities = frozenset()  # RFC 3501 6.2.1: forget what was said before TLS
        await self._simple(b"CAPABILITY", "capabilities")

    async def _login(self) -> None:
        account = self.account
        if account.oauth_token is None:
            if "LOGINDISABLED" in self._heard.capabilities:  # RFC 3501 6.2.3: not over this connection
                raise TlsFailure(
                    f"{account.host} does not accept a password without TLS on port {account.port}. "
                    "Choose STARTTLS or SSL/TLS."
                )
            user, password = parse.astring(account.username), parse.astring(account.password)
            status, text = await self._command(b"LOGIN", "login", arguments=(user, password))
            if status == b"OK":
                return
            if "[UNAVAILABLE]" in text.upper():
                raise ServerUnavailable(f"{account.host} could not check the password for now ({text}).")
            raise CredentialsRejected(
                f"{account.host} rejected the username or password ({text}). Check them and try again."
            )
        offered = [name[5:] for name in self._heard.capabilities if name.startswith("AUTH=")]
        mechanism = sasl.choose_mechanism(offered, host=account.host)
        message = sasl.client_message(mechanism, account.username, account.oauth_token)
        answers = [base64.b64encode(message), base64.b64encode(sasl.error_answer(mechanism))]
        status, text = await self._command(b"AUTHENTICATE " + mechanism.encode(), "login", continuations=answers)
        if status == b"OK":
            return
        if "[UNAVAILABLE]" in text.upper():  # RFC 5530: the server could not check it now
            raise ServerUnavailable(f"{account.host} could not check the sign-in token for now ({text}).")
        raise sasl.token_rejected(account.host, text)

    async def _choose_mode(self) -> None:
        host = self.account.host
        if "IDLE" not in self._heard.capabilities and "NOTIFY" not in self._heard.capabilities:
            raise UnsupportedByServer(
                f"{host} does not announce new mail (no IMAP IDLE); Tributary checks it at the interval instead."
            )
        if "NOTIFY" in self._heard.capabilities:
            await self._simple(b'LIST "" ""', "list folders")  # the hierarchy delimiter, for STATUS names
        status, text = await self._command(b"EXAMINE INBOX", "open folder INBOX")
        if status != b"OK":
            raise ServerUnavailable(f"{host} refused to open INBOX: {text}.")
        self.mode = "idle"
        if "NOTIFY" in self._heard.capabilities:
            status, _ = await self._command(NOTIFY_SET, "NOTIFY")
            if status == b"OK":
                self.mode = "notify"

    # -- waiting ------------------------------------------------------------------

    async def wait(self) -> PushNews:
        """Until new mail is announced (see the module docstring); news kept since the last call
        comes back at once. ServerUnavailable when the connection is lost or stops answering."""
        if self._wire is None or self._broken:
            raise ServerUnavailable(f"The push connection to {self.account.host} is not open.")
        loop = asyncio.get_running_loop()
        with self._translated("waiting for new mail"):
            while self._heard.news is None:
                if self._done_sent:
                    await self._stop_idle()  # a renewal interrupted by a cancelled wait()
                if self._idle_since is None:
                    if self._quick_ends and self._idle_tag is None:
                        await asyncio.sleep(min(IDLE_PAUSE_FIRST * 2 ** (self._quick_ends - 1), IDLE_PAUSE_MAX))
                    await self._start_idle()
                assert self._idle_since is not None
                remaining = self._idle_since + self.renew_seconds - loop.time()
                if remaining <= 0:
                    await self._stop_idle()
                    continue
                try:
                    async with asyncio.timeout(remaining):
                        parts = await self._wire.read_response()
                except TimeoutError:
                    continue  # time to renew (a half-read response stays in the wire's buffer)
                self._during_idle(parts)
            while self._wire.has_response():  # already here: merge it into this news
                self._during_idle(await self._read())
        return self._heard.take_news()

    async def _start_idle(self) -> None:
        """Send IDLE (unless sent already) and wait for the server's "+"."""
        assert self._wire is not None
        if self._idle_tag is None:
            self._idle_tag = self._next_tag()
            await self._wire.send(self._idle_tag + b" IDLE\r\n")
        while self._idle_since is None:
            parts = await self._read()
            if parts[0].startswith(b"+"):
                self._idle_since = asyncio.get_running_loop().time()
            elif parts[0].startswith(self._idle_tag + b" "):
                self._idle_ended()
                raise ServerUnavailable(f"{self.account.host} refused IDLE ({text_of_response(parts)}).")
            else:
                self._heard.note(parts)

    async def _stop_idle(self) -> None:
        """Send DONE (unless sent already) and wait for the IDLE's tagged OK."""
        assert self._wire is not None
        if not self._done_sent:
            self._done_sent = True
            await self._wire.send(b"DONE\r\n")
        while self._idle_tag is not None:
            self._during_idle(await self._read())

    def _idle_ended(self) -> None:
        self._idle_tag, self._idle_since, self._done_sent = None, None, False

    def _during_idle(self, parts: list[bytes]) -> None:
        if self._idle_tag is not None and parts[0].startswith(self._idle_tag + b" "):
            if not self._done_sent:  # the server ended it: at once, again?
                since = self._idle_since
                quick = since is None or asyncio.get_running_loop().time() - since < QUICK_IDLE_SECONDS
                self._quick_ends = self._quick_ends + 1 if quick else 0
            else:
                self._quick_ends = 0
            self._idle_ended()  # by our DONE, or by the server
            if parse.tokens(parts)[1:2] != [b"OK"]:
                raise ServerUnavailable(f"{self.account.host} ended IDLE ({text_of_response(parts)}).")
            return
        self._heard.note(parts)

    # -- fetching new mail (the fast path) --------------------------------------------

    @property
    def uidvalidity(self) -> int | None:
        """INBOX's UIDVALIDITY as EXAMINE gave it (None if the server did not say)."""
        return self._heard.uidvalidity

    async def sizes_after(self, after_uid: int) -> dict[int, int]:
        """UID -> RFC822.SIZE of the INBOX messages whose UID is above `after_uid`, by
        `UID FETCH <after_uid+1>:* (UID RFC822.SIZE)`; `n:*` names the last message even when its
        UID is below n (RFC 3501 6.4.8), so the answer is filtered. Ends IDLE (DONE) first; the
        next wait() idles again. When the answer reaches the last message the server announced,
        the INBOX news heard so far is covered by it and forgotten (so one run per arrival)."""
        items = await self._fetch(b"UID FETCH %d:* (UID RFC822.SIZE)" % (after_uid + 1), SIZES_BUDGET)
        last = max((item.seq for item in items), default=0)
        if self._heard.exists is not None and last >= self._heard.exists:
            self._heard.forget("INBOX")
        self._sizes = {
            item.uid: item.size
            for item in items
            if item.uid is not None and item.uid > after_uid and item.size is not None
        }
        return dict(self._sizes)

    async def fetch_new(self, after_uid: int, uids: Sequence[int] | None = None) -> list[FetchedMessage]:
        """INBOX's messages above `after_uid` (only `uids` among them, when given), in UID order:
        UID, flags, internal date and bytes (BODY.PEEK[]: the remote \\Seen flag is left alone).
        A message the server sent without a body (NIL) is left out: the caller compares."""
        wanted = b",".join(b"%d" % uid for uid in uids) if uids else b"%d:*" % (after_uid + 1)
        expected = [self._sizes.get(uid, MAX_LITERAL) for uid in uids] if uids else [MAX_LITERAL] * 16
        budget = sum(expected) + FETCH_SLACK + FETCH_SLACK_PER_MESSAGE * len(expected)
        command = b"UID FETCH " + wanted + b" (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"
        items = await self._fetch(command, budget)
        found = {
            item.uid: FetchedMessage(uid=item.uid, raw=item.body, flags=item.flags, internal_date=item.internal_date)
            for item in items
            if item.uid is not None and item.uid > after_uid and item.body is not None
        }
        return [found[uid] for uid in sorted(found)]

    async def _fetch(self, command: bytes, budget: int) -> list[FetchItems]:
        """Leave IDLE, send `command`, and collect its FETCH responses until the tagged OK: at most
        `budget` bytes in all (a server sending more is broken: ServerUnavailable)."""
        if self._wire is None or self._broken:
            raise ServerUnavailable(f"The push connection to {self.account.host} is not open.")
        with self._translated("fetch new mail"):
            if self._idle_tag is not None:
                await self._stop_idle()
            tag = self._next_tag()
            await self._wire.send(tag + b" " + command + b"\r\n")
            items: dict[int, FetchItems] = {}  # by UID: one message's items may come in several responses
            uids: dict[int, int] = {}  # sequence number -> UID, for a later response without UID
            while True:
                parts = await self._read(max(0, budget))
                budget -= sum(map(len, parts))
                if parts[0].startswith(tag + b" "):
                    status, text = _status(parts)
                    if status != b"OK":
                        raise ServerUnavailable(f"{self.account.host} refused to fetch new mail: {text}.")
                    return list(items.values())
                item = fetch_items(parts)
                uid = None if item is None else item.uid if item.uid is not None else uids.get(item.seq)
                if item is not None and uid is not None:
                    known = items.get(uid)
                    items[uid] = merged(known, item) if known is not None else item
                    uids[item.seq] = uid
                else:  # EXISTS, EXPUNGE, or a flag change without UID
                    if item is None:
                        uids.clear()  # an EXPUNGE renumbers the messages
                    self._heard.note(parts)

    # -- closing ------------------------------------------------------------------

    async def close(self) -> None:
        """DONE and LOGOUT, briefly and best effort, then close the socket. Safe to call twice."""
        wire = self._wire
        if wire is None:
            return
        try:
            if not self._broken:
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    if self._idle_tag is not None and not self._done_sent:
                        await wire.send(b"DONE\r\n")
                    tag = self._next_tag()
                    await wire.send(tag + b" LOGOUT\r\n")
                    while not (await wire.read_response())[0].startswith(tag + b" "):
                        pass
        except (OSError, EOFError, TimeoutError, ValueError):
            pass
        finally:
            self._drop()

    def _drop(self) -> None:
        wire, self._wire = self._wire, None
        self._idle_ended()
        if wire is not None:
            wire.close()

    # -- commands and responses ---------------------------------------------------

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"P%d" % self._tag

    async def _simple(self, command: bytes, step: str) -> None:
        status, text = await self._command(command, step)
        if status != b"OK":
            raise ServerUnavailable(f"{self.account.host} refused {step}: {text}.")

    async def _command(
        self,
        command: bytes,
        step: str,
        *,
        arguments: Sequence[tuple[bytes, bytes | None]] = (),
        continuations: Sequence[bytes] = (),
    ) -> tuple[bytes, str]:
        """Send `command` with `arguments` (literals sent after the server's "+"), answer further
        "+" with `continuations` in turn (SASL), and return the tagged status and text."""
        assert self._wire is not None
        tag = self._next_tag()
        with self._translated(step):
            line = tag + b" " + command
            for text, literal in arguments:
                line += b" " + text
                if literal is not None:
                    await self._wire.send(line + b"\r\n")
                    if (result := await self._until_continuation(tag)) is not None:
                        return result
                    line = literal
            await self._wire.send(line + b"\r\n")
            pending = list(continuations)
            while True:
                parts = await self._read()
                if parts[0].startswith(b"+"):
                    await self._wire.send((pending.pop(0) if pending else b"*") + b"\r\n")
                elif parts[0].startswith(tag + b" "):
                    return _status(parts)
                else:
                    self._heard.note(parts)

    async def _until_continuation(self, tag: bytes) -> tuple[bytes, str] | None:
        while True:
            parts = await self._read()
            if parts[0].startswith(b"+"):
                return None
            if parts[0].startswith(tag + b" "):
                return _status(parts)
            self._heard.note(parts)

    async def _read(self, limit: int = MAX_RESPONSE) -> list[bytes]:
        assert self._wire is not None
        async with asyncio.timeout(self.account.timeout_seconds):
            return await self._wire.read_response(limit)

    @contextmanager
    def _translated(self, step: str) -> Iterator[None]:
        """Socket, ssl and protocol failures as service errors; the connection is then unusable."""
        host, port = self.account.host, self.account.port
        try:
            yield
        except RemoteError:
            self._broken = True
            raise
        except ProtocolViolation as exc:
            self._broken = True
            raise ServerUnavailable(f"{host} sent a malformed response during {step}.") from exc
        except (OSError, EOFError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self._broken = True
            translated = network_error(
                exc, host=host, port=port, step=step, timeout=self.account.timeout_seconds, expired=False
            )
            raise (translated or ServerUnavailable(f"{host} failed during {step}.")) from exc
        except (ValueError, IndexError) as exc:  # a response the parsers choke on (after OSError: ssl's are both)
            self._broken = True
            raise ServerUnavailable(f"{host} sent a malformed response during {step}.") from exc


def _status(parts: list[bytes]) -> tuple[bytes, str]:
    """(b"OK" / b"NO" / b"BAD", the rest) of a tagged response."""
    _tag, _, rest = parts[0].partition(b" ")
    status, _, text = rest.partition(b" ")
    return status.upper(), text.decode("utf-8", "replace").strip()[:200] or status.decode("ascii", "replace")


__all__ = ["PushConnection", "PushNews"]
