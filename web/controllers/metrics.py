"""GET /metrics: this process's Prometheus metrics in the text exposition format, when TRIBUTARY_METRICS=on.

Off (the default), the route does not exist and /metrics answers 404: the
figures (task counts, request paths) are for the operator's scraper, not for
the internet. TRIBUTARY_METRICS_PORT serves the same registry on a port of its
own instead (service.observability), which a reverse proxy never exposes.

HTTP request metrics come from Litestar's Prometheus plugin
(litestar.plugins.prometheus): tributary_http_requests_total,
tributary_http_request_duration_seconds, tributary_http_requests_in_progress and
tributary_http_requests_error_total, labelled with the method, the route's path
template (never the raw path, so message ids cannot grow the series without
bound) and the status code.
"""

from __future__ import annotations

from litestar import Response, get
from litestar.middleware import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ControllerRouterHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.config import Settings

HTTP_METRICS = PrometheusConfig(
    app_name="tributary",
    prefix="tributary_http",
    group_path=True,
    exclude=["^/static/", "^/metrics$"],
)


@get("/metrics", name="metrics", include_in_schema=False, sync_to_thread=False)
def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def metrics_routes(settings: Settings) -> list[ControllerRouterHandler]:
    """The /metrics route when TRIBUTARY_METRICS is on, else none."""
    return [metrics] if settings.metrics else []


def http_metrics_middleware() -> DefineMiddleware:
    """Counts and times every request (but static files and /metrics itself) for Prometheus."""
    return HTTP_METRICS.middleware
