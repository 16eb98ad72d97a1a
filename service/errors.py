"""One error tree, grouped by what the user must do about it.

Adapters translate library exceptions (imaplib, poplib, aiosmtplib, ssl, socket)
into these at their edge; use cases raise them; faces turn them into an HTTP
status or an exit code. Every message is a sentence a user understands.
"""

from __future__ import annotations


class TributaryError(Exception):
    """Base of every error Tributary reports to a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SetupProblem(TributaryError):
    """Tributary cannot start or run as installed: the operator must fix a setting, the data directory or
    the database (the CLI says so in one sentence and exits 1; /health answers 503)."""


class InvalidSetting(SetupProblem):
    """A TRIBUTARY_ environment variable does not hold what it must (the message names it and the form)."""


class DataDirUnwritable(SetupProblem):
    """TRIBUTARY_DATA_DIR cannot be created or written by this user."""


class DatabaseUnreachable(SetupProblem):
    """The database cannot be opened or connected to."""


class DatabaseNotMigrated(SetupProblem):
    """The database's schema is not at this version's migrations: `tributary db upgrade`."""


class PortUnavailable(SetupProblem):
    """`tributary serve` cannot listen where it was told to (the port is taken, or privileged)."""


class InvalidInput(TributaryError):
    """The request itself is wrong; the user must correct what they typed."""


class UnsafeHeaderValue(InvalidInput):
    """A value meant for a mail header holds (or decodes to) a line break or another control character."""


class NotFound(TributaryError):
    """The thing does not exist, or belongs to someone else (the two look the same)."""


class Conflict(TributaryError):
    """The request clashes with what exists (a duplicate address, an existing administrator)."""


class FeatureDisabled(TributaryError):
    """The domain's administrator turned this feature off."""


class AuthenticationFailed(TributaryError):
    """Tributary's own sign-in failed (wrong email or password)."""


class RemoteError(TributaryError):
    """A remote mail server could not be used; subclasses say why."""


class CredentialsRejected(RemoteError):
    """The remote server refused the username or password: the user must fix them."""


class ServerUnavailable(RemoteError):
    """The remote server could not be reached or dropped the connection: often temporary."""


class TlsFailure(RemoteError):
    """TLS could not be set up: wrong port for the security mode, or a certificate that does not verify."""


class UnsupportedByServer(RemoteError):
    """The server lacks something the account's settings need (APOP, UIDL, STARTTLS): change the settings."""


class MailboxMissing(RemoteError):
    """A remote folder is gone or cannot be selected."""


class MessageWithheld(RemoteError):
    """The remote server still lists a message but did not send it (its content or its size): the
    batch fails, its cursor stays before the message, and the next run asks again."""


class MessageRejected(RemoteError):
    """The remote server refused a message for good (5xx)."""


class ConnectionNotAllowed(RemoteError):
    """The administrator's outbound policy does not let Tributary reach this server: ask them, or use another."""


class OAuthSignInError(TributaryError):
    """An OAuth2 sign-in (issue 15) did not complete and saved nothing: the user must start it again.

    `kind` ("retrieval" or "smtp") and `target_id` name the task or account the sign-in was for,
    when the callback's state was valid enough to know it (so a face can send the user back there).
    """

    def __init__(self, message: str, *, kind: str | None = None, target_id: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.target_id = target_id


class OAuthStateInvalid(OAuthSignInError):
    """The callback's `state` is unknown, used, expired or from another browser session."""


class OAuthDenied(OAuthSignInError):
    """The user (or the provider's policy) refused consent: the provider answered access_denied."""


class OAuthFailed(OAuthSignInError):
    """The provider answered the sign-in with another error, or the code could not be exchanged."""


class NeedsReconnect(CredentialsRejected):
    """The provider refused to refresh the sign-in (consent revoked, password changed): the user must
    run "Reconnect" to sign in with the provider again."""


class TokenRejected(CredentialsRejected):
    """The server refused the OAuth2 access token (expired, revoked, or for another mailbox).

    A caller refreshes the token once and retries; when the fresh one is refused too, the user must
    reconnect the account (sign in with the provider again)."""


class ProviderMisconfigured(RemoteError):
    """Tributary cannot get an OAuth2 access token for a reason only the administrator can fix (the
    provider's client secret expired or is wrong: invalid_client; its discovery document is unusable; the
    provider or OAuth2 sign-in no longer offered). Not a sign-in failure of the user: a task is not
    paused for it, and outbox entries wait (queued) instead of failing."""


class BodyUnreadable(TributaryError):
    """A stored message's bytes cannot be served as they were received: its segment file is gone
    (`BodyMissing`) or holds other bytes than its reference says (`BodyDamaged`: short, or another
    SHA-256). Never served anyway; an administrator restores it from a backup (issue 20)."""

    def __init__(self, message_id: int, detail: str) -> None:
        super().__init__(
            "This message's stored copy is damaged or missing, so Tributary will not show it. "
            "An administrator can list such messages with `tributary bodies verify` and restore them from a backup."
        )
        self.message_id = message_id
        self.detail = detail


class BodyMissing(BodyUnreadable):
    """The file that should hold the message's bytes does not exist, or ends before them."""


class BodyDamaged(BodyUnreadable):
    """The bytes at the message's reference are not the message's (their SHA-256 differs)."""
