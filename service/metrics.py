"""Prometheus metrics of this process, named as Prometheus asks (`<app>_<what>_<unit>`, `_total` for counters).

They live in prometheus_client's default registry; each process (`serve`, every
`worker`) exports its own, as Prometheus expects: the web app at /metrics when
TRIBUTARY_METRICS=on, any process on TRIBUTARY_METRICS_PORT (see
service.observability). One series per fact: a failed run is
`tributary_retrieval_runs_total{outcome="error"}`, not a second counter.

- tributary_retrieval_runs_total{protocol, outcome}: finished runs, outcome "ok" or "error"
- tributary_retrieval_run_duration_seconds{protocol}: how long runs take (histogram)
- tributary_retrieval_runs_in_progress: runs going on in this process now
- tributary_retrieval_due_tasks: automatic tasks due and waiting for a worker
- tributary_messages_imported_total{protocol}, tributary_messages_sent_total
- tributary_push_connections, tributary_push_notifications_total, tributary_push_store_seconds
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "tributary_retrieval_runs_total", 'Retrieval runs finished, by outcome ("ok" or "error").', ["protocol", "outcome"]
)
RUN_DURATION = Histogram(
    "tributary_retrieval_run_duration_seconds",
    "How long retrieval runs take.",
    ["protocol"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
RUNNING = Gauge("tributary_retrieval_runs_in_progress", "Retrieval runs in progress in this process.")
DUE_TASKS = Gauge("tributary_retrieval_due_tasks", "Automatic tasks due and waiting for a worker.")
IMPORTED = Counter("tributary_messages_imported_total", "Messages stored by retrieval.", ["protocol"])
SENT = Counter("tributary_messages_sent_total", "Messages accepted by an SMTP server.")
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
    """Count one finished run: its outcome, the messages it stored and how long it took."""
    RUNS.labels(protocol, "error" if result.errors else "ok").inc()
    IMPORTED.labels(protocol).inc(result.imported)
    RUN_DURATION.labels(protocol).observe(seconds)
