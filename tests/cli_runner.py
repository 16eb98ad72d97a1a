"""Running the real `tributary` command, as an operator would, against a test's settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from service.config import Settings

TRIBUTARY = str(Path(sys.executable).with_name("tributary"))
# Settings tests shorten (intervals, leases); passed on so the process behaves like the test expects.
TUNED = (
    "retrieval_interval",
    "retrieval_jitter",
    "lease_seconds",
    "worker_concurrency",
    "run_deadline_seconds",
    "retrieval_batch_messages",
    "outbound_allow",
    "push_connections",  # 0 in test settings: serve/worker subprocesses hold no push connection unless asked
)


def tributary(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `tributary ARGS` with the settings in its environment; text output."""
    result = tributary_bytes(settings, *args, stdin=stdin.encode())
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    )


def tributary_bytes(settings: Settings, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run `tributary ARGS`; stdout as bytes (for `export`)."""
    return subprocess.run(
        [TRIBUTARY, *args], input=stdin, capture_output=True, env=cli_environment(settings), timeout=120, check=False
    )


def cli_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with TRIBUTARY_* replaced by the test's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    env["TRIBUTARY_DATA_DIR"] = str(settings.data_dir)
    env["TRIBUTARY_DATABASE_URL"] = settings.async_database_url
    if settings.secret_key is not None:
        env["TRIBUTARY_SECRET_KEY"] = settings.secret_key.get_secret_value()
    if settings.extra_ca_file is not None:
        env["TRIBUTARY_EXTRA_CA_FILE"] = str(settings.extra_ca_file)
    for name in TUNED:
        env[f"TRIBUTARY_{name.upper()}"] = str(getattr(settings, name))
    if settings.body_store is not None:
        env["TRIBUTARY_BODY_STORE"] = settings.body_store
    return env


async def terminate(process: asyncio.subprocess.Process) -> None:
    """Stop a `tributary` process as systemd would: SIGTERM, then SIGKILL after 30 seconds."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
