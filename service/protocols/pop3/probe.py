"""Test Connection for POP3: each step of a session reported, the first failure explained."""

from __future__ import annotations

import time
from contextlib import suppress

from service.domain.connection_test import ConnectionReport
from service.errors import RemoteError
from service.protocols import sasl
from service.protocols.pop3.session import CONNECT_TIMEOUT_SECONDS, Pop3Account, Pop3Session
from service.protocols.probe import StepFailed, opening, resolve_and_connect, step
from service.protocols.tls import describe_certificate


def test_connection(account: Pop3Account) -> ConnectionReport:
    """Resolve, connect, greeting (APOP timestamp?), TLS, capabilities (STLS?), login, message count."""
    report = ConnectionReport()
    session = Pop3Session(account, deadline=time.monotonic() + 3 * account.timeout_seconds)
    try:
        timeout = min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds)
        targets = resolve_and_connect(report, account.host, account.port, timeout, account.policy)
        with opening(report, welcome=lambda: session.welcome) as detail:
            session.connect(targets)
            detail.append(session.welcome[:200])
            detail.append("APOP timestamp present" if session.apop_timestamp else "no APOP timestamp")
        if session.tls_socket is not None:
            with step(report, "tls") as detail:
                detail.append(describe_certificate(session.tls_socket, verified=account.verify_certificate))
        with step(report, "capabilities") as detail:
            capabilities = session.capabilities()
            detail.append(" ".join(sorted(capabilities)) or "CAPA not supported")
            offered = session.stls_offered or "STLS" in capabilities
            detail.append("STLS offered" if offered else "STLS not offered")
        oauth = account.oauth_token is not None
        hint = sasl.RECONNECT_HINT if oauth else "Check the username and password (and the APOP setting)."
        with step(report, "login", hint=hint) as detail:
            mechanism = session.login()
            detail.append(
                f"signed in as {account.username}" + ("" if mechanism == "USER/PASS" else f" with {mechanism}")
            )
        with step(report, "messages") as detail:
            detail.append(f"{session.message_count()} messages")
    except StepFailed:
        pass
    finally:
        if session.client is not None:
            with suppress(RemoteError):
                session.quit()
        session.close()
    return report
