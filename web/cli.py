"""The `tributary` entry point: the service's commands plus `serve`, which needs the web face."""

from __future__ import annotations

import click

from service.cli import cli
from service.cli.common import plain_errors


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@plain_errors
def serve(host: str, port: int) -> None:
    """Serve the web app, with the scheduler running inside it."""
    import uvicorn

    from service.config import Settings
    from web.app import create_app

    uvicorn.run(create_app(Settings()), host=host, port=port, log_level="info", access_log=False)


def main() -> None:
    cli()
