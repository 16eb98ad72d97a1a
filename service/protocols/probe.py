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

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from service.domain.connection_test import ConnectionReport, Step
from service.domain.outbound import OutboundPolicy
from service.errors import ServerUnavailable, TlsFailure, TributaryError
from service.protocols import outbound
from service.protocols.network import CLOSED_HINT, CONNECT_TIMEOUT_HINT, NOT_FOUND_HINT, TCP, describe, worded, wording
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
    """Record the failed step: the error's sentence and its own hint when it has one (see
    `network.worded`), else the step's. A bare OSError is worded here, never shown raw."""
    if isinstance(exc, OSError):  # not translated by the adapter: its reason, in words, without errno
        reason = (exc.strerror or "").rstrip(".").lower()
        text, own = f"The connection to the server failed{f' ({reason})' if reason else ''}.", CLOSED_HINT
    else:
        text, own = wording(exc) or (exc.message, "")
        if hint and not own and text.endswith(hint):  # the adapter's sentence already ends with this hint
            text = text.removesuffix(hint).rstrip()
    report.steps.append(Step(name, False, _ms(started), text, own or hint))
    raise StepFailed(name) from exc


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def resolve_and_connect(
    report: ConnectionReport, host: str, port: int, timeout: float, policy: OutboundPolicy
) -> list[outbound.Target]:
    """Steps "resolve" (the allowed addresses the name has) and "connect" (a TCP handshake, then
    closed). Returns the allowed addresses, for the session to connect to."""
    with step(report, "resolve", hint=NOT_FOUND_HINT) as detail:
        try:
            targets = outbound.resolve(host, port, policy)
        except OSError as exc:  # socket.gaierror: the name does not resolve
            raise _worded(exc, host, port, "resolve", timeout) from exc
        detail.append(", ".join(dict.fromkeys(target.ip for target in targets)))
    with step(report, "connect", hint=CONNECT_TIMEOUT_HINT) as detail:
        try:
            sock = outbound.connect(targets, timeout)
        except OSError as exc:
            raise _worded(exc, host, port, TCP, timeout) from exc
        with sock:
            detail.append(f"port {port} open on {sock.getpeername()[0]}")
    return targets


def _worded(exc: OSError, host: str, port: int, step_name: str, timeout: float) -> ServerUnavailable:
    found = describe(exc, host=host, port=port, step=step_name, seconds=timeout)
    sentence, hint = found or (f"The connection to port {port} of {host} failed.", CLOSED_HINT)
    return worded(ServerUnavailable, sentence, hint)
