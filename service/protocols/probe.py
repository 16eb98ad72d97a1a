"""The steps every Test Connection shares: timing a step, resolving the name, a TCP connect.

The name is resolved once, under the outbound policy: the addresses it allows
are the ones the connect step and the session after it use (no second lookup).

A step that fails records the reason and a hint and raises `StepFailed`, which
ends the probe; the report then holds every step up to and including it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from service.domain.connection_test import ConnectionReport, Step
from service.domain.outbound import OutboundPolicy
from service.errors import TributaryError
from service.protocols import outbound


class StepFailed(Exception):
    """Raised inside a probe after the failing step has been recorded."""


@contextmanager
def step(report: ConnectionReport, name: str, *, hint: str = "") -> Iterator[list[str]]:
    """Time one step. Append a detail to the yielded list; errors become a failed step."""
    detail: list[str] = []
    started = time.perf_counter()
    try:
        yield detail
    except TributaryError as exc:
        report.steps.append(Step(name, False, _ms(started), exc.message, hint))
        raise StepFailed(name) from exc
    except OSError as exc:
        report.steps.append(Step(name, False, _ms(started), f"{type(exc).__name__}: {exc}", hint))
        raise StepFailed(name) from exc
    report.steps.append(Step(name, True, _ms(started), "; ".join(detail)))


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
