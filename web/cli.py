"""The `tributary` entry point: the service's commands plus `serve`, which needs the web face."""

from __future__ import annotations

from typing import Any

import click

from service.cli import cli
from service.cli.common import plain_errors


def server_options(host: str, port: int) -> dict[str, Any]:
    """uvicorn's options for `serve`. Proxy headers are off: uvicorn would otherwise believe X-Forwarded-For
    from 127.0.0.1 (its default forwarded_allow_ips), letting any local caller choose its client address.
    The app believes them only from TRIBUTARY_TRUSTED_PROXIES (see web.app)."""
    return {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": False,
        "proxy_headers": False,
        "forwarded_allow_ips": "",
    }


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@plain_errors
def serve(host: str, port: int) -> None:
    """Serve the web app, with the scheduler running inside it."""
    import uvicorn

    from service.config import Settings
    from web.app import create_app

    uvicorn.run(create_app(Settings()), **server_options(host, port))


def main() -> None:
    cli()
