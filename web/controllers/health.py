"""GET /health: the process answers and the database does a SELECT 1 (503 when it cannot)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from service.persistence.database import Database


@get("/health", name="health")
async def health(db: NamedDependency[Database]) -> Response[dict[str, Any]]:
    if await db.ping():
        return Response({"status": "ok", "database": "ok"})
    return Response({"status": "error", "database": "unavailable"}, status_code=503)


ROUTES = [health]
