"""How to sign in to a retrieval task's server: the protocol adapters' account values
(service.protocols.imap.ImapAccount, pop3.Pop3Account) made from the task's row, with its
password decrypted here and only here, or the OAuth2 token service.usecases.oauth_sign_in got."""

from __future__ import annotations

from service.config import Settings
from service.domain.outbound import OutboundPolicy
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask
from service.protocols import imap, pop3


def _password(task: RetrievalTask, secret_box: SecretBox) -> str:
    """The stored password in clear; "" for a task that signs in another way (no password stored)."""
    return secret_box.decrypt(task.password_encrypted) if task.password_encrypted is not None else ""


def imap_account(
    task: RetrievalTask,
    secret_box: SecretBox,
    settings: Settings,
    *,
    policy: OutboundPolicy,
    oauth_token: str | None = None,
) -> imap.ImapAccount:
    """How to sign in to the task's IMAP server: its password, or `oauth_token` for an OAuth2 task
    (service.usecases.oauth_sign_in gets it)."""
    return imap.ImapAccount(
        host=task.host,
        port=task.port,
        security=task.security,
        username=task.username,
        password=_password(task, secret_box),
        verify_certificate=task.verify_certificate,
        timeout_seconds=float(task.timeout_seconds),
        extra_ca_file=settings.extra_ca_file,
        debug=task.enable_debug,
        policy=policy,
        oauth_token=oauth_token,
    )


def pop3_account(
    task: RetrievalTask,
    secret_box: SecretBox,
    settings: Settings,
    *,
    policy: OutboundPolicy,
    oauth_token: str | None = None,
) -> pop3.Pop3Account:
    """Like `imap_account`, for POP3."""
    return pop3.Pop3Account(
        host=task.host,
        port=task.port,
        security=task.security,
        username=task.username,
        password=_password(task, secret_box),
        verify_certificate=task.verify_certificate,
        timeout_seconds=float(task.timeout_seconds),
        extra_ca_file=settings.extra_ca_file,
        use_apop=task.use_apop,
        debug=task.enable_debug,
        policy=policy,
        oauth_token=oauth_token,
    )
