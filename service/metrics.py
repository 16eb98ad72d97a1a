"""Prometheus metrics of this process (served by the web face at /metrics).

Counters and histograms live in prometheus_client's default registry; each
process (`serve`, every `worker`) exports its own, as Prometheus expects.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("tributary_retrieval_runs_total", "Retrieval runs finished.", ["protocol", "outcome"])
FAILURES = Counter("tributary_retrieval_failures_total", "Retrieval runs that reported an error.", ["protocol"])
IMPORTED = Counter("tributary_messages_imported_total", "Messages stored by retrieval.", ["protocol"])
SENT = Counter("tributary_messages_sent_total", "Messages accepted by an SMTP server.")
RUN_SECONDS = Histogram(
    "tributary_retrieval_run_seconds",
    "How long retrieval runs take.",
    ["protocol"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
DUE_TASKS = Gauge("tributary_retrieval_due_tasks", "Automatic tasks due and waiting for a worker.")
RUNNING = Gauge("tributary_retrieval_running", "Retrieval runs in progress in this process.")
PUSH_CONNECTIONS = Gauge("tributary_push_connections", "IMAP push (IDLE/NOTIFY) connections this process holds.")
PUSH_NOTIFICATIONS = Counter(
    "tributary_push_notifications_total", "New-mail announcements received on push connections."
)
PUSH_STORE_SECONDS = Histogram(
    "tributary_push_store_seconds",
    "Seconds from a push announcement to the end of the run that stored what it announced.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)


class _Outcome(Protocol):
    imported: int
    errors: list[str]


def record_run(protocol: str, result: _Outcome, seconds: float) -> None:
    outcome = "ok" if not result.errors else "error"
    RUNS.labels(protocol, outcome).inc()
    if result.errors:
        FAILURES.labels(protocol).inc()
    IMPORTED.labels(protocol).inc(result.imported)
    RUN_SECONDS.labels(protocol).observe(seconds)
