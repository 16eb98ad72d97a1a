"""One IMAP4rev1 (RFC 3501) session with imapclient: connect, sign in, list, select, fetch.

Blocking by nature (imaplib underneath): the use case calls these methods
through `asyncio.to_thread`, one call at a time. What this adapter guarantees:

- Security is data: SSL wraps the socket before the greeting (port 993);
  STARTTLS (RFC 2595) upgrades after it and is an error, never a fallback to
  plain text, when the server does not offer it; None stays in clear.
- Certificates are verified unless the account turns that off.
- The server's name is resolved once and only addresses the account's outbound
  policy allows are connected to (`service.protocols.outbound`); the name still
  drives SNI and certificate verification.
- Timeouts: a connect timeout, a read timeout per socket operation, and a
  deadline for the whole session enforced by a watchdog that shuts the socket
  down, so a server trickling one byte a minute cannot hold a worker forever.
- Folders are read-only (EXAMINE) and bodies fetched with BODY.PEEK[], so the
  remote \\Seen flags stay as they were. Names arrive decoded from modified
  UTF-7 (RFC 3501 5.1.3) and are returned with "/" as the hierarchy delimiter.
- Sign-in: LOGIN with the password, or, when the account holds an OAuth2 access
  token, AUTHENTICATE OAUTHBEARER (RFC 7628) if the capabilities offer it, else
  XOAUTH2 (`service.protocols.sasl`), through imapclient's SASL support. A
  refused token is TokenRejected, so the caller can refresh it once and retry.
- Every library, socket and ssl exception leaves as a `service.errors` error.
"""

from __future__ import annotations

import ast
import imaplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from imapclient import SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.imapclient import join_message_ids
from imapclient.response_parser import parse_fetch_response

from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.values import Security
from service.errors import (
    CredentialsRejected,
    MailboxMissing,
    MessageWithheld,
    RemoteError,
    ServerUnavailable,
    TlsFailure,
)
from service.protocols import outbound, sasl
from service.protocols.deadline import Deadline
from service.protocols.imap.connection import WatchedClient
from service.protocols.imap.fetch import Parsed, parse_general, parse_plain_fetch, parse_sizes
from service.protocols.imap.folders import NOT_SELECTABLE, RemoteFolder, slash_path, special_use_of
from service.protocols.network import network_error
from service.protocols.tls import WRONG_PORT_HINT, shared_client_context
from service.protocols.transcript import Transcript

CONNECT_TIMEOUT_SECONDS = 15.0
SIZE_CHUNK = 1000  # UIDs per FETCH RFC822.SIZE: keeps command lines well under servers' limits


@dataclass(frozen=True, slots=True)
class ImapAccount:
    """How to reach and sign in to one remote mailbox: with the password, or with an OAuth2 access
    token when `oauth_token` is set (the password is then unused). Neither appears in repr()."""

    host: str
    port: int
    security: Security
    username: str
    password: str = field(repr=False)
    verify_certificate: bool = True
    timeout_seconds: float = 60.0
    extra_ca_file: Path | None = None
    debug: bool = False
    policy: OutboundPolicy = STRICT
    oauth_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SelectedFolder:
    uidvalidity: int
    exists: int
    uidnext: int | None = None  # the UID the next message will get (RFC 3501 2.3.1.1), when announced


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid: int
    raw: bytes
    flags: frozenset[str]
    internal_date: datetime | None


def _flag_names(flags: Sequence[Any]) -> frozenset[str]:
    return frozenset(f.decode("ascii", "replace") if isinstance(f, bytes) else str(f) for f in flags)


