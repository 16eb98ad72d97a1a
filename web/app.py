"""The Litestar application: `create_app(settings)` wires the web face together.

At start-up (lifespan) it opens the Database, loads the SecretBox (creating the
key file on first start), starts the Scheduler and a sweeper for expired
sessions; at shutdown it stops them and disposes of the database. Handlers get
these by dependency injection (see support.dependencies).

Also configured here: Jinja templates (web/templates), static files (web/static
at /static, with the pinned htmx vendored at /static/vendor/htmx.min.js),
server-side sessions in a FileStore under data_dir/sessions, CSRF, security
headers, the request's log context, HTTP metrics, the request log and the exception
handlers. Logs follow TRIBUTARY_LOG_LEVEL and TRIBUTARY_LOG_FORMAT (service.observability);
/metrics exists only with TRIBUTARY_METRICS=on (controllers.metrics); `tributary serve`
(web.cli) serves them on TRIBUTARY_METRICS_PORT instead. The OpenAPI schema is served as JSON
only, at /api/v1/schema/openapi.json (see controllers.api.OPENAPI_CONFIG): no UI that loads assets from a CDN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import cast

from litestar import Litestar
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.file import FileStore
from litestar.template import TemplateConfig
from litestar.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.config import Settings
from service.observability import configure_logging, logging_configured
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.scheduler import Scheduler
from web.controllers import ROUTE_HANDLERS
from web.controllers.api import OPENAPI_CONFIG
from web.controllers.metrics import http_metrics_middleware, metrics_routes
from web.support.csrf import csrf_middleware
from web.support.dependencies import DEPENDENCIES
from web.support.errors import EXCEPTION_HANDLERS, log_unexpected
from web.support.middleware import AccessLogMiddleware, RequestContextMiddleware, SecurityHeadersMiddleware
from web.support.oauth_binding import STATE_KEY as OAUTH_BINDING_KEY
from web.support.oauth_binding import derive_binding_secret
from web.support.sessions import SESSION_STORE, session_config

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
SESSION_SWEEP_SECONDS = 3600


async def _sweep_expired_sessions(store: FileStore) -> None:
    """Expired sessions are only dropped when read; remove the ones nobody comes back for."""
    while True:
        try:
            await store.delete_expired()
        except Exception:  # a half-written file from another process must not stop the sweeper
            log.warning("could not sweep expired sessions", exc_info=True)
        await asyncio.sleep(SESSION_SWEEP_SECONDS)


def _lifespan(settings: Settings, store: FileStore) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not logging_configured():  # tests and an operator's own logging config keep theirs
            configure_logging(settings)
        db = Database(settings)
        app.state.db = db
        app.state.secret_box = SecretBox.from_settings(settings)
        scheduler = Scheduler(settings=settings, db=db, secret_box=app.state.secret_box)
        app.state.scheduler = scheduler
        sweeper: asyncio.Task[None] | None = None
        try:
            scheduler.start()
            sweeper = asyncio.create_task(_sweep_expired_sessions(store))
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await scheduler.shutdown()
            await db.dispose()

    return lifespan


def create_app(settings: Settings) -> Litestar:
    """The web app for these settings. Nothing touches the database until it starts.

    Building it creates data_dir/sessions (0700) and, when no key is configured, the
    key file: the CSRF secret is derived from the key (see support.csrf).
    """
    sessions_dir = settings.data_dir / "sessions"
    sessions_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    session_store = FileStore(sessions_dir, create_directories=True)
    static = create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False)
    # The client address (login throttling) and scheme come from X-Forwarded-For/-Proto only when the
    # peer is one of TRIBUTARY_TRUSTED_PROXIES; `tributary serve` turns uvicorn's own handling off.
    proxies = settings.trusted_proxy_list
    proxy_headers = cast("Callable[..., ASGIApp]", ProxyHeadersMiddleware)  # uvicorn types its ASGI callables apart
    forwarded = [DefineMiddleware(proxy_headers, trusted_hosts=proxies)] if proxies else []
    return Litestar(
        route_handlers=[*ROUTE_HANDLERS, *metrics_routes(settings), static],
        dependencies=DEPENDENCIES,
        state=State({"settings": settings, OAUTH_BINDING_KEY: derive_binding_secret(settings)}),
        lifespan=[_lifespan(settings, session_store)],
        stores={SESSION_STORE: session_store},
        middleware=[
            *forwarded,
            DefineMiddleware(RequestContextMiddleware),  # after the forwarded client address is known
            http_metrics_middleware(),
            DefineMiddleware(AccessLogMiddleware),
            DefineMiddleware(SecurityHeadersMiddleware),
            session_config(secure=settings.secure_cookies, idle_minutes=settings.session_idle_minutes).middleware,
            csrf_middleware(settings),  # inside the session middleware: the token is bound to the session
        ],
        template_config=TemplateConfig(directory=TEMPLATES_DIR, engine=JinjaTemplateEngine),
        exception_handlers=EXCEPTION_HANDLERS,
        after_exception=[log_unexpected],
        openapi_config=OPENAPI_CONFIG,
        # TRIBUTARY_ALLOWED_HOSTS: any other Host header gets 400 (no www redirect: hosts are named exactly),
        # except /health, which a monitor asks by address and which builds nothing from the Host header.
        allowed_hosts=AllowedHostsConfig(
            allowed_hosts=settings.allowed_host_list, exclude=["^/health$"], www_redirect=False
        )
        if settings.allowed_host_list
        else None,
        # Litestar configures no logging: its request logging records bodies and cookies.
        # AccessLogMiddleware logs method, path and status; log_unexpected logs bugs.
        logging_config=None,
        debug=False,
    )
