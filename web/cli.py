"""The `tributary` entry point: the service's commands plus `serve`, which needs the web face.

Everything `serve` needs beyond Click (settings, database, logging, uvicorn, the app) is imported
when it runs: this module is imported by every `tributary` command (see service.cli.group).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import click

from service.cli import cli
from service.cli.group import plain_errors
from service.errors import PortUnavailable


def server_options(host: str, port: int) -> dict[str, Any]:
    """uvicorn's options for `serve`. Proxy headers are off: uvicorn would otherwise believe X-Forwarded-For
    from 127.0.0.1 (its default forwarded_allow_ips), letting any local caller choose its client address.
    The app believes them only from TRIBUTARY_TRUSTED_PROXIES (see web.app)."""
    return {
        "host": host,
        "port": port,
        "log_level": "info",
        "log_config": None,  # service.observability configures logging: TRIBUTARY_LOG_FORMAT for every line
        "access_log": False,
        "proxy_headers": False,
        "forwarded_allow_ips": "",
    }


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind the server's socket before anything starts, so a port in use is one sentence, not a traceback.

    uvicorn then serves on this very socket (no window for another process to take the port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"Port {port} on {host} is already in use: stop the program using it or choose another with --port."
            ) from None
        if exc.errno == errno.EACCES:
            raise PortUnavailable(
                f"Port {port} on {host} needs privileges this user lacks: use a port above 1023 "
                "behind a reverse proxy (see the README's Production section)."
            ) from None
        reason = (exc.strerror or str(exc)).lower()
        raise PortUnavailable(f"Tributary cannot listen on {host} port {port} ({reason}): check --host.") from None
    return sock


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@plain_errors
def serve(host: str, port: int) -> None:
    """Serve the web app, with the scheduler running inside it (refuses an unmigrated database)."""
    import uvicorn

    from service.cli.common import ready_or_refuse
    from service.config import Settings
    from service.observability import configure_logging, start_metrics_server
    from web.app import create_app

    settings = Settings()
    ready_or_refuse(settings)  # before logging is configured: a refusal is its one sentence, no INFO lines
    sock = listening_socket(host, port)
    configure_logging(settings)
    stop_metrics_server = start_metrics_server(settings)  # TRIBUTARY_METRICS_PORT; a taken port is one sentence
    try:
        server = uvicorn.Server(uvicorn.Config(create_app(settings), **server_options(host, port)))
        server.run(sockets=[sock])
    finally:
        if stop_metrics_server is not None:
            stop_metrics_server()


def main() -> None:
    """The `tributary` executable. Umask 077: every file and directory a command creates (database, key
    file, sessions, backups, exports) is readable by its owner only. (Tests that invoke `cli` in-process
    keep their own umask.)"""
    os.umask(0o077)
    cli()