class ImapSession:
    """One signed-in IMAP session. Use `open_session()`; call methods from one thread at a time."""

    def __init__(self, account: ImapAccount, *, deadline: float | None = None) -> None:
        self.account = account
        self.deadline = deadline
        secrets = (account.password, account.oauth_token or "")
        self.transcript = Transcript(secrets=secrets) if account.debug else None
        self.client: WatchedClient | None = None
        self.welcome = ""
        self.tls_socket: ssl.SSLSocket | None = None
        self._deadline = Deadline(deadline)

    # -- connection ---------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        return shared_client_context(self.account.verify_certificate, self.account.extra_ca_file)

    def connect(self, targets: Sequence[outbound.Target] | None = None) -> None:
        """Resolve (unless `targets`, already checked, are given), TCP connect to an allowed address,
        TLS for SSL, read the greeting, then STARTTLS when asked for."""
        account = self.account
        timeout = SocketTimeout(
            connect=min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds), read=account.timeout_seconds
        )
        self._deadline.start()
        with self.translated("connect"):
            if targets is None:
                targets = outbound.resolve(account.host, account.port, account.policy)
            self.client = WatchedClient(
                account.host,
                port=account.port,
                ssl=account.security is Security.SSL,
                ssl_context=self._context() if account.security is Security.SSL else None,
                timeout=timeout,
                watcher=self._deadline.watch,
                targets=targets,
            )
            self.client.normalise_times = False
            self.welcome = self.client.welcome.decode("utf-8", "replace") if self.client.welcome else ""
            self._trace_received(self.welcome)
            self._hook_transcript()
            if account.security is Security.STARTTLS:
                self.start_tls()
            if account.security is not Security.NONE:
                sock = self.client.socket()
                self.tls_socket = sock if isinstance(sock, ssl.SSLSocket) else None
                if self.tls_socket is not None:
                    self._deadline.watch(self.tls_socket)

    def start_tls(self) -> None:
        assert self.client is not None
        if not self.client.has_capability("STARTTLS"):
            raise TlsFailure(
                f"{self.account.host} does not offer STARTTLS on port {self.account.port}. Choose SSL/TLS "
                "(usually port 993), or None only if you accept sending your password in clear."
            )
        self.client.starttls(self._context())

    def capabilities(self) -> list[str]:
        assert self.client is not None
        with self.translated("capabilities"):
            return [c.decode("ascii", "replace") for c in self.client.capabilities()]

    def login(self) -> str:
        """Sign in; returns the way it was done: "LOGIN", "OAUTHBEARER" or "XOAUTH2"."""
        assert self.client is not None
        account = self.account
        with self.translated("login"):
            if account.oauth_token is None:
                self.client.login(account.username, account.password)
                return "LOGIN"
            offered = [c[5:] for c in self.capabilities() if c.upper().startswith("AUTH=")]
            mechanism = sasl.choose_mechanism(offered, host=account.host)
            self.client.sasl_login(mechanism, _Responder(mechanism, account.username, account.oauth_token))
            return mechanism

    def close(self) -> None:
        self._deadline.cancel()
        if self.client is None:
            return
        try:
            self.client.logout()
        except (IMAPClientError, imaplib.IMAP4.error, OSError):
            with suppress(OSError):
                self.client.shutdown()
        self.client = None

    # -- transcript ---------------------------------------------------------

    def _hook_transcript(self) -> None:
        """Route imaplib's debug output (one line per command and response) into the transcript."""
        if self.transcript is None or self.client is None:
            return
        imap: Any = self.client._imap
        transcript = self.transcript

        def mesg(text: str, secs: float | None = None) -> None:
            if text.startswith(("> ", "< ")):
                line = text[2:]
                if line.startswith(("b'", 'b"')):
                    try:
                        line = bytes(ast.literal_eval(line)).decode("utf-8", "replace")
                    except (ValueError, SyntaxError):  # unreadable: keep it as text, still redacted
                        line = line[2:-1]
                (transcript.sent if text.startswith(">") else transcript.received)(line)

        imap._mesg = mesg
        imap.debug = 4

    def _trace_received(self, line: str) -> None:
        if self.transcript is not None and line:
            self.transcript.received(line)

    # -- folders and messages -------------------------------------------------

    def list_folders(self) -> list[RemoteFolder]:
        """Every selectable folder (LIST "" "*"; \\Noselect and \\NonExistent skipped), with the
        personal namespace prefix when folders are listed under INBOX (see `_personal_prefix`)."""
        assert self.client is not None
        with self.translated("list folders"):
            listed = self.client.list_folders()
        folders = []
        for flags, delimiter, name in listed:
            lowered = {f.lower() for f in flags if isinstance(f, bytes)}
            if lowered & NOT_SELECTABLE:
                continue
            folders.append(RemoteFolder(name=name, path=slash_path(name, delimiter), special_use=special_use_of(flags)))
        if any(folder.path.upper().startswith("INBOX/") for folder in folders):
            prefix = self._personal_prefix()
            folders = [replace(folder, personal_prefix=prefix) for folder in folders]
        return folders

    def _personal_prefix(self) -> str:
        """The first personal namespace's prefix (NAMESPACE, RFC 2342) in "/" form: "INBOX/" where
        folders live under "INBOX." (Cyrus, Courier), "" otherwise or without NAMESPACE. Asked only
        when folders are listed under INBOX, so a poll of a server without that costs no round trip."""
        assert self.client is not None
        with self.translated("namespace"):
            try:
                personal = self.client.namespace().personal
            except (IMAPClientAbortError, imaplib.IMAP4.abort):
                raise
            except (IMAPClientError, imaplib.IMAP4.error):  # refused (no NAMESPACE): names stay as listed
                return ""
        if not personal:
            return ""
        prefix, delimiter = personal[0]
        return slash_path(prefix if isinstance(prefix, str) else prefix.decode("utf-8", "replace"), delimiter)

    def select(self, folder: RemoteFolder) -> SelectedFolder:
        """EXAMINE the folder (read-only, RFC 3501 6.3.2): its UIDVALIDITY, size and UIDNEXT."""
        assert self.client is not None
        with self.translated(f"open folder {folder.path}", folder=folder.path):
            info = self.client.select_folder(folder.name, readonly=True)
        uidvalidity = info.get(b"UIDVALIDITY")
        if uidvalidity is None:
            raise MailboxMissing(f"The folder {folder.path} on {self.account.host} has no UIDVALIDITY.")
        uidnext = info.get(b"UIDNEXT")
        return SelectedFolder(
            uidvalidity=int(uidvalidity),
            exists=int(info.get(b"EXISTS", 0)),
            uidnext=int(uidnext) if uidnext is not None else None,
        )

    def uids_above(self, last_uid: int) -> list[int]:
        """UIDs greater than `last_uid`, ascending. `UID n:*` always returns the highest
        message even when n is beyond it (RFC 3501 6.4.8), hence the filter."""
        assert self.client is not None
        with self.translated("search"):
            found = self.client.search(["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in found if uid > last_uid)

    def uids_since(self, day: date) -> list[int]:
        """UIDs of the selected folder's messages with an internal date on or after `day`
        (UID SEARCH SINCE, RFC 3501 6.4.4: the date the server received it, not the Date
        header), ascending: the initial import's "Messages since DATE"."""
        assert self.client is not None
        with self.translated("search"):
            return sorted(self.client.search(["SINCE", day]))

    def message_counts(self, folders: Sequence[RemoteFolder]) -> dict[str, int | None]:
        """Each folder's message count (STATUS MESSAGES, RFC 3501 6.3.10), for the task form's
        folder list; None where the server would not say (the list still shows the folder)."""
        assert self.client is not None
        counts: dict[str, int | None] = {}
        for folder in folders:
            try:
                with self.translated("folder status", folder=folder.path):
                    status = self.client.folder_status(folder.name, [b"MESSAGES"])
                counts[folder.path] = int(status[b"MESSAGES"]) if b"MESSAGES" in status else None
            except MailboxMissing:
                counts[folder.path] = None
        return counts

    def sizes(self, uids: Sequence[int], *, folder: str = "") -> dict[int, int]:
        """RFC822.SIZE of each UID, to plan batches by bytes before downloading.

        A UID left out of the answer is left out here only when it is gone (expunged since the
        SEARCH, which a UID SEARCH confirms); one the server still lists raises MessageWithheld,
        so no cursor passes a message that was never fetched."""
        assert self.client is not None
        if not uids:
            return {}
        sizes: dict[int, int] = {}
        with self.translated("fetch sizes"):
            for start in range(0, len(uids), SIZE_CHUNK):
                data = self.client.fetch_untagged(uids[start : start + SIZE_CHUNK], "(UID RFC822.SIZE)")
                fast = parse_sizes(data)
                if fast is None:  # an unusual shape: imapclient's full parser
                    response = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
                    fast = {
                        int(uid): int(item[b"RFC822.SIZE"]) for uid, item in response.items() if b"RFC822.SIZE" in item
                    }
                sizes.update(fast)
            self._check_gone([uid for uid in uids if uid not in sizes], "size", folder, first=min(uids))
        return sizes

    def fetch(self, uids: Sequence[int], *, folder: str = "") -> list[FetchedMessage]:
        """The messages' bytes (BODY.PEEK[]), flags and INTERNALDATE, in UID order.

        Every requested UID comes back with its body, or is gone from the server: a UID the
        first answer left out, or sent with a NIL body, is fetched again through imapclient's
        general parser; one still without a body that a UID SEARCH still finds raises
        MessageWithheld (the batch fails and its cursor stays before it), and only one the
        server no longer has (expunged since the SEARCH, RFC 3501 7.4.1) is left out.
        """
        assert self.client is not None
        if not uids:
            return []
        with self.translated("fetch"):
            data = self.client.fetch_untagged(uids, "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            parsed = parse_plain_fetch(data)
            if parsed is None:  # an unusual shape: imapclient's full parser
                parsed = parse_general(parse_fetch_response(data, normalise_times=False, uid_is_key=True))
            missing = [uid for uid in uids if uid not in parsed or parsed[uid][0] is None]
            if missing:
                parsed.update(self._fetch_again(missing, folder, first=min(uids)))
        wanted = set(uids)
        messages = []
        for uid in sorted(parsed):
            raw, flags, internal = parsed[uid]
            if uid not in wanted or raw is None:
                continue  # expunged meanwhile (checked above), or an unsolicited FETCH
            if isinstance(internal, datetime) and internal.tzinfo is None:
                internal = internal.replace(tzinfo=UTC)
            messages.append(
                FetchedMessage(
                    uid=uid,
                    raw=bytes(raw),
                    flags=_flag_names(flags),
                    internal_date=internal if isinstance(internal, datetime) else None,
                )
            )
        return messages

    def _fetch_again(self, uids: list[int], folder: str, *, first: int) -> Parsed:
        """FETCH `uids` once more with imapclient's general parser (which reads literal, quoted and
        NIL bodies alike); any still without a body must be gone from the server, or this raises."""
        assert self.client is not None
        response = self.client.fetch(uids, ["UID", "FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
        again = {uid: found for uid, found in parse_general(response).items() if uid in uids and found[0] is not None}
        self._check_gone([uid for uid in uids if uid not in again], "content", folder, first=first)
        return again

    def _check_gone(self, uids: list[int], what: str, folder: str, *, first: int) -> None:
        """Raise MessageWithheld unless every one of `uids`, which the server left out of a FETCH
        answer, is gone: expunged meanwhile (RFC 3501 7.4.1), so a UID SEARCH no longer finds it."""
        assert self.client is not None
        if not uids:
            return
        self.client.noop()  # collect pending EXPUNGE responses before asking what still exists
        present = sorted(uid for uid in self.client.search(["UID", join_message_ids(uids)]) if uid in uids)
        if present:
            where = f" in {folder}" if folder else ""
            raise MessageWithheld(
                f"{self.account.host} did not send the {what} of message{'s' if len(present) > 1 else ''} "
                f"{', '.join(map(str, present[:10]))}{where} although it still lists "
                f"{'them' if len(present) > 1 else 'it'}. Nothing from UID {first} on in this folder was "
                "stored this time; the next run asks again."
            )

    # -- errors -----------------------------------------------------------------

    @contextmanager
    def translated(self, step: str, *, folder: str | None = None) -> Iterator[None]:
        """Turn imapclient, imaplib, socket and ssl exceptions into service errors."""
        host, port = self.account.host, self.account.port
        try:
            yield
        except RemoteError:
            raise
        except LoginError as exc:
            if self.account.oauth_token is not None:
                text = _server_text(exc)
                if "[UNAVAILABLE]" in text.upper():  # RFC 5530: the server could not check it now
                    raise ServerUnavailable(f"{host} could not check the sign-in token for now ({text}).") from exc
                raise sasl.token_rejected(host, text) from exc
            raise CredentialsRejected(
                f"{host} rejected the username or password ({_server_text(exc)}). Check them and try again."
            ) from exc
        except (IMAPClientAbortError, imaplib.IMAP4.abort) as exc:
            if self._deadline.expired:
                raise ServerUnavailable(f"{host} was too slow: the retrieval ran out of time during {step}.") from exc
            if "TLS not supported" in str(exc):
                raise TlsFailure(f"{host} does not offer STARTTLS on port {port}.") from exc
            if step == "connect" and not self._deadline.expired:
                raise ServerUnavailable(f"{host} did not greet like an IMAP server. {WRONG_PORT_HINT}") from exc
            raise ServerUnavailable(f"{host} closed the connection unexpectedly during {step}.") from exc
        except (OSError, EOFError) as exc:
            translated = network_error(
                exc,
                host=host,
                port=port,
                step=step,
                timeout=self.account.timeout_seconds,
                expired=self._deadline.expired,
            )
            raise (translated or ServerUnavailable(f"{host} failed during {step}.")) from exc
        except (IMAPClientError, imaplib.IMAP4.error) as exc:
            if folder is not None:
                raise MailboxMissing(f"The folder {folder} could not be opened: {_server_text(exc)}.") from exc
            raise ServerUnavailable(f"{host} refused {step}: {_server_text(exc)}.") from exc


class _Responder:
    """imapclient's SASL callback for an OAuth2 mechanism: the client message in answer to the
    first (empty) challenge, the error answer to the JSON error challenge (RFC 7628 3.2.2-3.2.3).
    imapclient's own oauth2_login/oauthbearer_login would send the token again there."""

    def __init__(self, mechanism: str, user: str, token: str) -> None:
        self._mechanism = mechanism
        self._message: bytes | None = sasl.client_message(mechanism, user, token)

    def __call__(self, challenge: bytes) -> bytes:
        message, self._message = self._message, None
        return message if message is not None else sasl.error_answer(self._mechanism)


def _server_text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.strip()[:200] or type(exc).__name__


@contextmanager
def open_session(account: ImapAccount, *, deadline: float | None = None) -> Iterator[ImapSession]:
    """Connect, sign in, and always log out (or cut the connection) at the end."""
    session = ImapSession(account, deadline=deadline)
    try:
        session.connect()
        session.login()
        yield session
    finally:
        session.close()
