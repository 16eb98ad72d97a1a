"""Test Connection for IMAP: resolve, connect, greeting, TLS, capabilities, login, folders (each
with its message count, STATUS MESSAGES, for the task form to choose from)."""

from __future__ import annotations

import time

from service.domain.connection_test import ConnectionReport, FolderCount
from service.protocols import sasl
from service.protocols.imap.session import CONNECT_TIMEOUT_SECONDS, ImapAccount, ImapSession
from service.protocols.probe import StepFailed, opening, resolve_and_connect, step
from service.protocols.tls import describe_certificate

MAX_COUNTED = 500  # folders counted one STATUS each; beyond that the list shows them without a count


def test_connection(account: ImapAccount) -> ConnectionReport:
    """Resolve, connect, greeting, TLS, capabilities, login, folder count: each timed. A TLS
    handshake that fails (a certificate that does not verify, say) fails the tls step."""
    report = ConnectionReport()
    session = ImapSession(account, deadline=time.monotonic() + 3 * account.timeout_seconds)
    try:
        timeout = min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds)
        targets = resolve_and_connect(report, account.host, account.port, timeout, account.policy)
        with opening(report, welcome=lambda: session.welcome) as detail:
            session.connect(targets)
            detail.append(session.welcome[:200])
        if session.tls_socket is not None:
            with step(report, "tls") as detail:
                detail.append(describe_certificate(session.tls_socket, verified=account.verify_certificate))
        with step(report, "capabilities") as detail:
            detail.append(" ".join(session.capabilities()))
        hint = sasl.RECONNECT_HINT if account.oauth_token is not None else "Check the username and password."
        with step(report, "login", hint=hint) as detail:
            mechanism = session.login()
            detail.append(f"signed in as {account.username}" + ("" if mechanism == "LOGIN" else f" with {mechanism}"))
        with step(report, "folders") as detail:
            folders = sorted(session.list_folders(), key=lambda folder: folder.path)
            counts = session.message_counts(folders[:MAX_COUNTED])
            report.folders = [FolderCount(folder.path, counts.get(folder.path)) for folder in folders]
            detail.append(f"{len(folders)} folders")
    except StepFailed:
        pass
    finally:
        session.close()
    return report
