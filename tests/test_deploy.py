"""deploy/ (issue 19): the systemd units pass `systemd-analyze verify` and keep their sandbox, and the
environment file template names only settings that exist, with values they accept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings
from tests.required_tool import required_tool

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = ("tributary.service", "tributary-worker@.service")
INSTALLED_TRIBUTARY = "/opt/tributary/bin/tributary"


def _systemd_analyze() -> str:
    return required_tool("systemd-analyze", how="`make system-deps` installs it (Debian package systemd)")


def test_make_system_deps_installs_systemd_analyze() -> None:
    """CI fails rather than skips without systemd-analyze, so `make system-deps` must install it: a fresh
    Debian container has no `systemd` package."""
    makefile = (DEPLOY.parent / "Makefile").read_text()
    (packages,) = re.findall(r"^DEB_PACKAGES := (.*)$", makefile, re.MULTILINE)
    assert "systemd" in packages.split()


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_passes_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    """verify warns (exit 0) about unknown keys and bad values: any line about the unit is a failure.
    ExecStart points at this checkout's `tributary`, since verify checks that the program exists."""
    analyze = _systemd_analyze()
    text = (DEPLOY / unit).read_text()
    assert INSTALLED_TRIBUTARY in text
    instance = unit.replace("@.", "@1.")  # a template is verified as one of its instances
    checked = tmp_path / instance
    checked.write_text(text.replace(INSTALLED_TRIBUTARY, str(Path(sys.executable).with_name("tributary"))))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(checked)], capture_output=True, text=True, timeout=120, check=False
    )
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if instance in line]
    assert result.returncode == 0, result.stderr
    assert about_unit == []


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_is_sandboxed_and_restarts(unit: str) -> None:
    settings = dict(re.findall(r"^(\w+)=(.*)$", (DEPLOY / unit).read_text(), re.MULTILINE))
    assert settings["User"] == "tributary"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/var/lib/tributary"
    assert settings["NoNewPrivileges"] == "true"
    assert settings["Restart"] == "on-failure"
    assert settings["UMask"] == "0077"
    assert settings["EnvironmentFile"] == "/etc/tributary/tributary.env"


def test_the_environment_template_names_real_settings_with_valid_values() -> None:
    lines = (DEPLOY / "tributary.env").read_text().splitlines()
    named = re.findall(r"^#?(TRIBUTARY_[A-Z0-9_]+)=(.*)$", "\n".join(lines), re.MULTILINE)
    fields = {f"TRIBUTARY_{name.upper()}" for name in Settings.model_fields}
    assert {name for name, _ in named} <= fields
    active = {
        name.removeprefix("TRIBUTARY_").lower(): value
        for line in lines
        if line.startswith("TRIBUTARY_")
        for name, value in [line.split("=", 1)]
    }
    assert "data_dir" in active
    Settings.model_validate(active)  # raises when a value is not what the setting accepts
