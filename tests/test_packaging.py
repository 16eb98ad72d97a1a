"""The built wheel works on its own (issue 19): installed into a fresh virtualenv, `tributary db upgrade`
and `tributary serve` run from a directory outside the checkout, with the migrations, templates and the
vendored htmx all coming from inside the package.

To stay cheap the fresh venv gets the runtime dependencies from this project's venv (a .pth line adds its
site-packages after the new venv's own, so the wheel's `service` and `web` win over the checkout's
editable install), and the wheel is installed with --no-deps: no download, yet only the wheel's own
files are Tributary. One test, one group of real subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.required_tool import required_tool
from tests.retrieval_env import eventually

REPOSITORY = Path(__file__).resolve().parents[1]


def _uv() -> str:
    """uv, which builds the wheel: the version `make install` pins in .tools/bin first, else one on PATH."""
    return required_tool("uv", how="`make install` puts it in .tools/bin", first_in=str(REPOSITORY / ".tools" / "bin"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(venv: Path) -> dict[str, str]:
    """A clean environment: no TRIBUTARY_ setting (the defaults: ./data under the working directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIBUTARY_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class Installed:
    """The wheel in a fresh venv, and a working directory outside the checkout."""

    venv: Path
    site_packages: str
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=self.workdir, env=self.env, capture_output=True, text=True, check=False)


def _step(*args: str) -> str:
    """Run one set-up step; a failure shows the step's own output (say, uv unable to fetch hatchling)."""
    env = {**os.environ, "UV_COMPILE_BYTECODE": "0"}  # `make` exports 1: compiling the wheel only costs time
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}{result.stderr}"
    return result.stdout.strip()


def install_wheel(tmp_path: Path) -> Installed:
    """Build the wheel and install it (--no-deps, offline) into a fresh venv that borrows our dependencies."""
    uv = _uv()
    dist = tmp_path / "dist"
    _step(uv, "build", "--wheel", "--python", sys.executable, "--out-dir", str(dist), str(REPOSITORY))
    (wheel,) = dist.glob("tributary-*.whl")
    venv = tmp_path / "venv"
    _step(uv, "venv", "--quiet", "--offline", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    _step(uv, "pip", "install", "--quiet", "--no-deps", "--offline", "--python", python, str(wheel))
    site_packages = _step(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site_packages) / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    return Installed(venv=venv, site_packages=site_packages, workdir=workdir, env=_environment(venv))


@pytest.mark.timeout(900)
async def test_the_wheel_migrates_and_serves_from_any_directory(tmp_path: Path) -> None:
    installed = await asyncio.to_thread(install_wheel, tmp_path)
    python = str(installed.venv / "bin" / "python")
    tributary = str(installed.venv / "bin" / "tributary")

    where = await asyncio.to_thread(
        installed.run, python, "-c", "import service, web; print(service.__file__); print(web.__file__)"
    )
    paths = where.stdout.split()
    assert len(paths) == 2, where.stderr
    assert all(path.startswith(installed.site_packages) for path in paths), paths  # the wheel's, not the checkout's

    version = await asyncio.to_thread(installed.run, tributary, "--version")
    assert version.stdout.startswith("tributary "), version.stderr

    upgrade = await asyncio.to_thread(installed.run, tributary, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout == "The database is up to date.\n"
    assert (installed.workdir / "data" / "tributary.db").is_file()

    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        tributary,
        "serve",
        "--port",
        str(port),
        cwd=installed.workdir,
        env=installed.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            async def healthy() -> bool:
                assert server.returncode is None, "tributary serve exited"
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, within=120, what="tributary serve answers /health")
            assert (await client.get("/health")).json() == {"status": "ok", "database": "ok"}
            setup = await client.get("/setup")  # a page: the templates travel in the wheel
            assert setup.status_code == 200
            assert "text/html" in setup.headers["content-type"]
            htmx = await client.get("/static/vendor/htmx.min.js")
            assert htmx.status_code == 200
            assert htmx.content == (REPOSITORY / "web" / "static" / "vendor" / "htmx.min.js").read_bytes()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), timeout=60)
        except TimeoutError:
            os.killpg(server.pid, signal.SIGKILL)
            await server.wait()


def test_make_installs_python3_venv_when_python_lacks_ensurepip(tmp_path: Path) -> None:
    """Debian's python3.11 has no ensurepip without python3-venv, and `make` needs it to put uv in .tools:
    the recipe installs python3-venv first (shown here with `make -n` and a Python that lacks ensurepip)."""
    python = tmp_path / "python-without-ensurepip"
    python.write_text(f'#!/bin/sh\n[ "$1" = "-c" ] && exit 1\nexec {sys.executable} "$@"\n')
    python.chmod(0o700)
    tools = tmp_path / "tools"
    make = required_tool("make", how="sudo apt-get install make")
    dry_run = [make, "-n", "-C", str(REPOSITORY), f"TOOLS={tools}", f"PYTHON={python}", f"{tools}/bin/uv"]
    result = subprocess.run(dry_run, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "for p in python3-venv;" in result.stdout
    assert result.stdout.index("python3-venv") < result.stdout.index(f"{python} -m venv {tools}")
