"""Test Connection for IMAP: resolve, connect, greeting, TLS, capabilities, login, folder count."""

from __future__ import annotations

import time

from service.domain.connection_test import ConnectionReport
from service.protocols.imap.session import CONNECT_TIMEOUT_SECONDS, ImapAccount, ImapSession
from service.protocols.probe import StepFailed, resolve_and_connect, step
from service.protocols.tls import WRONG_PORT_HINT, describe_certificate


def test_connection(account: ImapAccount) -> ConnectionReport:
    """Resolve, connect, TLS, greeting, capabilities, login, folder count: each timed."""
    report = ConnectionReport()
    session = ImapSession(account, deadline=time.monotonic() + 3 * account.timeout_seconds)
    try:
        timeout = min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds)
        targets = resolve_and_connect(report, account.host, account.port, timeout, account.policy)
        with step(report, "greeting", hint=WRONG_PORT_HINT) as detail:
            session.connect(targets)
            detail.append(session.welcome[:200])
        if session.tls_socket is not None:
            with step(report, "tls") as detail:
                detail.append(describe_certificate(session.tls_socket, verified=account.verify_certificate))
        with step(report, "capabilities") as detail:
            detail.append(" ".join(session.capabilities()))
        with step(report, "login", hint="Check the username and password.") as detail:
            session.login()
            detail.append(f"signed in as {account.username}")
        with step(report, "folders") as detail:
            detail.append(f"{len(session.list_folders())} folders")
    except StepFailed:
        pass
    finally:
        session.close()
    return report
