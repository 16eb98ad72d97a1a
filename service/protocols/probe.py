"""The steps every Test Connection shares: timing a step, resolving the name, a TCP connect.

The name is resolved once, under the outbound policy: the addresses it allows
are the ones the connect step and the session after it use (no second lookup).

A step that fails records the reason and a hint and raises `StepFailed`, which
ends the probe; the report then holds every step up to and including it.

IMAP and POP3 sessions open in one call (TCP, TLS for SSL/TLS, the greeting,
STARTTLS): `opening` reports a TLS failure in it as the "tls" step, with a hint
about the certificate, never as a greeting on the wrong port.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from service.domain.connection_test import ConnectionReport, Step
from service.domain.outbound import OutboundPolicy
from service.errors import TlsFailure, TributaryError
from service.protocols import outbound
from service.protocols.tls import CERTIFICATE_HINT, WRONG_PORT_HINT, CertificateNotVerified


class StepFailed(Exception):
    """Raised inside a probe after the failing step has been recorded."""


@contextmanager
def step(report: ConnectionReport, name: str, *, hint: str = "") -> Iterator[list[str]]:
    """Time one step. Append a detail to the yielded list; errors become a failed step."""
    detail: list[str] = []
    started = time.perf_counter()
    try:
        yield detail
    except (TributaryError, OSError) as exc:
        _fail(report, name, started, exc, hint)
    report.steps.append(Step(name, True, _ms(started), "; ".join(detail)))


@contextmanager
def opening(report: ConnectionReport, *, welcome: Callable[[], str]) -> Iterator[list[str]]:
    """The "greeting" step around a session's opening, which holds the TLS handshake too.

    A TLS failure (a certificate that does not verify, a server that does not answer
    with TLS, STARTTLS not offered) is the failed "tls" step: after a "greeting" that
    succeeded when the server had greeted (STARTTLS, RFC 2595 section 3), alone for
    SSL/TLS, whose handshake comes before any greeting (RFC 8314 section 3.3). Anything
    else fails the greeting, whose usual cause is a port that does not match the
    security setting."""
    detail: list[str] = []
    started = time.perf_counter()
    try:
        yield detail
    except TlsFailure as exc:
        greeted = welcome()
        if greeted:
            report.steps.append(Step("greeting", True, _ms(started), greeted[:200]))
        hint = CERTIFICATE_HINT if isinstance(exc, CertificateNotVerified) else WRONG_PORT_HINT
        _fail(report, "tls", started, exc, hint)
    except (TributaryError, OSError) as exc:
        _fail(report, "greeting", started, exc, WRONG_PORT_HINT)
    report.steps.append(Step("greeting", True, _ms(started), "; ".join(detail)))


def _fail(report: ConnectionReport, name: str, started: float, exc: TributaryError | OSError, hint: str) -> NoReturn:
    text = exc.message if isinstance(exc, TributaryError) else f"{type(exc).__name__}: {exc}"
    report.steps.append(Step(name, False, _ms(started), text, hint))
    raise StepFailed(name) from exc


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def resolve_and_connect(
    report: ConnectionReport, host: str, port: int, timeout: float, policy: OutboundPolicy
) -> list[outbound.Target]:
    """Steps "resolve" (the allowed addresses the name has) and "connect" (a TCP handshake, then
    closed). Returns the allowed addresses, for the session to connect to."""
    with step(report, "resolve", hint="Check the server address for typing mistakes.") as detail:
        try:
            targets = outbound.resolve(host, port, policy)
        except socket.gaierror as exc:
            raise OSError(f"the name {host} could not be found") from exc
        detail.append(", ".join(dict.fromkeys(target.ip for target in targets)))
    hint = "Check the port, and that a firewall lets the connection through."
    with step(report, "connect", hint=hint) as detail, outbound.connect(targets, timeout) as sock:
        detail.append(f"port {port} open on {sock.getpeername()[0]}")
    return targets
