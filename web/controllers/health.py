"""GET /health: the process answers, the database answers a query and its schema is fully migrated.

503 with the reason otherwise ({"status": "error", "database": "unavailable" | "not migrated",
"reason": ...}), so a load balancer or `systemctl` check sees a process that cannot serve.
The reason never names the database (the probe needs no sign-in); the log does.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from service.persistence.database import Database

log = logging.getLogger(__name__)


@get("/health", name="health")
async def health(db: NamedDependency[Database]) -> Response[dict[str, Any]]:
    problem = await db.problem()
    if problem is None:
        return Response({"status": "ok", "database": "ok"})
    log.warning("health check failed: %s", problem.detail)
    return Response({"status": "error", "database": problem.state, "reason": problem.reason}, status_code=503)


ROUTES = [health]
